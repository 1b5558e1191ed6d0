"""`slm serve FILE`, the real command in its own process: serves the tiny model from `examples/tiny.yaml`
on its own Ray, stops on Ctrl-C and leaves none of the processes it started behind; credentials in its
environment appear in none of its output, Ray's logs of its session or its answers.

The command is started with SIGINT ignored, as a command started with `&` from a non-interactive
shell inherits it: Ctrl-C must stop it all the same. Real Ray Serve and the vLLM CPU build; the only
stand-in is the machine (CPU cores instead of GPUs).
"""

from __future__ import annotations

import os
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


FAKE_SECRETS = {"HF_TOKEN": "hf_FAKEtoken0123456789secret", "AWS_SECRET_ACCESS_KEY": "FAKEawsSecretKey0123456789"}
"""Credentials as a user would export them for `hf://` or `s3://` sources (fake: the model is tiny://)."""


def start_with_sigint_ignored(command: list[str]) -> subprocess.Popen[str]:
    """Start `command` the way `&` in a script does: SIGINT ignored (a disposition exec keeps)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = {**os.environ, **FAKE_SECRETS}
    try:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
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
        answers = provoke_errors(port)
        session = session_dir(started)

        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output[-2000:]
        assert "shutting down" in output and "stopped" in output, output[-2000:]
        _, alive = psutil.wait_procs(started, timeout=60)
        assert not alive, [p.pid for p in alive]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
        logs = [path.read_text(errors="replace") for path in (session / "logs").rglob("*") if path.is_file()]
        assert logs, f"no Ray logs under {session}"
        for name, secret in FAKE_SECRETS.items():
            assert secret not in output, name
            assert not any(secret in answer for answer in answers), name
            assert not any(secret in text for text in logs), name
    finally:
        stop_everything_under(proc)


def provoke_errors(port: int) -> list[str]:
    """Answers to requests that go wrong in every way a client can make them (each an error path)."""
    url = f"http://127.0.0.1:{port}"
    calls = [
        httpx.post(f"{url}/v1/completions", content=b"{not json", timeout=30),
        httpx.post(f"{url}/v1/completions", json={"model": "nope", "prompt": "x"}, timeout=30),
        httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": -1}, timeout=30),
        httpx.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": "x" * (2 << 20)}, timeout=30),
        httpx.post(f"{url}/v1/completions", json={"model": "tiny"}, headers={"x-slm-pin-token": "guess"}, timeout=30),
        httpx.get(f"{url}/healthz", timeout=30),
        httpx.get(f"{url}/v1/models", timeout=30),
    ]
    assert [c.status_code for c in calls] == [400, 404, 400, 413, 403, 200, 200], [c.text[:200] for c in calls]
    return [f"{c.headers}\n{c.text}" for c in calls]


def session_dir(processes: list[psutil.Process]) -> Path:
    """The Ray session directory of this command's own Ray (from its raylet's command line)."""
    for process in processes:
        with suppress(psutil.Error):
            for arg in process.cmdline():
                if arg.startswith("--session_dir="):
                    return Path(arg.removeprefix("--session_dir="))
    raise AssertionError("no raylet with --session_dir among the started processes")


def stop_everything_under(proc: subprocess.Popen[str]) -> None:
    """After a failure: kill the command and every process it started (by pid, never by name)."""
    if proc.poll() is None:
        started = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait()
        for child in started:
            with suppress(psutil.NoSuchProcess):
                child.kill()
