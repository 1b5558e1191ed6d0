"""The Helm chart `charts/slm-operator`, rendered by the real `helm` binary and checked offline.

`helm lint --strict` and `helm template --include-crds` run for the default values and for a few
non-default value sets; every rendered object of a built-in kind is validated (strictly: unknown
fields fail) against Kubernetes' OpenAPI schemas with `kubernetes-validate`, kopf's peering objects
against the chart's own peering CRDs. On top: the chart's SLMDeployment CRD is the generated one,
the pods are locked down, and RBAC grants exactly the listed permissions and nothing more.

The chart declares no dependencies (KubeRay is a documented prerequisite), so the checkout itself is
linted and rendered, with no network access. The offline dry-run install is `helm template`: Helm runs
it as `helm install` in dry-run, client-only mode. `helm install --dry-run=client` itself asks the
cluster for its version first in Helm 3 (helm/helm#13144, open for 3.15-3.18; 3.17.2 is pinned here),
so without a cluster it fails; `test_dry_run_install_without_a_cluster` pins down exactly that and
checks the rendered install once a Helm without the bug is used.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from slm_operator.rollout.cost import Prices
from slm_operator.settings import OperatorSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "charts" / "slm-operator"
HELM = REPO_ROOT / ".tools" / "bin" / "helm"
SLM_CRD = "slm.dev_slmdeployments.yaml"
RELEASE, NAMESPACE = "slm", "slm-system"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate carries.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
PROMETHEUS_OPERATOR_GROUP = "monitoring.coreos.com/v1"
CERT_MANAGER_GROUP = "cert-manager.io/v1"
SERVING_METRICS = REPO_ROOT / "serving" / "slm_serving" / "metrics.py"
OPERATOR_METRICS = REPO_ROOT / "operator" / "slm_operator" / "metrics.py"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"operator": {"watchNamespaces": ["team-a", "team-b"]}},
    "cluster-wide-single": {"replicaCount": 1, "operator": {"watchNamespaces": [], "logFormat": "text"}},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "servingPodMonitor": {"enabled": True},
        }
    },
    "dashboard": {"dashboard": {"enabled": True, "namespace": "monitoring"}},
    "no-webhook": {"webhook": {"enabled": False}},
    "webhook-cert-manager": {
        "webhook": {"enabled": True, "certificates": "certManager"},
        "operator": {"watchNamespaces": ["team-a"]},
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "apiServer": {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [6443]},
        },
        "rayAuth": {"existingSecret": "my-ray-key"},
        "kuberay": {"namespace": "ray-system"},
    },
}

# Every permission the operator gets, per mode: (apiGroup, resource) -> verbs. Anything else fails.
# kopf runs with scanning off (operator/slm_operator/handlers.py): no namespaces, no CRDs.
NAMESPACED_PERMISSIONS: dict[tuple[str, str], set[str]] = {
    ("slm.dev", "slmdeployments"): {"get", "list", "watch", "patch"},
    ("slm.dev", "slmdeployments/status"): {"get", "patch", "update"},
    ("slm.dev", "slmdeployments/finalizers"): {"update"},
    ("ray.io", "rayservices"): {"get", "list", "watch", "create", "patch", "update", "delete"},
    ("", "events"): {"create", "patch"},
    ("", "serviceaccounts"): {"get", "create"},
    ("", "secrets"): {"create"},  # the Ray token Secret; never get/list/watch: no Secret is ever read
    ("networking.k8s.io", "networkpolicies"): {"get", "create", "update"},
    ("kopf.dev", "kopfpeerings"): {"get", "list", "watch", "patch"},
}
CLUSTER_PERMISSIONS: dict[tuple[str, str], set[str]] = {
    **{key: verbs for key, verbs in NAMESPACED_PERMISSIONS.items() if key[1] != "kopfpeerings"},
    ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "patch"},
}


# ------------------------------------------------------------------------------------------ helpers


def helm_binary() -> Path:
    if not HELM.is_file():
        pytest.fail(f"{HELM} is missing: run `make install` (hack/install-tools.sh) to get helm")
    return HELM


def run_helm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *map(str, args)], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def chart() -> Path:
    """The chart as checked in (no dependencies to fetch)."""
    return CHART


def values_file(directory: Path, name: str) -> Path:
    path = directory / f"values-{name}.yaml"
    path.write_text(yaml.safe_dump(VALUE_SETS[name]))
    return path


def render(chart: Path, values: Path) -> list[dict[str, Any]]:
    result = run_helm("template", RELEASE, chart, "--namespace", NAMESPACE, "--include-crds", "-f", values)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(chart: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("values")
    return {name: render(chart, values_file(directory, name)) for name in VALUE_SETS}


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(documents, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def permissions(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def operator_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = only(documents, "Deployment")["spec"]["template"]["spec"]
    return pod


def env_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    env = operator_pod(documents)["containers"][0]["env"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    for path in (CHART / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd["spec"]["names"]["kind"] == kind:
                schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
                return jsonschema.Draft7Validator(schema)
    raise AssertionError(f"no CRD for {kind} in {CHART / 'crds'}")


def all_documents(rendered: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, documents in rendered.items():
        for document in documents:
            yield name, document


# --------------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(chart: Path, tmp_path: Path, name: str) -> None:
    result = run_helm("lint", "--strict", chart, "--namespace", NAMESPACE, "-f", values_file(tmp_path, name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_install_without_a_cluster(chart: Path, tmp_path: Path) -> None:
    """No kubeconfig: the default API server (localhost:8080) refuses the connection at once."""
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    command = [str(helm_binary()), "install", RELEASE, str(chart), "-n", NAMESPACE, "--dry-run=client"]
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, timeout=60)
    version = run_helm("version", "--template", "{{.Version}}").stdout
    if result.returncode != 0:  # helm/helm#13144: the reachability check runs even in client dry-run mode
        assert version.startswith("v3."), f"{version}: {result.stderr}"
        assert "INSTALLATION FAILED: Kubernetes cluster unreachable" in result.stderr, result.stderr
        return
    documents = [d for d in yaml.safe_load_all(result.stdout.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]) if d]
    assert only(documents, "Deployment")["metadata"]["name"] == f"{RELEASE}-slm-operator"


def test_chart_has_no_dependencies() -> None:
    """KubeRay is a prerequisite: a declared dependency would break lint/template/install offline."""
    assert "dependencies" not in yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert not (CHART / "charts").exists()


def test_nothing_from_kuberay_is_rendered(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, document in all_documents(rendered):
        source = document["metadata"].get("labels", {}).get("helm.sh/chart", "")
        assert not source.startswith("kuberay-operator"), f"{name}: {document['kind']} from KubeRay's chart"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_builtin_kinds_match_kubernetes_schemas(rendered: dict[str, list[dict[str, Any]]], kube_version: str) -> None:
    checked = 0
    for name, document in all_documents(rendered):
        if document["apiVersion"] in (PROMETHEUS_OPERATOR_GROUP, "kopf.dev/v1", CERT_MANAGER_GROUP):
            continue
        try:
            kubernetes_validate.validate(document, kube_version, strict=True)
        except jsonschema.ValidationError as error:
            pytest.fail(f"{name}: {document['kind']}/{document['metadata']['name']}: {error.message}")
        checked += 1
    assert checked >= 5 * len(VALUE_SETS)


def test_kopf_peerings_match_the_chart_crds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    peerings = [(n, d) for n, d in all_documents(rendered) if d["apiVersion"] == "kopf.dev/v1"]
    assert peerings
    for name, document in peerings:
        errors = [e.message for e in crd_validator(document["kind"]).iter_errors(document)]
        assert not errors, f"{name}: {errors}"


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_prometheus_operator_kinds(rendered: dict[str, list[dict[str, Any]]], kind: str) -> None:
    """Rendered only on request; their schema (a Prometheus Operator CRD) is not vendored."""
    assert not of_kind(rendered["default"], kind)
    assert of_kind(rendered["monitoring"], kind)
    pytest.skip(f"{kind}: schema not validated, the Prometheus Operator CRDs are not vendored in this repo")


# ------------------------------------------------------------------------------------------- CRDs


def test_chart_slm_crd_is_the_generated_one() -> None:
    generated = REPO_ROOT / "crds" / SLM_CRD
    assert generated.is_file(), f"{generated} is missing: generate it with `make crd`"
    in_chart = CHART / "crds" / SLM_CRD
    assert in_chart.is_file(), f"copy {generated} to {in_chart}"
    assert in_chart.read_bytes() == generated.read_bytes(), f"{in_chart} differs from {generated}: copy it"


def test_chart_carries_kopf_peering_crds(rendered: dict[str, list[dict[str, Any]]]) -> None:
    crds = {d["metadata"]["name"]: d for d in of_kind(rendered["default"], "CustomResourceDefinition")}
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"


# ------------------------------------------------------------------------------ operator workload


def test_operator_defaults(rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    documents = rendered["default"]
    deployment = only(documents, "Deployment")
    container = operator_pod(documents)["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never an outgoing pod beside an incoming one
    assert container["command"] == ["slm", "operator"]
    assert container["image"].endswith(":0.1.0")
    assert env_of(documents) == {
        "SLM_NAMESPACES": "",
        "SLM_PEERING_NAME": "slm-operator",
        "SLM_PEERING_LIFETIME_SECONDS": "60",
        "SLM_METRICS_PORT": "8080",
        "SLM_HEALTH_PORT": "8081",
        "SLM_LOG_FORMAT": "json",
        "SLM_RAY_TOKEN_KEY": {"secretKeyRef": {"name": "slm-slm-operator-ray-token-key", "key": "key"}},
        "SLM_OPERATOR_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "SLM_OPERATOR_POD_LABELS": "app.kubernetes.io/instance=slm,app.kubernetes.io/name=slm-operator",
        "SLM_KUBERAY_NAMESPACE": "",
        "SLM_KUBERAY_POD_LABELS": "app.kubernetes.io/name=kuberay-operator",
        "SLM_GPU_HOUR_PRICES": '{"*":2,"NVIDIA-A100-SXM4-40GB":3,"NVIDIA-H100-80GB-HBM3":4,"NVIDIA-L4":0.8}',
        "SLM_CPU_HOUR_PRICE": "0.04",
        "SLM_PIN_KEY": {"secretKeyRef": {"name": "slm-slm-operator-pin-key", "key": "key"}},
        "POD_ID": {"fieldRef": {"fieldPath": "metadata.name"}},
        "SLM_WEBHOOK_PORT": "9443",
        "SLM_WEBHOOK_HOST": "slm-slm-operator-webhook.slm-system.svc",
        "SLM_WEBHOOK_CERT_DIR": "/etc/slm-webhook",
    }
    # The chart's prices are the operator's own defaults, read back the way the operator reads them.
    for key in ("SLM_GPU_HOUR_PRICES", "SLM_CPU_HOUR_PRICE"):
        monkeypatch.setenv(key, env_of(documents)[key])
    assert OperatorSettings().prices == Prices()
    assert not of_kind(documents, "NetworkPolicy")  # the operator's own policy is opt-in
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhook": 9443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert only(documents, "ClusterKopfPeering")["metadata"]["name"] == "slm-operator"
    assert only(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    for service in of_kind(documents, "Service"):  # metrics and webhook
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_namespaced_mode(rendered: dict[str, list[dict[str, Any]]]) -> None:
    documents = rendered["namespaced"]
    assert env_of(documents)["SLM_NAMESPACES"] == "team-a,team-b"
    peerings = of_kind(documents, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not of_kind(documents, "ClusterKopfPeering")


def test_single_replica_has_no_disruption_budget(rendered: dict[str, list[dict[str, Any]]]) -> None:
    documents = rendered["cluster-wide-single"]
    assert only(documents, "Deployment")["spec"]["replicas"] == 1
    assert not of_kind(documents, "PodDisruptionBudget")
    assert env_of(documents)["SLM_LOG_FORMAT"] == "text"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_are_locked_down(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    pod = operator_pod(rendered[name])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context.get("privileged", False) is False
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")


def test_values_schema_rejects_bad_values(chart: Path) -> None:
    result = run_helm("template", RELEASE, chart, "--set", "operator.logFormat=xml")
    assert result.returncode != 0
    assert "logFormat" in result.stderr
    result = run_helm("template", RELEASE, chart, "--set", "operator.unknownKey=1")
    assert result.returncode != 0


# ------------------------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rbac_has_no_wildcards(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    for kind in ("Role", "ClusterRole"):
        for role in of_kind(rendered[name], kind):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), f"{kind}/{role['metadata']['name']}: * in {field}"
                assert "resourceNames" not in rule and "nonResourceURLs" not in rule


def test_cluster_wide_rbac_is_exactly_what_the_operator_needs(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    documents = rendered["default"]
    assert not of_kind(documents, "Role") and not of_kind(documents, "RoleBinding")
    role = only(documents, "ClusterRole")
    assert permissions(role["rules"]) == CLUSTER_PERMISSIONS
    binding = only(documents, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": only(documents, "ServiceAccount")["metadata"]["name"],
            "namespace": NAMESPACE,
        }
    ]


def test_namespaced_rbac_grants_nothing_cluster_wide(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    documents = rendered["namespaced"]
    roles = of_kind(documents, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert permissions(role["rules"]) == NAMESPACED_PERMISSIONS
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(documents, "RoleBinding")}
    assert sorted(bindings) == ["team-a", "team-b"]
    for binding in bindings.values():
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    assert not of_kind(documents, "ClusterRole") and not of_kind(documents, "ClusterRoleBinding")


# ------------------------------------------------------------------------------------- monitoring


def test_service_monitor_scrapes_the_metrics_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    documents = rendered["monitoring"]
    monitor = only(documents, "ServiceMonitor")
    services = {s["metadata"]["name"]: s for s in of_kind(documents, "Service")}
    service = services.pop("slm-slm-operator-metrics")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    scraped = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert not [s for s in services.values() if scraped & {p["name"] for p in s["spec"]["ports"]}]  # the webhook's
    pod_monitor = only(documents, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "slm-operator"}


def dashboard_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = only(documents, "ConfigMap")
    dashboard: dict[str, Any] = json.loads(config_map["data"]["slm-operator.json"])
    return dashboard


def test_dashboard_configmap_for_the_grafana_sidecar(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert not of_kind(rendered["default"], "ConfigMap")
    config_map = only(rendered["dashboard"], "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    dashboard = dashboard_of(rendered["dashboard"])
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("queue depth", "replicas", "latency", "first token", "error", "rollout state"):
        assert topic in titles


def metric_names(dashboard: dict[str, Any]) -> set[str]:
    """Metric names in the dashboard's queries, without a histogram's _bucket suffix."""
    names = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"\b(?:ray_)?(?:slm|serve)_[a-z_]+", target["expr"]):
                names.add(re.sub(r"_bucket$", "", name))
    return names


def is_defined(name: str, code: str) -> bool:
    """Whether the code names the metric; prometheus_client adds _total to counters itself."""
    return f'"{name}"' in code or f'"{name.removesuffix("_total")}"' in code


def test_dashboard_metrics_exist_in_the_code(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Operator metrics as prometheus_client exposes them; Ray metrics (ours and Ray Serve's) with
    the `ray_` prefix Ray's metrics agent adds."""
    names = metric_names(dashboard_of(rendered["dashboard"]))
    ray_serve = Path(str(importlib.util.find_spec("ray").origin)).parent / "serve" / "_private"  # type: ignore[union-attr]
    sources = {
        "operator": OPERATOR_METRICS.read_text(),
        "serving": SERVING_METRICS.read_text(),
        "ray": "\n".join(path.read_text() for path in ray_serve.glob("*.py")),
    }
    missing = []
    for name in sorted(names):
        if name.startswith("ray_serve_"):
            found = is_defined(name.removeprefix("ray_"), sources["ray"])
        elif name.startswith("ray_"):
            found = is_defined(name.removeprefix("ray_"), sources["serving"])
        else:
            found = is_defined(name, sources["operator"])
        if not found:
            missing.append(name)
    assert len(names) >= 8
    assert not missing, f"the dashboard queries metrics nothing defines: {missing}"


