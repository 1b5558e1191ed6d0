"""The emulator's storage: objects by key, one resourceVersion counter, an event log for watches,
optimistic concurrency, the status subresource, finalizers and owner-reference garbage collection.

Synchronous and single-threaded: it runs inside the emulator's event loop, so each call is atomic,
as one etcd transaction is. Stored dicts are never mutated in place (copy on write), so readers can
serialize them without locks.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.harness.emulator import objects as o
from tests.harness.emulator.schema import ResourceDef, apply_defaults, prune

Key = tuple[str, str | None, str]
"""(resource key, namespace or None, name)."""

EVENT_LOG_SIZE = 20_000


@dataclass
class Watcher:
    resource: ResourceDef
    namespace: str | None
    labels: str | None
    fields: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def wants(self, resource_key: str, obj: dict[str, Any]) -> bool:
        return (
            resource_key == self.resource.key
            and (self.namespace is None or obj["metadata"].get("namespace") == self.namespace)
            and o.selected(obj, self.labels, self.fields)
        )


@dataclass
class Store:
    clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=lambda: {"default"})
    revision: int = 1
    log: collections.deque[tuple[int, str, dict[str, Any]]] = field(
        default_factory=lambda: collections.deque(maxlen=EVENT_LOG_SIZE)
    )
    watchers: list[Watcher] = field(default_factory=list)
    resources: dict[str, ResourceDef] = field(default_factory=dict)
    uids: set[str] = field(default_factory=set)

    # ------------------------------------------------------------ reads

    def get(self, resource: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects.get((resource.key, namespace, name))
        if obj is None:
            raise o.not_found(resource, name)
        return obj

    def list(
        self, resource: ResourceDef, namespace: str | None, labels: str | None = None, fields: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            obj
            for (rkey, ns, _), obj in sorted(self.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2]))
            if rkey == resource.key and (namespace is None or ns == namespace) and o.selected(obj, labels, fields)
        ]

    # ------------------------------------------------------------ writes

    def create(
        self, resource: ResourceDef, namespace: str | None, body: dict[str, Any], strict_fields: bool = False
    ) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise o.ApiError(400, "BadRequest", "the namespace of the object does not match the request's")
            if namespace not in self.namespaces:
                raise o.ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
            meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:10]
        if not meta.get("name"):
            o.check_name(resource, "")
        if (resource.key, namespace, meta["name"]) in self.objects:
            raise o.ApiError(
                409,
                "AlreadyExists",
                f'{resource.plural}.{resource.group} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": resource.group, "kind": resource.plural},
            )
        if resource.status_subresource:
            obj.pop("status", None)
        for stale in ("resourceVersion", "uid", "deletionTimestamp", "creationTimestamp", "generation"):
            meta.pop(stale, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = o.now_rfc3339(self.clock())
        meta["generation"] = 1
        obj = self._admit(resource, obj, strict_fields, first=o.name_causes(meta["name"]))
        self._store(resource, "ADDED", obj)
        created = self.objects[(resource.key, namespace, meta["name"])]
        self._collect_if_orphaned(resource, created)
        return created

    def update(
        self,
        resource: ResourceDef,
        namespace: str | None,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        subresource: str | None = None,
        require_version: bool = False,
        strict_fields: bool = False,
    ) -> dict[str, Any]:
        """Replace or patch: `change` maps the current object to the requested one."""
        current = self.get(resource, namespace, name)
        wanted = change(copy.deepcopy(current))
        meta = wanted.setdefault("metadata", {})
        asked = meta.get("resourceVersion")
        if require_version and not asked:
            raise o.invalid(
                resource, name, ["metadata.resourceVersion: Invalid value: 0: must be specified for an update"]
            )
        if asked and asked != current["metadata"]["resourceVersion"]:
            raise o.conflict(resource, name)
        if subresource == "status":
            new = dict(current, status=wanted.get("status"))
            if new["status"] is None:
                new.pop("status")
        else:
            new = dict(wanted)
            if resource.status_subresource:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = current["status"]
            # Immutable and server-owned metadata.
            new["metadata"] = dict(
                meta,
                **{
                    k: current["metadata"][k]
                    for k in ("uid", "creationTimestamp", "generation", "namespace", "name")
                    if k in current["metadata"]
                },
            )
            if "deletionTimestamp" in current["metadata"]:
                new["metadata"]["deletionTimestamp"] = current["metadata"]["deletionTimestamp"]
            else:
                new["metadata"].pop("deletionTimestamp", None)
        new = self._admit(resource, new, strict_fields, old=current)
        new["metadata"] = dict(new["metadata"], resourceVersion=current["metadata"]["resourceVersion"])
        if new == current:
            return current  # a no-op write keeps the resourceVersion, as the API server does
        if o.essence(new) != o.essence(current):
            new["metadata"] = dict(new["metadata"], generation=current["metadata"].get("generation", 1) + 1)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(resource, (resource.key, namespace, name), new)
            return new
        self._store(resource, "MODIFIED", new)
        return self.objects[(resource.key, namespace, name)]

    def delete(
        self, resource: ResourceDef, namespace: str | None, name: str, preconditions: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        current = self.get(resource, namespace, name)
        if preconditions:
            for key in ("uid", "resourceVersion"):
                if preconditions.get(key) and preconditions[key] != current["metadata"].get(key):
                    raise o.conflict(resource, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            meta = dict(
                current["metadata"], deletionTimestamp=o.now_rfc3339(self.clock()), deletionGracePeriodSeconds=0
            )
            self._store(resource, "MODIFIED", dict(current, metadata=meta))
            return self.objects[(resource.key, namespace, name)]
        self._remove(resource, (resource.key, namespace, name), current)
        return current

    # ------------------------------------------------------------ internals

    def _admit(
        self,
        resource: ResourceDef,
        obj: dict[str, Any],
        strict_fields: bool,
        old: dict[str, Any] | None = None,
        first: list[str] | None = None,
    ) -> dict[str, Any]:
        """Prune unknown fields, default, then validate: what the API server does before storing. `first`:
        errors found before (metadata.name), reported together with the schema's as the API server does."""
        name = obj.get("metadata", {}).get("name", "")
        obj, dropped = prune(obj, resource.schema)
        if dropped and strict_fields:
            raise o.ApiError(  # kube-apiserver's strict decoding (v1.33): 400 before any validation
                400,
                "BadRequest",
                f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in dropped),
            )
        obj = apply_defaults(obj, resource.schema)
        if old is not None and {k: v for k, v in obj.items() if k != "metadata"} == {
            k: v for k, v in old.items() if k != "metadata"
        }:
            return obj  # only metadata changed: the CRD schema does not look inside metadata
        causes = [cause for validator in resource.validators for cause in validator(obj)]
        if causes and old is not None:  # validation ratcheting (GA in 1.33): errors already there are kept
            known = {cause for validator in resource.validators for cause in validator(old)}
            causes = [cause for cause in causes if cause not in known]
        first = first or []
        causes = first + [cause for cause in causes if cause not in first]
        if causes:
            raise o.invalid(resource, name, causes)
        return obj

    def _next_version(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _store(self, resource: ResourceDef, event: str, obj: dict[str, Any]) -> None:
        obj = dict(obj, metadata=dict(obj["metadata"], resourceVersion=self._next_version()))
        key = (resource.key, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        self.objects[key] = obj
        self.uids.add(obj["metadata"]["uid"])
        self._publish(resource.key, event, obj)

    def _remove(self, resource: ResourceDef, key: Key, last: dict[str, Any]) -> None:
        self.objects.pop(key, None)
        self.uids.discard(last["metadata"]["uid"])
        last = dict(last, metadata=dict(last["metadata"], resourceVersion=self._next_version()))
        self._publish(resource.key, "DELETED", last)
        self._collect(last["metadata"]["uid"])

    def _publish(self, resource_key: str, event: str, obj: dict[str, Any]) -> None:
        self.log.append((self.revision, resource_key, {"type": event, "object": obj}))
        for watcher in self.watchers:
            if watcher.wants(resource_key, obj):
                watcher.queue.put_nowait({"type": event, "object": obj})

    def _collect(self, owner_uid: str) -> None:
        """Background cascading deletion of the dependents of a deleted owner."""
        for (rkey, ns, name), obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs) and (rkey, ns, name) in self.objects:
                self.delete(self.resources[rkey], ns, name)

    def _collect_if_orphaned(self, resource: ResourceDef, obj: dict[str, Any]) -> None:
        """A dependent created with an owner that no longer exists is garbage from the start."""
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        if all(ref.get("uid") not in self.uids for ref in refs):
            self.delete(resource, obj["metadata"].get("namespace"), obj["metadata"]["name"])

    # ------------------------------------------------------------ watches

    def events_since(self, watcher: Watcher, since: int) -> list[dict[str, Any]] | None:
        """Logged events after `since` that the watcher wants; None when the log no longer reaches back."""
        if self.log and since < self.log[0][0] - 1:
            return None
        return [event for rv, rkey, event in self.log if rv > since and watcher.wants(rkey, event["object"])]
