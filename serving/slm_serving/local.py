"""The embedded runtime behind `slm serve FILE` and the serving tests: an own local Ray + Serve.

`LocalServe` starts a private Ray instance (`address="local"`, free ports, dashboard on) and applies
`ServeConfigV2` documents through Serve's declarative REST API, `PUT /api/serve/applications/` on
the dashboard: exactly what KubeRay does, so a weights-only change reconfigures the router in place
instead of restarting it. It stops only the Ray instance it started.

Local runs differ from a cluster in one way, made by the pure `build_local_config`: each revision's
engine gets its own CPU core for vLLM's threads (`VLLM_CPU_OMP_THREADS_BIND`) and a small KV cache,
so two engines on a 2-core machine do not fight over one core. A revision that may run several
replicas is left unbound instead (its replicas would share the one core while another idles).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil
from pydantic import BaseModel, ConfigDict, JsonValue

from slm_serving.config import (
    FRONT_END_ENV,
    ROUTER_APP_NAME,
    FrontEnd,
    HTTPOptions,
    ServeApplicationConfig,
    ServeConfigV2,
)

DEFAULT_NUM_CPUS = 4
"""Logical CPUs the local Ray advertises: the router (0 CPUs) plus engines at 1 CPU each fit on 2 cores."""

KV_CACHE_GIB = "1"
_DEPLOY_TIMEOUT_S = 600.0
LEFTOVER_GRACE_S = 10.0
"""After `ray.shutdown()`: how long Ray's processes get to exit before they are terminated, then killed."""
_POLL_S = 0.5


class LocalServeError(RuntimeError):
    """An application failed to deploy (the message carries Serve's status message) or never became ready."""


