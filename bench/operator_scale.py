"""Scale: create N SLMDeployments in the API emulator and time until every RayService exists.

The operator runs as its own process (the real `run_operator`, SLM_* settings), so its peak RSS is
its own; the emulator and the client creating the objects run in this process.
Last line: {"objects": N, "seconds_to_all_rayservices": …, "peak_rss_mib": …}.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator"), str(ROOT / "serving")]

from tests.harness.cluster import SLMD, client_for, load_crds, tiny  # noqa: E402
from tests.harness.emulator import EmulatorThread  # noqa: E402

RUN = (
    "from slm_operator.runner import run_operator; from slm_operator.settings import OperatorSettings; "
    "run_operator(OperatorSettings())"
)


def rss_mib(pid: int, field: str) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    with EmulatorThread() as api:
        load_crds(api)
        env = {
            **os.environ,
            "SLM_KUBE_SERVER": api.url,
            "SLM_NAMESPACES": "default",
            "SLM_PEERING_NAME": "",
            "SLM_METRICS_PORT": "0",
            "SLM_HEALTH_PORT": "0",
            "SLM_LOG_FORMAT": "json",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "serving")]),
        }
        log = open(pathlib.Path(tempfile.gettempdir()) / "operator_scale.log", "w")  # noqa: SIM115
        operator = subprocess.Popen([sys.executable, "-c", RUN], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not api.call(lambda h: any(w.resource.plural == "slmdeployments" for w in h.store.watchers)):
                if time.monotonic() > deadline or operator.poll() is not None:
                    raise SystemExit(f"operator did not start; see {log.name}")
                time.sleep(0.2)
            k8s = client_for(api)
            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda i: k8s.create_namespaced_custom_object(*SLMD, tiny(f"slm-{i:05d}")), range(args.objects)
                    )
                )
            created_s = time.monotonic() - start
            peak = 0.0
            while len(api.objects("rayservices")) < args.objects and time.monotonic() - start < args.timeout:
                peak = max(peak, rss_mib(operator.pid, "VmRSS"))
                time.sleep(0.2)
            done_s = time.monotonic() - start
            count = len(api.objects("rayservices"))
            peak = max(peak, rss_mib(operator.pid, "VmHWM"))
        finally:
            operator.terminate()
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
                operator.wait()
    print(json.dumps({"create_seconds": round(created_s, 2), "rayservices": count}), file=sys.stderr)
    print(
        json.dumps(
            {
                "objects": args.objects,
                "seconds_to_all_rayservices": round(done_s, 2) if count == args.objects else None,
                "peak_rss_mib": round(peak, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
