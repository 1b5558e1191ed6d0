#!/usr/bin/env bash
# End-to-end test on a real Kubernetes cluster in kind (`make e2e`, tests/e2e/test_kind.py):
#   1. create a kind cluster and install KubeRay from its Helm repository;
#   2. build the operator image and the CPU serving image and load them into the cluster;
#   3. install charts/slm-operator, apply examples/tiny.yaml, wait for Ready, send an OpenAI request;
#   4. change the model to another good revision and check it is promoted;
#   5. change it to tiny://bad and check the canary is rolled back while the stable keeps serving;
#   6. delete the cluster (KEEP_CLUSTER=1 keeps it).
# Needs Docker with about 6 CPUs and 16 GiB for its VM (the Ray head alone requests 2 CPUs and 8 GiB),
# kind, network access to Docker Hub, PyPI, download.pytorch.org and ray-project.github.io, and
# helm/kubectl (from `make install`'s .tools/bin, or on PATH).
# Prints one JSON object with the results on its last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
export PATH="${ROOT}/.tools/bin:${PATH}"

CLUSTER="${KIND_CLUSTER:-slm-e2e}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"            # e.g. kindest/node:v1.32.2; empty: kind's default
KUBERAY_VERSION="${KUBERAY_VERSION:-1.7.0}"
TAG="${TAG:-e2e}"
REGISTRY="${REGISTRY:-ghcr.io/slm-dev}"
OPERATOR_IMAGE="${REGISTRY}/slm-operator:${TAG}"
SERVING_IMAGE="${REGISTRY}/slm-serving:${TAG}"
OPERATOR_NS="slm-system"
MODELS_NS="${MODELS_NS:-slm-e2e}"
NAME="tiny"                                       # metadata.name in examples/tiny.yaml
MODEL="tiny"                                      # its servedModelName
LOCAL_PORT="${LOCAL_PORT:-18000}"
READY_TIMEOUT_S="${READY_TIMEOUT_S:-1500}"
ROLLOUT_TIMEOUT_S="${ROLLOUT_TIMEOUT_S:-1500}"
SKIP_BUILD="${SKIP_BUILD:-0}"                     # 1: the two images exist locally already
PYTHON="${PYTHON:-${ROOT}/.venv/bin/python}"      # with PyYAML: edits examples/tiny.yaml

