"""Which admission requests the webhook denies, and with what message. Pure."""

from __future__ import annotations

from typing import Any

from slm_operator.api.validation import FieldError, validate_object

MAX_MESSAGE_CHARS = 8000
"""The API server copies the message into its response; keep it bounded however bad the object is."""


def admission_errors(operation: str, body: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """Errors that deny a CREATE or UPDATE; an UPDATE that leaves the spec as it was always passes
    (finalizers, annotations, kopf's progress: an object admitted before a rule existed can still be
    handled and deleted), as the API server's validation ratcheting does."""
    if operation not in ("CREATE", "UPDATE"):
        return []
    if operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec"):
        return []
    return validate_object({k: v for k, v in body.items() if k != "status"})


def denial_message(errors: list[FieldError]) -> str:
    """One line per error, as `kubectl apply` prints them under `admission webhook … denied the request`."""
    text = f"{len(errors)} error(s): " + "; ".join(map(str, errors))
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
