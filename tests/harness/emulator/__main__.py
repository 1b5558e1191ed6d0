"""`python -m tests.harness.emulator`: the emulator with this project's and KubeRay's CRDs (and kopf's
peering CRD) as a process of its own, so a benchmark measures the operator alone. Prints its URL on
the first line of stdout and serves until stdin closes or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading

from tests.harness.cluster import ROOT, load_crds
from tests.harness.emulator import EmulatorThread


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmulatorThread() as api:
        load_crds(api)
        api.load_crd(ROOT / "charts" / "slm-operator" / "crds" / "kopf.dev_kopfpeerings.yaml")
        print(api.url, flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()


if __name__ == "__main__":
    main()
