"""End to end on a real cluster: `hack/e2e-kind.sh` in kind (`make e2e`).

The script creates a kind cluster, installs KubeRay and this chart, serves examples/tiny.yaml, sends
an OpenAI request through a port-forward, promotes a good revision, rolls back tiny://bad and deletes
the cluster. It needs Docker and kind; the `kind` marker skips it where they are missing (see
tests/conftest.py). Nothing is faked: where it runs, it runs for real.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "hack" / "e2e-kind.sh"
HACK_SCRIPTS = ("install-tools.sh", "build-images.sh", "e2e-kind.sh")


@pytest.mark.parametrize("name", HACK_SCRIPTS)
def test_hack_script_parses(name: str) -> None:
    """`bash -n`: the scripts that cannot run here at least parse."""
    result = subprocess.run(["bash", "-n", str(REPO_ROOT / "hack" / name)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.kind
@pytest.mark.timeout(5400)
def test_kind_end_to_end() -> None:
    # Its progress log goes to stderr (captured by pytest, shown on failure); stdout ends with a summary.
    result = subprocess.run(["bash", str(SCRIPT)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, check=False)
    assert result.returncode == 0, "hack/e2e-kind.sh failed: see its log in the captured stderr"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    revisions = [summary["first_revision"], summary["promoted"], summary["rolled_back"]]
    assert all(revisions) and len(set(revisions)) == 3, summary
