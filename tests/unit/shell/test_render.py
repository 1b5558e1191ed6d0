"""`slm render FILE --status STATUS`: the RayService at a point of a rollout."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from slm_operator.cli import app
from slm_operator.status import status_document
from tests.conftest import EXAMPLES
from tests.unit.builder.cluster_driver import Driver
from tests.unit.rollout.helpers import validation

runner = CliRunner()


def test_render_at_a_rollout_point_matches_what_the_operator_writes(tmp_path: Path) -> None:
    run = Driver()
    run.step()
    run.step()
    run.spec["resources"]["memory"] = "4Gi"
    run.edited()
    run.step()
    assert run.status is not None and run.status.canary_revision is not None
    run.step(validation=validation(run.status.canary_revision, run.status.stable_revision))
    spec_file, status_file = tmp_path / "tiny.yaml", tmp_path / "status.yaml"
    spec_file.write_text(yaml.safe_dump(run.document))
    status_file.write_text(yaml.safe_dump({**run.document, "status": status_document(run.status)}))
    result = runner.invoke(app, ["render", str(spec_file), "--status", str(status_file)])
    assert result.exit_code == 0, result.output
    rendered = yaml.safe_load(result.stdout)
    assert rendered["spec"] == run.rayservice["spec"]
    assert len(rendered["spec"]["rayClusterConfig"]["workerGroupSpecs"]) == 2  # stable's and canary's groups
    plain = yaml.safe_load(runner.invoke(app, ["render", str(spec_file)]).stdout)
    assert len(plain["spec"]["rayClusterConfig"]["workerGroupSpecs"]) == 1


def test_render_refuses_a_bad_status_naming_the_field(tmp_path: Path) -> None:
    status_file = tmp_path / "status.yaml"
    status_file.write_text(yaml.safe_dump({"revisions": [{"name": "x", "role": "boss", "weight": 1, "template": {}}]}))
    result = runner.invoke(app, ["render", str(EXAMPLES / "tiny.yaml"), "--status", str(status_file)])
    assert result.exit_code == 1
    assert "status.revisions.0.role" in result.output