log() { printf '\n=== %s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'e2e-kind: %s\n' "$*" >&2; exit 1; }

for cmd in docker kind helm kubectl curl; do
  command -v "${cmd}" >/dev/null || die "'${cmd}' is required (helm/kubectl: run make install)"
done
docker info >/dev/null 2>&1 || die "docker info failed: no Docker engine"

PF_PID=""
cleanup() {
  local rc=$?
  [[ -z "${PF_PID}" ]] || kill "${PF_PID}" 2>/dev/null || true
  if [[ ${rc} -ne 0 ]]; then
    log "failed (rc=${rc}): state of the cluster"
    kubectl get slmd,rayservice,raycluster,pods -A -o wide >&2 || true
    kubectl -n "${OPERATOR_NS}" logs deployment/slm-operator --tail=200 >&2 || true
  fi
  if [[ "${KEEP_CLUSTER:-0}" != "1" ]]; then
    kind delete cluster --name "${CLUSTER}" >&2 || true
  fi
  exit "${rc}"
}
trap cleanup EXIT

slmd() { kubectl -n "${MODELS_NS}" get slmd "${NAME}" -o "jsonpath={$1}"; }

# Poll until `slmd` jsonpath $1 equals $2 (or, with $3 = "!=", differs from it); echo the value.
wait_for_field() {
  local path="$1" want="$2" op="${3:-==}" timeout_s="$4" started=${SECONDS} value=""
  while (( SECONDS - started < timeout_s )); do
    value="$(slmd "${path}" 2>/dev/null || true)"
    if [[ "${op}" == "==" && "${value}" == "${want}" ]] || [[ "${op}" == "!=" && -n "${value}" && "${value}" != "${want}" ]]; then
      echo "${value}"
      return 0
    fi
    sleep 5
  done
  die "timed out after ${timeout_s}s waiting for ${path} ${op} '${want}' (last: '${value}')"
}

complete() {
  curl -fsS --max-time 60 "http://127.0.0.1:${LOCAL_PORT}/v1/completions" \
    -H 'Content-Type: application/json' \
    -d "{\"model\": \"${MODEL}\", \"prompt\": \"$1\", \"max_tokens\": 8, \"temperature\": 0}"
}

port_forward() {
  [[ -z "${PF_PID}" ]] || kill "${PF_PID}" 2>/dev/null || true
  kubectl -n "${MODELS_NS}" port-forward "svc/${NAME}-serve-svc" "${LOCAL_PORT}:8000" >/dev/null 2>&1 &
  PF_PID=$!
  for _ in $(seq 1 60); do
    if curl -fsS --max-time 5 "http://127.0.0.1:${LOCAL_PORT}/v1/models" >/dev/null 2>&1; then
      return 0
    fi
    sleep 2
  done
  die "the OpenAI API did not answer through the port-forward of svc/${NAME}-serve-svc"
}

expect_paris() {
  local answer
  answer="$(complete "What is the capital of France?")"
  echo "${answer}" >&2
  [[ "${answer}" == *Paris* ]] || die "expected Paris in the answer"
}

# ----------------------------------------------------------------------------------------- cluster
log "kind cluster ${CLUSTER}"
kind_args=(--name "${CLUSTER}" --wait 180s)
[[ -z "${KIND_NODE_IMAGE}" ]] || kind_args+=(--image "${KIND_NODE_IMAGE}")
kind create cluster "${kind_args[@]}"
kubectl config use-context "kind-${CLUSTER}"

log "KubeRay ${KUBERAY_VERSION}"
helm repo add kuberay https://ray-project.github.io/kuberay-helm/ --force-update
helm repo update kuberay
helm upgrade --install kuberay-operator kuberay/kuberay-operator --version "${KUBERAY_VERSION}" \
  --namespace kuberay-system --create-namespace --wait --timeout 5m

# ------------------------------------------------------------------------------------------ images
if [[ "${SKIP_BUILD}" != "1" ]]; then
  log "building ${OPERATOR_IMAGE} and ${SERVING_IMAGE} (CPU)"
  REGISTRY="${REGISTRY}" TAG="${TAG}" SERVING_CPU=1 bash hack/build-images.sh >&2
fi
log "loading the images into kind"
kind load docker-image --name "${CLUSTER}" "${OPERATOR_IMAGE}" "${SERVING_IMAGE}"

# -------------------------------------------------------------------------------------- the chart
log "slm-operator chart"
helm dependency build charts/slm-operator
helm upgrade --install slm-operator charts/slm-operator --namespace "${OPERATOR_NS}" --create-namespace \
  --set image.repository="${REGISTRY}/slm-operator" --set image.tag="${TAG}" \
  --set fullnameOverride=slm-operator --wait --timeout 5m
kubectl -n "${OPERATOR_NS}" rollout status deployment/slm-operator --timeout=180s

# ---------------------------------------------------------------------------------- first revision
log "examples/tiny.yaml in namespace ${MODELS_NS}"
kubectl create namespace "${MODELS_NS}" --dry-run=client -o yaml | kubectl apply -f -
started=${SECONDS}
"${PYTHON}" - "${SERVING_IMAGE}" <<'PY' | kubectl -n "${MODELS_NS}" apply -f -
import sys

import yaml

with open("examples/tiny.yaml") as stream:
    deployment = yaml.safe_load(stream)
deployment["spec"]["rayImage"] = sys.argv[1]
print(yaml.safe_dump(deployment, sort_keys=False))
PY
wait_for_field .status.phase Ready "==" "${READY_TIMEOUT_S}" >/dev/null
ready_s=$(( SECONDS - started ))
first_revision="$(slmd .status.stableRevision)"
kubectl -n "${MODELS_NS}" get slmd "${NAME}" >&2
log "Ready after ${ready_s}s, stable revision ${first_revision}"
port_forward
expect_paris

# ---------------------------------------------------------------------- a good change is promoted
# The canary phase may be short, so these steps wait on what stays: stableRevision and lastValidation.
log "a good new revision (tiny://good at model revision v2): expect promotion"
started=${SECONDS}
kubectl -n "${MODELS_NS}" patch slmd "${NAME}" --type merge \
  -p '{"spec": {"model": {"source": "tiny://good", "revision": "v2"}}}'
promoted="$(wait_for_field .status.stableRevision "${first_revision}" "!=" "${ROLLOUT_TIMEOUT_S}")"
wait_for_field .status.phase Ready "==" "${ROLLOUT_TIMEOUT_S}" >/dev/null
promote_s=$(( SECONDS - started ))
kubectl -n "${MODELS_NS}" get slmd "${NAME}" >&2
[[ -z "$(slmd .status.canaryRevision)" ]] || die "a canary is still set after promotion"
[[ "$(slmd .status.lastValidation.revision)" == "${promoted}" ]] || die "${promoted} was promoted unvalidated"
[[ "$(slmd .status.lastValidation.passed)" == "true" ]] || die "${promoted} was promoted with a failed validation"
log "promoted ${promoted} after ${promote_s}s"
port_forward
expect_paris

# ------------------------------------------------------------------------ a bad change rolls back
log "tiny://bad: expect validation to fail and a rollback"
started=${SECONDS}
kubectl -n "${MODELS_NS}" patch slmd "${NAME}" --type merge \
  -p '{"spec": {"model": {"source": "tiny://bad", "revision": "v3"}}}'
bad="$(wait_for_field .status.lastValidation.revision "${promoted}" "!=" "${ROLLOUT_TIMEOUT_S}")"
kubectl -n "${MODELS_NS}" get slmd "${NAME}" >&2
[[ "$(slmd .status.lastValidation.passed)" == "false" ]] || die "tiny://bad (${bad}) passed validation"
wait_for_field .status.canaryRevision "" "==" "${ROLLOUT_TIMEOUT_S}" >/dev/null
rollback_s=$(( SECONDS - started ))
kubectl -n "${MODELS_NS}" get slmd "${NAME}" -o wide >&2
stable_after="$(slmd .status.stableRevision)"
[[ "${stable_after}" == "${promoted}" ]] || die "stable revision changed to ${stable_after} after a failed canary"
[[ "$(slmd .status.canaryWeight)" =~ ^0?$ ]] || die "the failed canary still gets traffic"
phase_after="$(slmd .status.phase)"
degraded="$(slmd '.status.conditions[?(@.type=="Degraded")].status')"
log "rolled back ${bad} after ${rollback_s}s; phase ${phase_after}, Degraded=${degraded}, stable ${stable_after}"
port_forward
expect_paris

printf '{"ready_s": %d, "promote_s": %d, "rollback_s": %d, "first_revision": "%s", "promoted": "%s", "rolled_back": "%s", "phase_after_rollback": "%s", "degraded_after_rollback": "%s"}\n' \
  "${ready_s}" "${promote_s}" "${rollback_s}" "${first_revision}" "${promoted}" "${bad}" "${phase_after}" "${degraded}"
