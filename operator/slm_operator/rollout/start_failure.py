"""Pure: a revision's replicas that fail to start (the model cannot be fetched or loaded), read from
what Ray Serve 2.60 reports, shortened for status, Events and the `slm serve` console.

Serve (`ray/serve/_private/deployment_state.py`, 2.60.0, `record_replica_startup_failure`) sets the
deployment's message on every failed start while the deployment stays UPDATING and the application
DEPLOYING: "A replica failed to start with exception. Retrying N more time(s). Error:\\n<error>", the
error being the constructor's traceback as `str(RayTaskError.as_instanceof_cause())`. After
`_failed_to_start_threshold` = min(max_constructor_retry_count (default 20), 3 x target replicas)
failed starts in a row the deployment turns DEPLOY_FAILED (trigger REPLICA_STARTUP_FAILED; UNHEALTHY
where it was already serving and scaling), message "The deployment failed to start N times in a row.
… Error:\\n<error>", the application DEPLOY_FAILED, and Serve starts no more replicas of that version
(`_terminally_failed`). So the attempts are bounded by Serve and the first failure is visible at
once. KubeRay copies the messages as they are into the RayService
(`applicationStatuses[app].serveDeploymentStatuses[dep].message`, see `status.observe`); `slm serve`
reads them from Serve's REST API (`applications[app].deployments[dep].message`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_ERROR_CHARS = 200

_RETRYING = re.compile(r"A replica failed to start with exception\. Retrying(?: (\d+) more time\(s\))?\.")
_GAVE_UP = re.compile(r"The deployment failed to start (\d+) times in a row")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*")
_MODULE_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=\w+:)")


@dataclass(frozen=True)
class StartFailure:
    """Replicas of one revision failed to start."""

    error: str
    """The last failure's exception line, shortened (e.g. `ModelSourceError: cannot fetch hf://…`)."""
    final: bool
    """Serve gave up (the application is DEPLOY_FAILED): the revision will not start."""
    retries_left: int | None = None
    """While Serve still retries: how many more attempts it makes (None where it does not say)."""

    def describe(self) -> str:
        if self.final:
            return f"replicas failed to start, Serve gave up: {self.error}"
        more = f"; Serve retries {self.retries_left} more time(s)" if self.retries_left is not None else ""
        return f"a replica failed to start: {self.error}{more}"


def shorten_error(text: str) -> str:
    """The exception line of a traceback (its last `SomethingError: …` line), its class named without
    the module; at most MAX_ERROR_CHARS, cut in the middle (the end usually says what is wrong)."""
    body = text.split("Error:\n", 1)[1] if "Error:\n" in text else text
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    line = exceptions[-1] if exceptions else (lines[-1] if lines else text.strip())
    line = _MODULE_PREFIX.sub("", line, count=1)
    if len(line) <= MAX_ERROR_CHARS:
        return line
    head = MAX_ERROR_CHARS // 3
    return line[:head] + "…" + line[len(line) - (MAX_ERROR_CHARS - head - 1) :]


def parse_start_failure(app_status: str, deployment_messages: Mapping[str, str]) -> StartFailure | None:
    """What one application's state and its deployments' messages say about failed replica starts."""
    for message in deployment_messages.values():
        gave_up = _GAVE_UP.search(message)
        if gave_up is not None or (app_status == "DEPLOY_FAILED" and "Error:\n" in message):
            return StartFailure(shorten_error(message), final=True)
        retrying = _RETRYING.search(message)
        if retrying is not None:
            left = int(retrying.group(1)) if retrying.group(1) is not None else None
            return StartFailure(shorten_error(message), final=app_status == "DEPLOY_FAILED", retries_left=left)
    return None
