# syntax=docker/dockerfile:1
# The operator image: the project without its serving extra (no Ray, no vLLM), run as a non-root user.
# It has the sim extra (numpy) so that `slm plan` works in it: docker run --entrypoint slm IMAGE plan FILE
# Build from the repository root: docker build -f images/operator.Dockerfile -t slm-operator .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY serving ./serving
RUN python -m venv /opt/slm && /opt/slm/bin/pip install '.[sim]'

FROM ${PYTHON_IMAGE}
# A named user (kopf's peering identity falls back to getpass.getuser(), which needs one).
RUN groupadd --gid 65532 slm && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin slm
COPY --from=build /opt/slm /opt/slm
ENV PATH=/opt/slm/bin:${PATH} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
# SLM_METRICS_PORT and SLM_HEALTH_PORT defaults.
EXPOSE 8080 8081
ENTRYPOINT ["slm", "operator"]
