"""Rollout benchmark: time from spec change to promotion (good) and to rollback (bad), and peak engine
replicas during a rollout relative to steady state, with steady user load through the router the whole
time. Runs the same story as `make demo` (real Ray Serve, real vLLM CPU, tiny models).

Last line: one JSON object. peak_replicas_over_steady is extra replicas at the peak (target ≤
maxSurgeReplicas; KubeRay's new-cluster upgrade doubles them).
"""

from __future__ import annotations

import json

from rich.console import Console

from slm_operator.demo import print_summary, run_story


def main() -> None:
    console = Console(stderr=True)
    result = run_story(console)
    print_summary(console, result)
    figures = {
        "good_promoted": result.good_promoted,
        "bad_rolled_back": result.bad_rolled_back,
        "seconds_to_promote": round(result.seconds_to_promote, 1) if result.seconds_to_promote else None,
        "seconds_to_rollback": round(result.seconds_to_rollback, 1) if result.seconds_to_rollback else None,
        "peak_replicas_over_steady": result.peak_replicas - result.steady_replicas,
        "steady_replicas": result.steady_replicas,
        "requests_answered": result.traffic.ok,
        "failed_requests": result.traffic.failed,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
