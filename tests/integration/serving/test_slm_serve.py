"""`slm serve FILE`, the real command in its own process: serves the tiny model from `examples/tiny.yaml`
on its own Ray, stops on Ctrl-C and leaves none of the processes it started behind.

The command is started with SIGINT ignored, as a command started with `&` from a non-interactive
shell inherits it: Ctrl-C must stop it all the same. Real Ray Serve and the vLLM CPU build; the only
stand-in is the machine (CPU cores instead of GPUs).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import httpx
import psutil
import pytest

from slm_serving.local import free_port

pytestmark = pytest.mark.serving

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tiny.yaml"
SLM = Path(sys.executable).parent / "slm"
START_TIMEOUT_S = 400.0


def start_with_sigint_ignored(command: list[str]) -> subprocess.Popen[str]:
    """Start `command` the way `&` in a script does: SIGINT ignored (a disposition exec keeps)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def wait_for_answer(port: int, proc: subprocess.Popen[str]) -> str | None:
    """The tiny model's answer through the OpenAI API once it serves, None if the command exited first."""
    body = {"model": "tiny", "prompt": "What is the capital of France?", "max_tokens": 8, "temperature": 0}
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:  # 404 until the routes are in place
            text: str = response.json()["choices"][0]["text"]
            return text
        time.sleep(1)
    return None


def test_slm_serve_serves_the_file_until_ctrl_c_then_stops_everything_it_started() -> None:
    port = free_port()
    proc = start_with_sigint_ignored([str(SLM), "serve", str(EXAMPLE), "--port", str(port)])
    try:
        answer = wait_for_answer(port, proc)
        assert answer is not None, "slm serve never answered"
        assert "Paris" in answer
        started = psutil.Process(proc.pid).children(recursive=True)
        assert started, "no Ray processes under slm serve"

        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output[-2000:]
        assert "shutting down" in output and "stopped" in output, output[-2000:]
        _, alive = psutil.wait_procs(started, timeout=60)
        assert not alive, [p.pid for p in alive]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    finally:
        stop_everything_under(proc)


def stop_everything_under(proc: subprocess.Popen[str]) -> None:
    """After a failure: kill the command and every process it started (by pid, never by name)."""
    if proc.poll() is None:
        started = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait()
        for child in started:
            with suppress(psutil.NoSuchProcess):
                child.kill()
