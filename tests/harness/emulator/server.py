"""Run the emulator on a real TCP port in a background thread with its own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pathlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import kmock
import yaml

from tests.harness.emulator.apiserver import ApiServerEmulator
from tests.harness.emulator.faults import Fault
from tests.harness.emulator.schema import ResourceDef, Validator, crd_resources

T = TypeVar("T")


@functools.cache
def read_crd(path: str) -> dict[str, Any]:
    """The first CustomResourceDefinition in a YAML file (KubeRay's is 1 MB: parsed once, with libyaml)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = [d for d in yaml.load_all(pathlib.Path(path).read_text(), Loader=loader) if d]
    return next(d for d in docs if d.get("kind") == "CustomResourceDefinition")


class EmulatorThread:
    """`with EmulatorThread() as api: api.url` — an API server emulator on 127.0.0.1:<free port>.

    All access to its state goes through `call`, which runs in the emulator's loop (thread-safe).
    `outage()` stops listening (clients get 'connection refused') and starts again on the same port.
    """

    def __init__(self, namespaces: tuple[str, ...] = ("default",)) -> None:
        self.namespaces = namespaces
        self.loop = asyncio.new_event_loop()
        self.handler: ApiServerEmulator | None = None
        self.port: int | None = None
        self._server: kmock.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="k8s-emulator", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        self._run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        if self.handler is None:
            self.handler = ApiServerEmulator()
            await self.handler.__aenter__()
            for name in self.namespaces:
                self.handler.add_namespace(name)
        self.handler.stopping.clear()
        self._server = kmock.Server(self.handler, port=self.port)
        await self._server.__aenter__()
        self.port = self._server.port

    async def _stop(self, final: bool = True) -> None:
        assert self.handler is not None and self._server is not None
        self.handler.stopping.set()  # ends open watch streams so the server can close promptly
        await self._server.__aexit__(None, None, None)
        self._server = None
        if final:
            await self.handler.__aexit__(None, None, None)
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

    # ------------------------------------------------------------ test controls

    def call(self, fn: Callable[[ApiServerEmulator], T]) -> T:
        async def run() -> T:
            assert self.handler is not None
            return fn(self.handler)

        return self._run(run())  # type: ignore[no-any-return]

    def load_crd(
        self, crd: dict[str, Any] | str | pathlib.Path, validators: dict[str, Validator] | None = None
    ) -> list[ResourceDef]:
        """Serve a CRD's versions; `validators` (by version) replace the plain schema check."""
        resources = crd_resources(crd if isinstance(crd, dict) else read_crd(str(crd)))
        for resource in resources:
            if validators and resource.version in validators:
                resource.validators[:] = [validators[resource.version]]
            self.call(lambda h, r=resource: h.register(r))  # type: ignore[misc]
        return resources

    def inject(self, *faults: Fault) -> None:
        self.call(lambda h: h.faults.extend(faults))

    def count(self, verb: str, plural: str, subresource: str | None = None) -> int:
        return self.call(lambda h: h.counts[verb, plural, subresource])

    def objects(self, plural: str, namespace: str | None = "default") -> list[dict[str, Any]]:
        def pick(h: ApiServerEmulator) -> list[dict[str, Any]]:
            return [
                obj
                for (rkey, ns, _), obj in h.store.objects.items()
                if rkey.rsplit("/", 1)[-1] == plural and (namespace is None or ns == namespace)
            ]

        return self.call(pick)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """While inside: nothing listens on the port. Watches are cut; objects are kept."""
        self._run(self._stop(final=False))
        try:
            yield
        finally:
            self._run(self._start())
