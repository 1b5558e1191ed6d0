"""A revision whose model cannot load reports why, and leaves the other revisions serving."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from slm_serving.local import LocalServe, LocalServeError

from .conftest import DEFAULT_WEIGHTS, GOOD, MODEL, build_config, engine_application, pinned

pytestmark = pytest.mark.serving


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_revision_that_cannot_load_reports_the_cause(local_serve: LocalServe, tmp_path: Path, kind: str) -> None:
    if kind == "missing":
        source, cause = f"file://{tmp_path}/no-such-model", "does not exist"
    else:
        (tmp_path / "config.json").write_text("{ this is not json")
        source, cause = f"file://{tmp_path}", "config.json"
    broken = engine_application("broken", source)
    try:
        with pytest.raises(LocalServeError, match="rev-broken") as failure:
            local_serve.apply(build_config(DEFAULT_WEIGHTS, (broken,)), timeout_s=300)
        assert cause in str(failure.value)
        ok = httpx.post(
            f"{local_serve.url}/v1/completions",
            json={"model": MODEL, "prompt": "What is the capital of France?", "max_tokens": 4, "temperature": 0},
            headers=pinned(GOOD),
            timeout=60,
        )
        assert ok.status_code == 200
    finally:
        local_serve.apply(build_config(DEFAULT_WEIGHTS))
