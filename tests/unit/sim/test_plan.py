"""`slm plan` end to end through the CLI (short horizons keep it fast)."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slm_operator.cli import app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_plan_json_has_every_policy_and_strategy() -> None:
    result = CliRunner().invoke(app, ["plan", str(EXAMPLES / "phi3-mini.yaml"), "--hours", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert [row["policy"] for row in plan["policies"]] == [
        "queue depth (spec)",
        "Ray Serve default",
        "KEDA on vllm waiting",
    ]
    assert len(plan["rollouts"]) == 3
    queue = plan["policies"][0]
    assert 0 <= queue["slo_attainment"] <= 1 and queue["gpu_hours"] > 0 and queue["cost_per_million_tokens_usd"] > 0
    assert plan["deployments"][0]["profile"] == "phi-3-mini/L4"


def test_plan_replays_a_trace_and_refuses_an_unknown_gpu(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp,prompt_tokens,output_tokens\n" + "".join(f"{i * 0.1},200,50\n" for i in range(3000)))
    spec = EXAMPLES / "phi3-mini.yaml"
    ok = CliRunner().invoke(
        app, ["plan", str(spec), "--trace", str(trace), "--hours", "0.2", "--gpu-type", "NVIDIA-H100-80GB-HBM3"]
    )
    assert ok.exit_code == 0, ok.output
    assert "phi-3-mini/H100" in ok.output
    bad = CliRunner().invoke(app, ["plan", str(spec), "--hours", "0.1", "--gpu-type", "TPU-v9"])
    assert bad.exit_code == 1 and "no calibration for GPU type 'TPU-v9'" in bad.output


def test_plan_without_numpy_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the sim extra is not installed (numpy absent: None in sys.modules makes its import fail)."""
    for name in [m for m in sys.modules if m.startswith("slm_operator.sim")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "numpy", None)
    result = CliRunner().invoke(app, ["plan", str(EXAMPLES / "phi3-mini.yaml"), "--hours", "0.1"])
    assert result.exit_code == 2, result.output
    assert "pip install 'slm-operator[sim]'" in result.output


def test_operator_image_installs_the_extra_that_slm_plan_imports() -> None:
    root = EXAMPLES.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("numpy") for requirement in extras["sim"])
    dockerfile = (root / "images" / "operator.Dockerfile").read_text()
    assert "pip install '.[sim]'" in dockerfile
