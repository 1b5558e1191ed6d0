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
import threading
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


class OutputLines:
    """The command's output, read line by line in a thread, to wait on (no sleeps)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._done = False
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float) -> int | None:
        """Index of the first line containing `text`, None if the output ended or `timeout` passed first."""
        with self._changed:
            self._changed.wait_for(lambda: self._find(text) is not None or self._done, timeout)
            return self._find(text)

    def wait_closed(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._done, timeout)

    def _find(self, text: str) -> int | None:
        return next((i for i, line in enumerate(self.lines) if text in line), None)

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)


def spec_file(tmp_path: Path, source: str) -> Path:
    """examples/tiny.yaml with another model source."""
    path = tmp_path / "slmd.yaml"
    path.write_text(EXAMPLE.read_text().replace("source: tiny://good", f"source: {source}"))
    return path


def test_slm_serve_shows_why_replicas_fail_at_the_first_failure_and_exits_when_serve_gives_up(
    tmp_path: Path,
) -> None:
    """A model that cannot load (a local path that does not exist: the replica's constructor fails in
    seconds, no network): the shortened cause is on the console after the first failed start, while
    Serve still retries (min(20, 3 x 1 replica) = 3 attempts, Ray Serve 2.60), and once Serve gives up
    `slm serve` exits 1 with the reason, leaving none of its processes behind."""
    missing = tmp_path / "no-such-model"
    cause = f"{missing} does not exist"
    proc = subprocess.Popen(
        [str(SLM), "serve", str(spec_file(tmp_path, str(missing))), "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = OutputLines(proc)
        first = output.wait_for(cause, START_TIMEOUT_S)
        assert first is not None, output.text()[-3000:]
        started = psutil.Process(proc.pid).children(recursive=True)
        assert output.lines[first].startswith("ReplicaStartFailing"), output.text()[-3000:]
        assert "ModelSourceError" in output.lines[first] and "Serve retries 2 more time(s)" in output.lines[first]
        assert "Traceback" not in output.text()  # shortened: the exception line, not the traceback
        assert proc.wait(START_TIMEOUT_S) == 1, output.text()[-3000:]
        assert output.wait_closed(30)
        gave_up = output.wait_for("ReplicaStartFailed", 0)
        assert gave_up is not None and gave_up > first, output.text()[-3000:]
        assert cause in output.lines[gave_up] and "Serve gave up" in output.lines[gave_up]
        verdict = output.wait_for("✗", 0)
        assert verdict is not None and cause in output.lines[verdict], output.text()[-3000:]
        assert "stopped" in output.lines, output.text()[-3000:]
        _, alive = psutil.wait_procs(started, timeout=60)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        stop_everything_under(proc)


def test_slm_serve_stopped_by_sigterm_leaves_no_process_it_started() -> None:
    """SIGTERM (as `kill`, systemd or a container runtime send it) while the model is loading: every
    process `slm serve` started (collected just before the signal, Ray's dashboard and runtime-env
    agents among them) is gone after it exits, and it says it stopped. (Ctrl-C: the first test.)"""
    proc = subprocess.Popen(
        [str(SLM), "serve", str(EXAMPLE), "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # our signal only: nothing else reaches its processes
    )
    try:
        output = OutputLines(proc)
        assert output.wait_for("deploying revision", START_TIMEOUT_S) is not None, output.text()[-3000:]
        started = wait_for_processes(proc, ("dashboard/agent.py", "runtime_env/agent/main.py", "ServeReplica:rev-"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0, output.text()[-3000:]
        assert output.wait_closed(30) and "stopped" in output.lines, output.text()[-3000:]
        _, alive = psutil.wait_procs(started, timeout=60)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        stop_everything_under(proc)


def wait_for_processes(proc: subprocess.Popen[str], markers: tuple[str, ...]) -> list[psutil.Process]:
    """All of `proc`'s descendants, once each marker is in some descendant's command line."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        descendants = psutil.Process(proc.pid).children(recursive=True)
        lines = []
        for process in descendants:
            with suppress(psutil.Error):
                lines.append(" ".join(process.cmdline()))
        if all(any(marker in line for line in lines) for marker in markers):
            return descendants
        time.sleep(0.2)
    raise AssertionError(f"not all of {markers} started under slm serve")
