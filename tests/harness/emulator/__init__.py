"""A Kubernetes API server emulator for tests: the real HTTP API on a TCP port, serving CRDs with
the API server's semantics (resourceVersion, generation, status subresource, patches, watches,
selectors, finalizers, owner-reference garbage collection, schema validation, printer columns)
and fault injection (409, 5xx, dropped connections, outages)."""

from tests.harness.emulator.faults import Fault
from tests.harness.emulator.objects import ApiError
from tests.harness.emulator.schema import ResourceDef
from tests.harness.emulator.server import EmulatorThread

__all__ = ["ApiError", "EmulatorThread", "Fault", "ResourceDef"]
