"""The HTTP face of the emulator: a `kmock.KubernetesScaffold` subclass (kmock gives the TCP server,
request parsing and API discovery) whose object requests are served from `Store`.

kmock 0.8's own `KubernetesEmulator` was not used as the base: it answers creates with 200, keeps no
uid/resourceVersion/generation, replays every object on each watch, has no PUT, selectors, status
isolation, garbage collection or validation, and its request log and object lookups grow with the
square of the traffic (see shared/spikes/k8s-emulator). This class replaces exactly that part and
relies on kmock only for what works (pin kmock==0.8: `_handle` is a private hook).
"""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import aiohttp.web
import attrs
import kmock

from tests.harness.emulator import faults as f
from tests.harness.emulator import objects as o
from tests.harness.emulator.builtin import BUILTIN_KINDS
from tests.harness.emulator.schema import ResourceDef
from tests.harness.emulator.store import Store, Watcher

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
NAMESPACE = ResourceDef(
    group="", version="v1", plural="namespaces", kind="Namespace", singular="namespace", namespaced=False, custom=False
)
EVENT = ResourceDef(
    group="", version="v1", plural="events", kind="Event", singular="event", short_names=("ev",), custom=False
)
POD = ResourceDef(group="", version="v1", plural="pods", kind="Pod", singular="pod", short_names=("po",), custom=False)


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesScaffold):
    store: Store = attrs.field(factory=Store)
    faults: list[f.Fault] = attrs.field(factory=list)
    counts: collections.Counter[tuple[str, str, str | None]] = attrs.field(factory=collections.Counter)
    """Requests served, by (verb, plural, subresource): for asserting 'no duplicate work'."""
    stopping: asyncio.Event = attrs.field(factory=asyncio.Event)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.register(NAMESPACE)
        self.register(EVENT)
        self.register(POD)
        for kind in BUILTIN_KINDS:
            self.register(kind)
        for name in sorted(self.store.namespaces):
            self.add_namespace(name)

    # ------------------------------------------------------------ setup (call in the emulator's loop)

    def register(self, resource: ResourceDef) -> None:
        self.store.resources[resource.key] = resource
        self.resources[resource.key] = kmock.ResourceInfo(
            kind=resource.kind,
            singular=resource.singular,
            shortnames=set(resource.short_names),
            categories=set(resource.categories),
            namespaced=resource.namespaced,
            subresources={"status"} if resource.status_subresource else set(),
            verbs=set(VERBS),
        )

    def add_namespace(self, name: str) -> None:
        self.store.namespaces.add(name)
        if (NAMESPACE.key, None, name) not in self.store.objects:
            self.store.create(NAMESPACE, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # ------------------------------------------------------------ dispatch

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's own path parser cannot read `/api/v1/namespaces[/name]`; parse paths here."""
        body = await raw_request.read()
        group, version, namespace, plural, name, subresource = parse_path(raw_request.path)
        if raw_request.path.startswith("/openapi/v3"):
            return _json(self._openapi_v3(raw_request.path.removeprefix("/openapi/v3").strip("/")))
        if plural is None:  # discovery and other non-object paths: kmock parses and serves them
            response = await super().__call__(raw_request)
            if isinstance(response, aiohttp.web.Response) and response.status == 200 and version:
                return _json(_fix_resource_list(json.loads(response.body), group, version))
            return response
        resource = kmock.resource(group=group, version=version, plural=plural)
        request = kmock.Request(
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=body,
            resource=resource,
            namespace=namespace,
            name=name,
            subresource=subresource,
        )
        try:
            return await self._handle(request)
        except Exception as e:  # as kmock does: the client sees a 500 Status with the traceback
            return await self._render_error(e)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or res.plural is None or request.subresource not in (None, "status"):
            return await super()._handle(request)  # discovery, /version, /openapi: kmock's scaffold
        del self._requests[:]  # kmock re-scans its request log on each request; we keep counts instead
        key = f"{res.group}/{res.version}/{res.plural}" if res.group else f"{res.version}/{res.plural}"
        resource = self.store.resources.get(key)
        if resource is None:
            return _error(o.ApiError(404, "NotFound", "the server could not find the requested resource"))
        verb = _verb(request)
        self.counts[verb, resource.plural, request.subresource] += 1
        fault = f.take(self.faults, verb, resource.plural, request.subresource)
        if fault is not None and fault.code == 0:
            raw = request._raw_request
            if raw is not None and raw.transport is not None:
                raw.transport.close()
            return aiohttp.web.Response(status=500)
        if fault is not None:
            reason, message = f.REASONS.get(fault.code, ("InternalError", "injected fault"))
            return _error(o.ApiError(fault.code, reason, message))
        try:
            if verb == "watch":
                return await self._watch(request, resource)
            return self._serve(request, resource, verb)
        except o.ApiError as e:
            return _error(e)

    def _openapi_v3(self, group_version: str) -> dict[str, Any]:
        """Just enough OpenAPI v3 for kubectl to see that the server validates fields itself
        (`fieldValidation` on PATCH): kubectl then skips client-side validation."""
        resources = self.store.resources.values()
        if not group_version:
            return {
                "paths": {
                    ("api/" if not r.group else "apis/") + r.api_version: {
                        "serverRelativeURL": "/openapi/v3/" + ("api/" if not r.group else "apis/") + r.api_version
                    }
                    for r in resources
                }
            }
        paths = {}
        for r in resources:
            if group_version.split("/", 1)[-1] != r.api_version:
                continue
            prefix = f"/apis/{r.api_version}" if r.group else f"/api/{r.version}"
            scope = "/namespaces/{namespace}" if r.namespaced else ""
            paths[f"{prefix}{scope}/{r.plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "responses": {},
                }
            }
        return {"openapi": "3.0.0", "info": {"title": "emulator", "version": "v1"}, "paths": paths}

    def _serve(self, request: kmock.Request, resource: ResourceDef, verb: str) -> aiohttp.web.StreamResponse:
        store, ns, name = self.store, request.namespace, request.name or ""
        strict = request.params.get("fieldValidation") == "Strict"
        if verb == "get":
            obj = store.get(resource, ns, name)
            return self._respond(request, resource, obj, [obj])
        if verb == "list":
            items = store.list(resource, ns, request.params.get("labelSelector"), request.params.get("fieldSelector"))
            listed = {
                "apiVersion": resource.api_version,
                "kind": f"{resource.kind}List",
                "metadata": {"resourceVersion": str(store.revision)},
                "items": items,
            }
            return self._respond(request, resource, listed, items)
        if verb == "create":
            body = _body(request)
            if not isinstance(body, dict):
                raise o.ApiError(400, "BadRequest", "the body must be an object")
            return _json(store.create(resource, ns, body, strict_fields=strict), 201)
        if verb == "update":
            body = _body(request)
            if not isinstance(body, dict) or body.get("metadata", {}).get("name", name) != name:
                raise o.ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
            return _json(
                store.update(
                    resource,
                    ns,
                    name,
                    lambda _: body,
                    request.subresource,
                    require_version=resource.custom,
                    strict_fields=strict,
                )
            )
        if verb == "patch":
            content_type = request.headers.get("Content-Type", "")
            return _json(
                store.update(
                    resource,
                    ns,
                    name,
                    lambda cur: o.apply_patch(cur, content_type, request.body, resource),
                    request.subresource,
                    strict_fields=strict,
                )
            )
        if verb == "delete":
            options = _body(request) if request.body else {}
            preconditions = options.get("preconditions") if isinstance(options, dict) else None
            return _json(store.delete(resource, ns, name, preconditions))
        if verb == "deletecollection":
            gone = [
                store.delete(resource, ns, obj["metadata"]["name"])
                for obj in store.list(resource, ns, request.params.get("labelSelector"))
            ]
            return _json(
                {"apiVersion": resource.api_version, "kind": f"{resource.kind}List", "metadata": {}, "items": gone}
            )
        raise o.ApiError(405, "MethodNotAllowed", f"{request.method} is not supported")

    def _respond(
        self, request: kmock.Request, resource: ResourceDef, obj: dict[str, Any], rows: list[dict[str, Any]]
    ) -> aiohttp.web.StreamResponse:
        if "as=Table" in request.headers.get("Accept", ""):
            now = self.store.clock()
            return _json(o.table(resource, rows, str(self.store.revision), now))
        return _json(obj)

    async def _watch(self, request: kmock.Request, resource: ResourceDef) -> aiohttp.web.StreamResponse:
        params = request.params
        fields = params.get("fieldSelector")
        if request.name:
            fields = ",".join(filter(None, [fields, f"metadata.name={request.name}"]))
        watcher = Watcher(resource, request.namespace, params.get("labelSelector"), fields)
        since = params.get("resourceVersion", "")
        if since not in ("", "0"):
            backlog = self.store.events_since(watcher, int(since))
            if backlog is None:
                backlog = [
                    {
                        "type": "ERROR",
                        "object": o.ApiError(
                            410, "Expired", f"too old resource version: {since} ({self.store.revision})"
                        ).status(),
                    }
                ]
        else:
            backlog = [
                {"type": "ADDED", "object": obj}
                for obj in self.store.list(resource, request.namespace, watcher.labels, fields)
            ]
        self.store.watchers.append(watcher)
        raw = request._raw_request
        assert raw is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        try:
            await response.prepare(raw)
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            if any(event["type"] == "ERROR" for event in backlog):
                return response
            while not self.stopping.is_set():
                left = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if left is not None and left <= 0:
                    break
                event = await _next_event(watcher.queue, self.stopping, left)
                if event is None:
                    continue
                await response.write(json.dumps(event).encode() + b"\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.watchers.remove(watcher)
        return response


async def _next_event(
    queue: asyncio.Queue[dict[str, Any]], stopping: asyncio.Event, timeout: float | None
) -> dict[str, Any] | None:
    getter = asyncio.ensure_future(queue.get())
    stopper = asyncio.ensure_future(stopping.wait())
    done, pending = await asyncio.wait(
        {getter, stopper}, timeout=min(timeout or 1.0, 1.0), return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    return getter.result() if getter in done else None


def _fix_resource_list(doc: dict[str, Any], group: str, version: str) -> dict[str, Any]:
    """kmock's APIResourceList says groupVersion "/v1" for the core group and gives subresources the
    short names of their resource (kubectl then warns that `slmd` is ambiguous)."""
    doc["groupVersion"] = f"{group}/{version}" if group else version
    for entry in doc.get("resources", []):
        if "/" in entry["name"]:
            entry["shortNames"], entry["categories"] = [], []
    return doc


def parse_path(path: str) -> tuple[str, str | None, str | None, str | None, str | None, str | None]:
    """`/apis/g/v/namespaces/ns/plural/name/sub` → (group, version, namespace, plural, name, subresource)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return "", None, None, None, None, None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    rest += [None] * 3  # type: ignore[list-item]
    return group, version, namespace, rest[0], rest[1], "/".join(p for p in rest[2:] if p) or None


def _verb(request: kmock.Request) -> str:
    method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if request.name else "deletecollection",
    }.get(method, method.lower())


def _body(request: kmock.Request) -> Any:
    return o.load_body(request.body) if request.body else None


def _json(obj: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(obj).encode(), status=status, content_type="application/json")


def _error(error: o.ApiError) -> aiohttp.web.Response:
    return _json(error.status(), error.code)
