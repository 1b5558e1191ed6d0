"""Shared test configuration: markers that skip where the hardware or Docker is missing."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"


def _has_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    return smi is not None and subprocess.run([smi, "-L"], capture_output=True, check=False).returncode == 0


def _has_docker() -> bool:
    docker = shutil.which("docker")
    if docker is None or shutil.which("kind") is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu = _has_gpu() if any("gpu" in i.keywords for i in items) else True
    docker = _has_docker() if any("kind" in i.keywords for i in items) else True
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU (nvidia-smi -L found none)"))
        if "kind" in item.keywords and not docker:
            item.add_marker(pytest.mark.skip(reason="needs Docker (a running engine) and kind: `make e2e` skips"))


@pytest.fixture(autouse=True)
def _operator_logs_on_failure(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> None:
    """Tests on real Ray Serve keep the INFO logs of the operator, the serving side and kopf, so a failure
    in CI shows what they did (pytest prints captured logs only for failed tests)."""
    if "serving" in request.keywords:
        for name in ("slm_operator", "slm_serving", "kopf"):
            caplog.set_level(logging.INFO, logger=name)
