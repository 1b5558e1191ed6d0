"""The real operator (`slm operator`'s `run_operator`) as its own process, configured through `SLM_*`
variables the way the Helm chart configures it: for tests with several operators, and benchmarks
that measure the operator alone."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from types import TracebackType
from typing import IO

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = (
    "from slm_operator.runner import run_operator; from slm_operator.settings import OperatorSettings; "
    "run_operator(OperatorSettings())"
)


class OperatorProcess:
    """`with OperatorProcess(server, log, SLM_PEERING_PRIORITY="200") as op:` — stopped on exit
    (SIGTERM, then SIGKILL); `kill()` ends it at once, as a crashed pod would."""

    def __init__(self, kube_server: str, log: IO[str], **env: str) -> None:
        self.env = {
            **os.environ,
            "SLM_KUBE_SERVER": kube_server,
            "SLM_NAMESPACES": "default",
            "SLM_PEERING_NAME": "",
            "SLM_METRICS_PORT": "0",
            "SLM_HEALTH_PORT": "0",
            "SLM_LOG_FORMAT": "text",
            "SLM_DASHBOARD_URL_TEMPLATE": "",
            # One key for every replica, as the chart's Secret gives them: the same pin digests, so a
            # replica that takes over rewrites no RayService.
            "SLM_PIN_KEY": "operator-tests-pin-key",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "serving")]),
            **env,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> OperatorProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUN], env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