# ---------------------------------------------------------------------------------- admission webhook


def test_webhook_is_on_by_default_and_can_be_turned_off(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert of_kind(rendered["default"], "ValidatingWebhookConfiguration")
    documents = rendered["no-webhook"]
    assert not of_kind(documents, "ValidatingWebhookConfiguration")
    assert "SLM_WEBHOOK_PORT" not in env_of(documents)
    assert "annotations" not in only(documents, "Deployment")["spec"]["template"]["metadata"]


@pytest.mark.parametrize("name", ["default", "webhook-cert-manager"])
def test_webhook_fails_open_and_reaches_the_operator(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    from slm_operator.admission.webhook import HANDLER_ID

    documents = rendered[name]
    [webhook] = only(documents, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Ignore" and webhook["timeoutSeconds"] == 5
    assert webhook["rules"][0]["resources"] == ["slmdeployments"]  # not /status: the operator's writes pass
    assert webhook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    service_ref = webhook["clientConfig"]["service"]
    assert service_ref["path"] == f"/{HANDLER_ID}"
    service = next(s for s in of_kind(documents, "Service") if s["metadata"]["name"] == service_ref["name"])
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    container = operator_pod(documents)["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["webhook"] == 9443
    env = env_of(documents)
    assert env["SLM_WEBHOOK_PORT"] == "9443" and env["SLM_WEBHOOK_CERT_DIR"] == "/etc/slm-webhook"
    assert env["SLM_WEBHOOK_HOST"] == f"{service_ref['name']}.{NAMESPACE}.svc"
    volume = next(v for v in operator_pod(documents)["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == f"{service_ref['name']}-tls"


def test_helm_made_certificate_is_trusted_by_the_webhook_configuration(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    import base64

    from cryptography import x509

    documents = rendered["default"]
    [webhook] = only(documents, "ValidatingWebhookConfiguration")["webhooks"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(webhook["clientConfig"]["caBundle"]))
    secret = next(s for s in of_kind(documents, "Secret") if s["metadata"]["name"].endswith("-tls"))
    assert secret["data"]["ca.crt"] == webhook["clientConfig"]["caBundle"]  # what the next upgrade reuses
    served_pem = base64.b64decode(secret["data"]["tls.crt"])
    served = x509.load_pem_x509_certificate(served_pem)
    served.verify_directly_issued_by(ca)
    # the pods restart when the certificate changes (kopf reads it only when its server starts)
    annotations = only(documents, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/webhook-tls"] == hashlib.sha256(served_pem).hexdigest()
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert f"{env_of(documents)['SLM_WEBHOOK_HOST']}" in names


def test_an_upgrade_keeps_the_certificate_and_the_ray_key_of_the_release(
    chart: Path, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """`helm upgrade` renders with `lookup` against the cluster; so does `helm template
    --dry-run=server`, here against the API emulator (tests/harness/emulator: Secrets by Kubernetes'
    rules), which holds the Secrets a first install made."""
    import kubernetes

    from tests.harness.emulator import EmulatorThread

    first = {s["metadata"]["name"]: s for s in of_kind(rendered["default"], "Secret")}
    with EmulatorThread(namespaces=(NAMESPACE,)) as api:
        core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url)))
        for secret in first.values():
            core.create_namespaced_secret(NAMESPACE, {k: v for k, v in secret.items() if k != "status"})
        config = tmp_path / "kubeconfig"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "emu", "cluster": {"server": api.url}}],
                    "users": [{"name": "me", "user": {}}],
                    "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "me"}}],
                    "current-context": "emu",
                }
            )
        )
        env = {"HOME": str(tmp_path), "KUBECONFIG": str(config), "PATH": "/usr/bin:/bin"}
        command = [str(helm_binary()), "template", RELEASE, str(chart), "-n", NAMESPACE, "--dry-run=server"]
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    again = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {s["metadata"]["name"]: s["data"] for s in of_kind(again, "Secret")} == {
        name: secret["data"] for name, secret in first.items()
    }
    [webhook] = only(again, "ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["clientConfig"]["caBundle"] == first["slm-slm-operator-webhook-tls"]["data"]["ca.crt"]
    template = only(again, "Deployment")["spec"]["template"]["metadata"]
    assert template == only(rendered["default"], "Deployment")["spec"]["template"]["metadata"]  # no restart


def test_cert_manager_mode_injects_the_ca(rendered: dict[str, list[dict[str, Any]]]) -> None:
    documents = rendered["webhook-cert-manager"]
    configuration = only(documents, "ValidatingWebhookConfiguration")
    certificate = only(documents, "Certificate")
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
    assert only(documents, "Issuer")["spec"] == {"selfSigned": {}}
    assert not [
        s for s in of_kind(documents, "Secret") if s["metadata"]["name"].endswith("-tls")
    ]  # cert-manager writes it
    assert "annotations" not in only(documents, "Deployment")["spec"]["template"]["metadata"]
    selector = configuration["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
    assert selector["values"] == ["team-a"]  # only the watched namespaces are sent to the webhook


def test_ray_token_key_secret_is_generated_unless_one_is_named(rendered: dict[str, list[dict[str, Any]]]) -> None:
    secret = next(s for s in of_kind(rendered["default"], "Secret") if s["metadata"]["name"].endswith("-ray-token-key"))
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # survives uninstall/upgrade
    assert len(base64.b64decode(secret["data"]["key"])) == 64
    documents = rendered["network-policy"]
    assert not [s for s in of_kind(documents, "Secret") if s["metadata"]["name"].endswith("-ray-token-key")]
    assert env_of(documents)["SLM_RAY_TOKEN_KEY"] == {"secretKeyRef": {"name": "my-ray-key", "key": "key"}}
    assert env_of(documents)["SLM_KUBERAY_NAMESPACE"] == "ray-system"


def test_operator_network_policy_admits_only_what_the_operator_needs(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    documents = rendered["network-policy"]
    policy = only(documents, "NetworkPolicy")
    pod_labels = only(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ingress_ports = sorted(p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"])
    assert ingress_ports == [8080, 8081, 9443]  # metrics, health, the API server's admission calls
    metrics_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 8080)
    assert metrics_rule["from"] == VALUE_SETS["network-policy"]["networkPolicy"]["metricsFrom"]
    egress = {tuple(sorted(p["port"] for p in rule["ports"])): rule.get("to") for rule in policy["spec"]["egress"]}
    assert egress[(53, 53)] is None  # DNS
    assert egress[(6443,)] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]  # the API server only
    (ray_pods,) = egress[(8000, 8265)]
    assert ray_pods["podSelector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "slm-operator"}}


def test_the_pin_key_is_generated_once_or_taken_from_the_users_secret(
    chart: Path, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The operator's canary pin key (SLM_PIN_KEY): a generated Secret the chart keeps, long enough for
    the operator's settings; or, with `operator.pinKeySecret`, the user's Secret and none rendered."""
    generated = next(s for s in of_kind(rendered["default"], "Secret") if s["metadata"]["name"].endswith("-pin-key"))
    assert generated["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(generated["data"]["key"])) >= 16
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"operator": {"pinKeySecret": {"name": "my-pin-key", "key": "k"}}}))
    own = render(chart, values)
    assert not [s for s in of_kind(own, "Secret") if s["metadata"]["name"].endswith("-pin-key")]
    assert env_of(own)["SLM_PIN_KEY"] == {"secretKeyRef": {"name": "my-pin-key", "key": "k"}}
