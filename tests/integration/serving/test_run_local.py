"""`run_local` (what `slm serve` calls): serves until Ctrl-C, then stops every process it started.

Router only (no engine) to keep it quick: the router answers /healthz and /v1/models by itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from slm_serving.local import free_port

from .conftest import MODEL, build_config

pytestmark = pytest.mark.serving

SCRIPT = """
import sys
from slm_serving.config import ServeConfigV2
from slm_serving.local import run_local
config = ServeConfigV2.model_validate_json(sys.argv[1])
run_local(config, port=int(sys.argv[2]), num_cpus=1)
"""


def test_run_local_serves_until_interrupted_then_cleans_up() -> None:
    full = build_config({})
    config = full.model_copy(update={"applications": full.applications[:1]})  # the router alone
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, config.model_dump_json(), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        models = None
        while models is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:  # 404 until the proxy has its routes
                models = response.json()
            else:
                time.sleep(1)
        assert models is not None, "run_local never served"
        assert [m["id"] for m in models["data"]] == [MODEL]
        started = psutil.Process(proc.pid).children(recursive=True)
        assert started, "no Ray processes under run_local"

        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output[-2000:]
        assert "shutting down" in output
        _, alive = psutil.wait_procs(started, timeout=60)
        assert not alive, [p.pid for p in alive]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