class AppState(BaseModel):
    """One application's state as Serve's REST API reports it."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: str
    message: str


def build_local_config(config: ServeConfigV2, *, port: int, cpu_count: int) -> ServeConfigV2:
    """`config` for this machine: HTTP on 127.0.0.1:`port`; engine `i` bound to core `i % cpu_count`
    unless its revision may scale beyond one replica (then the OS places each replica)."""
    apps: list[ServeApplicationConfig] = []
    engines = 0
    for original in config.applications:
        app = original
        if app.name != ROUTER_APP_NAME:
            bind = "nobind" if _may_scale_out(app) else str(engines % max(cpu_count, 1))
            env: dict[str, JsonValue] = {"VLLM_CPU_OMP_THREADS_BIND": bind, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB}
            engines += 1
            runtime_env = dict(app.runtime_env or {})
            given = runtime_env.get("env_vars")
            runtime_env["env_vars"] = env | (dict(given) if isinstance(given, Mapping) else {})
            app = app.model_copy(update={"runtime_env": runtime_env})
        apps.append(app)
    return config.model_copy(
        update={"http_options": HTTPOptions(host="127.0.0.1", port=port), "applications": tuple(apps)}
    )


def _may_scale_out(app: ServeApplicationConfig) -> bool:
    return any(
        (d.num_replicas or 1) > 1 or (d.autoscaling_config is not None and d.autoscaling_config.max_replicas > 1)
        for d in app.deployments
    )


def parse_app_states(details: Mapping[str, Any]) -> list[AppState]:
    """Applications from `GET /api/serve/applications/` (Serve's `ServeInstanceDetails`).

    A failed application's own message is generic ("Failed to update the deployments"); the cause
    (the replica constructor's exception) is in its unhealthy deployments' messages, appended here.
    """
    states = []
    for name, app in (details.get("applications") or {}).items():
        messages = [str(app.get("message") or "")]
        for deployment_name, deployment in (app.get("deployments") or {}).items():
            if deployment.get("status") not in (None, "HEALTHY") and deployment.get("message"):
                messages.append(f"{deployment_name}: {deployment['message']}")
        states.append(
            AppState(name=name, status=str(app.get("status", "")), message="\n".join(m for m in messages if m))
        )
    return states


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


HAPROXY_FIXED_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
)
"""Ports Ray Serve 2.60 gives HAProxy's stats page (8404), its Prometheus endpoint (9101) and the
fallback Serve proxy (8500) unless told otherwise: fixed, so a second local Ray would collide."""


def _own_ports(front_end: FrontEnd) -> dict[str, str]:
    """Free ports for what the front end would otherwise bind at fixed ones."""
    return {name: str(free_port()) for name in HAPROXY_FIXED_PORTS} if front_end is FrontEnd.HAPROXY else {}


@contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """Set env vars while Ray starts (its processes inherit them), then restore the caller's."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _with_descendants(processes: list[psutil.Process]) -> list[psutil.Process]:
    found = list(processes)
    for process in processes:
        try:
            found += process.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
    return found


def stop_leftovers(processes: list[psutil.Process], grace_s: float = LEFTOVER_GRACE_S) -> list[int]:
    """Wait for `processes` (ones we started) to exit; terminate, then kill, those that do not. Ray's
    agents (dashboard agent, runtime-env agent) can outlive a raylet that went first. The pids that
    had to be stopped."""
    _, lingering = psutil.wait_procs(processes, timeout=grace_s)
    for process in lingering:
        with suppress(psutil.NoSuchProcess):
            process.terminate()  # psutil refuses a pid that was reused
    _, stubborn = psutil.wait_procs(lingering, timeout=5)
    for process in stubborn:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    return [p.pid for p in lingering]


class LocalServe:
    """A private Ray + Serve: `with LocalServe() as local: local.apply(config); httpx.get(local.url + ...)`."""

    def __init__(
        self,
        *,
        port: int | None = None,
        num_cpus: int = DEFAULT_NUM_CPUS,
        front_end: FrontEnd = FrontEnd.HAPROXY,
        serve_env: Mapping[str, str] | None = None,
    ):
        """`serve_env`: further Ray Serve switches for the whole instance, over those of `front_end`."""
        self.port = port or free_port()
        self.num_cpus = num_cpus
        self.serve_env = {**FRONT_END_ENV[front_end], **_own_ports(front_end), **(serve_env or {})}
        self.dashboard_port = free_port()
        self.metrics_port = free_port()
        self._started = False
        self._ray_children: list[psutil.Process] = []
        """This process's children that `ray.init` started (GCS, raylet, dashboard, …)."""
        self._children_before: set[int] = set()
        self._client: httpx.Client | None = None
        self.auth_headers: dict[str, str] = {}
        """What the dashboard wants on each request: Ray 2.60 turns token authentication on for a
        local cluster by default (`Authorization: Bearer …`)."""

    @property
    def dashboard_token(self) -> str | None:
        """The dashboard's bearer token, if it has one."""
        value = next((v for k, v in self.auth_headers.items() if k.lower() == "authorization"), None)
        return value.removeprefix("Bearer ").strip() if value else None

    @property
    def url(self) -> str:
        """HTTP base URL of the OpenAI API (`/v1/...` below it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus endpoint of this Ray's metrics agent (the router's `ray_slm_router_*` metrics)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self) -> LocalServe:
        import ray
        from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled

        serving_root = str(Path(__file__).resolve().parent.parent)
        pythonpath = os.pathsep.join(p for p in (serving_root, os.environ.get("PYTHONPATH")) if p)
        env = {"PYTHONPATH": pythonpath, **self.serve_env}
        self._started = True  # from here on close() shuts Ray down, even if ray.init is interrupted
        self._children_before = {child.pid for child in psutil.Process().children()}
        with _environment(env):
            ray.init(
                address="local",
                num_cpus=self.num_cpus,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=self.dashboard_port,
                _metrics_export_port=self.metrics_port,
                _system_config={"metrics_report_interval_ms": 1000},
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        self._ray_children = self._new_children()
        self.auth_headers = get_auth_headers_if_auth_enabled({})
        headers = {"Content-Type": "application/json", **self.auth_headers}
        self._client = httpx.Client(base_url=self.dashboard_url, headers=headers, timeout=60)
        return self

    def apply(self, config: ServeConfigV2, *, wait: bool = True, timeout_s: float = _DEPLOY_TIMEOUT_S) -> None:
        """PUT `config` (made local by `build_local_config`); by default wait until every app runs."""
        local = build_local_config(config, port=self.port, cpu_count=os.cpu_count() or 1)
        response = self._rest().put("/api/serve/applications/", json=local.to_document())
        if response.status_code >= 400:
            raise LocalServeError(f"Serve rejected the config ({response.status_code}): {response.text[:2000]}")
        if wait:
            self.wait_running([app.name for app in local.applications], timeout_s=timeout_s)

    def status(self) -> list[AppState]:
        return parse_app_states(self.details())

    def details(self) -> dict[str, Any]:
        """Serve's full `ServeInstanceDetails` (applications, deployments, replicas with actor ids and pids)."""
        response = self._rest().get("/api/serve/applications/")
        response.raise_for_status()
        details: dict[str, Any] = response.json()
        return details

    def wait_running(self, apps: list[str], *, timeout_s: float = _DEPLOY_TIMEOUT_S) -> None:
        """Block until `apps` are RUNNING, showing their states; raise on DEPLOY_FAILED or timeout."""
        from rich.live import Live
        from rich.table import Table

        deadline = time.monotonic() + timeout_s
        with Live(transient=True, refresh_per_second=4) as live:
            while True:
                states = {s.name: s for s in self.status() if s.name in apps}
                table = Table("application", "status", "message", title="Serve applications")
                for name in apps:
                    state = states.get(name)
                    table.add_row(name, state.status if state else "PENDING", (state.message if state else "")[:120])
                live.update(table)
                failed = [s for s in states.values() if s.status == "DEPLOY_FAILED"]
                if failed:
                    raise LocalServeError("; ".join(f"{s.name}: {s.message}" for s in failed))
                if len(states) == len(apps) and all(s.status == "RUNNING" for s in states.values()):
                    return
                if time.monotonic() > deadline:
                    raise LocalServeError(f"not RUNNING after {timeout_s:.0f}s: {sorted(states.values(), key=str)}")
                time.sleep(_POLL_S)

    def close(self) -> None:
        """Shut down Serve and the Ray instance this object started (nothing else), then stop any of its
        processes that outlive `ray.shutdown()`."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._started:
            import ray
            from ray import serve

            started = _with_descendants(self._ray_children or self._new_children())  # before they are re-parented
            try:
                if ray.is_initialized():  # serve.shutdown would start a Ray of its own otherwise
                    serve.shutdown()  # type: ignore[no-untyped-call]
            finally:
                ray.shutdown()
                self._started = False
                lingering = stop_leftovers(started)
                if lingering:
                    logging.getLogger(__name__).warning("stopped Ray processes left running: %s", lingering)

    def __enter__(self) -> LocalServe:
        try:
            return self.start()
        except BaseException:  # a signal or error while Ray starts: stop what it started so far
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _new_children(self) -> list[psutil.Process]:
        """Children of this process that were not there before `ray.init`."""
        return [child for child in psutil.Process().children() if child.pid not in self._children_before]

    def _rest(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("LocalServe is not started")
        return self._client
