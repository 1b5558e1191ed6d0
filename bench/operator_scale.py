"""Scale: N SLMDeployments through the operator alone.

The API emulator runs as its own process (`python -m tests.harness.emulator`) and so does the
operator (the real `run_operator`, configured by SLM_* variables as the chart does), so the operator's
RSS and CPU are its own and the emulator's validation is outside them; this process only drives.

Measured: seconds from the first create until every RayService exists; the operator's peak RSS and
CPU-seconds over the whole run; Events per object per hour in steady state (every 10th object is
autoscaled, so the replica timer runs); latency from a spec edit to the updated RayService with all
objects present, then again while `--canaries` objects are validating canaries whose golden prompts
take `--prompt-seconds` each (a router stand-in that answers that late). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator"), str(ROOT / "serving")]

import kubernetes  # noqa: E402

from tests.harness.cluster import RAYS, SLMD, tiny  # noqa: E402
from tests.harness.kuberay_status import report_all_running  # noqa: E402
from tests.harness.operator_process import OperatorProcess  # noqa: E402
from tests.harness.slow_router import SlowRouter  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_status_mib(pid: int, field: str) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def count(k8s: kubernetes.client.CustomObjectsApi, plural: tuple[str, ...]) -> int:
    return len(k8s.list_namespaced_custom_object(*plural)["items"])


def count_events(core: kubernetes.client.CoreV1Api) -> int:
    return len(core.list_namespaced_event("default").items)


def settle_events(core: kubernetes.client.CoreV1Api, timeout: float, quiet_s: float = 10) -> None:
    """Wait until no Event has been posted for `quiet_s` (the backlog of the creations is through)."""
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count_events(core)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(1)


def body(i: int) -> dict[str, Any]:
    obj = tiny(f"slm-{i:05d}")
    if i % 10 == 0:
        obj["spec"]["autoscaling"]["maxReplicas"] = 2
    return obj


def wait(check: Any, timeout: float, what: str, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(every)


def edit_latencies_ms(k8s: kubernetes.client.CustomObjectsApi, names: list[str], timeout: float) -> list[float]:
    """Edit each object's maxReplicas; ms until its RayService carries the new value."""
    latencies = []
    for n, name in enumerate(names):
        value = 3 + n % 5
        started = time.monotonic()
        k8s.patch_namespaced_custom_object(*SLMD, name, {"spec": {"autoscaling": {"maxReplicas": value}}})
        wait(
            lambda name=name, value=value: (
                f"max_replicas: {value}\n" in k8s.get_namespaced_custom_object(*RAYS, name)["spec"]["serveConfigV2"]
            ),
            timeout,
            f"edit of {name}",
        )
        latencies.append((time.monotonic() - started) * 1000)
    return latencies


def percentile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0], 1)


def start_canary(k8s: kubernetes.client.CustomObjectsApi, name: str, timeout: float) -> None:
    report_all_running(k8s, name)
    wait(
        lambda: (k8s.get_namespaced_custom_object(*SLMD, name).get("status") or {}).get("phase") == "Ready",
        timeout,
        f"{name} Ready",
        0.1,
    )
    k8s.patch_namespaced_custom_object(*SLMD, name, {"spec": {"model": {"source": "tiny://bad"}}})
    wait(lambda: len(report_all_running(k8s, name)) == 3, timeout, f"{name} canary in its RayService", 0.1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=40)
    parser.add_argument("--canaries", type=int, default=50)
    parser.add_argument("--prompt-seconds", type=float, default=10.0)
    parser.add_argument("--steady-seconds", type=float, default=90.0)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--edit-timeout", type=float, default=120)
    return parser.parse_args()


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    """The API emulator in its own process (stopped by closing its stdin); its URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "operator"), str(ROOT / "serving")])}
    emulator = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.emulator"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert emulator.stdout is not None
    return emulator, emulator.stdout.readline().strip()


def main() -> None:
    args = parse_args()
    log_dir = pathlib.Path(tempfile.gettempdir())
    emulator, url = start_emulator()
    config = kubernetes.client.Configuration(host=url)
    config.connection_pool_maxsize = 32
    client = kubernetes.client.ApiClient(config)
    k8s, core = kubernetes.client.CustomObjectsApi(client), kubernetes.client.CoreV1Api(client)
    with (
        SlowRouter(delay_s=args.prompt_seconds) as slow,
        open(log_dir / "operator_scale.log", "w") as log,
        OperatorProcess(url, log, SLM_LOG_FORMAT="json", SLM_ROUTER_URL_TEMPLATE=slow.url) as operator,
    ):
        try:
            k8s.create_namespaced_custom_object(*SLMD, tiny("warm-up"))  # the operator is up once it acts
            wait(lambda: count(k8s, RAYS) == 1, 60, "operator start", 0.2)
            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: k8s.create_namespaced_custom_object(*SLMD, body(i)), range(args.objects)))
            wait(lambda: count(k8s, RAYS) == args.objects + 1, args.timeout, "all RayServices", 0.5)
            to_all_s = time.monotonic() - start
            cpu_to_all = {"operator": cpu_seconds(operator.pid), "emulator": cpu_seconds(emulator.pid)}
            peak_by_phase = {"all_rayservices": proc_status_mib(operator.pid, "VmHWM")}
            settle_events(core, 300)  # the creations' Events posted: what follows is steady state
            events_before, steady_started = count_events(core), time.monotonic()
            time.sleep(args.steady_seconds)
            steady_events = count_events(core) - events_before
            peak_by_phase["steady"] = proc_status_mib(operator.pid, "VmHWM")
            steady_hours = (time.monotonic() - steady_started) / 3600
            names = [f"slm-{i:05d}" for i in range(args.objects)]
            rng = random.Random(1)
            edits = edit_latencies_ms(k8s, rng.sample(names[args.canaries :], args.edits), args.edit_timeout)
            peak_by_phase["edits"] = proc_status_mib(operator.pid, "VmHWM")
            for name in names[: args.canaries]:
                start_canary(k8s, name, 60)
            wait(lambda: slow.requests >= args.canaries, 120, "every canary validating", 0.2)
            peak_by_phase["canaries_validating"] = proc_status_mib(operator.pid, "VmHWM")
            rest = [n for n in names[args.canaries :]]
            slow_edits = edit_latencies_ms(k8s, rng.sample(rest, args.edits), args.edit_timeout)
            validating_during = slow.answered < args.canaries * 10  # still far from done
            cpu = cpu_seconds(operator.pid)
            peak = proc_status_mib(operator.pid, "VmHWM")
            emulator_cpu = cpu_seconds(emulator.pid)
        finally:
            emulator.stdin.close() if emulator.stdin else None
    emulator.wait(30)
    print(
        json.dumps(
            {
                "slow_router_requests": slow.requests,
                "canaries_still_validating": validating_during,
                "cpu_seconds_to_all_rayservices": {k: round(v, 1) for k, v in cpu_to_all.items()},
                "emulator_cpu_seconds": round(emulator_cpu, 1),
                "peak_rss_mib_by_phase": {k: round(v, 1) for k, v in peak_by_phase.items()},
            }
        ),
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "objects": args.objects,
                "seconds_to_all_rayservices": round(to_all_s, 2),
                "peak_rss_mib": round(peak, 1),
                "operator_cpu_seconds": round(cpu, 1),
                "edit_p50_ms": percentile(edits, 50),
                "edit_p99_ms": percentile(edits, 99),
                "edit_p99_ms_slow_canaries": percentile(slow_edits, 99),
                "events_per_object_hour": round(steady_events / (args.objects + 1) / steady_hours, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
