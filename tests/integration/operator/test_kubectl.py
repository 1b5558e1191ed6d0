"""The user's path: a real `kubectl` applies examples/tiny.yaml, lists it with the CRD's printer
columns, and deletes it (its RayService goes with it)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from tests.harness.cluster import ROOT, TINY, wait_for
from tests.harness.emulator import EmulatorThread


def _kubectl() -> str | None:
    local = ROOT / ".tools" / "bin" / "kubectl"
    return str(local) if local.exists() else shutil.which("kubectl")


@pytest.fixture
def kubectl(api: EmulatorThread, tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    binary = _kubectl()
    if binary is None:
        pytest.skip("kubectl not installed (hack/install-tools.sh puts it in .tools/bin)")
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: emu, cluster: {{server: '{api.url}'}}}}]\n"
        "users: [{name: me, user: {}}]\n"
        "contexts: [{name: emu, context: {cluster: emu, user: me, namespace: default}}]\n"
        "current-context: emu\n"
    )
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(tmp_path)}

    def run(*args: str) -> str:
        done = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def test_apply_get_delete(api: EmulatorThread, kubectl, operator: object) -> None:  # type: ignore[no-untyped-def]
    assert "slmdeployment.slm.dev/tiny created" in kubectl("apply", "-f", str(TINY))
    wait_for(lambda: api.objects("rayservices"), what="RayService")
    header, row = wait_for(
        lambda: (lines := kubectl("get", "slmd").splitlines()) and "Deploying" in lines[1] and lines,
        what="phase column",
    )
    assert header.split() == ["NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "READY", "PHASE", "AGE"]
    assert row.split()[:2] == ["tiny", "tiny"] and "Deploying" in row.split()
    assert "deleted" in kubectl("delete", "-f", str(TINY))
    assert not api.objects("slmdeployments") and not api.objects("rayservices")
