"""Fault injection: make chosen requests fail the way a real API server or network does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Fault:
    """Fail the next `times` requests that match with HTTP `code` (409, 500, 503, 429, …).

    `verb` is the Kubernetes verb (get, list, watch, create, update, patch, delete) or `*`;
    `plural` the resource's plural or `*`; `subresource` None for the main resource, `*` for any.
    `code=0` drops the connection without an answer (a reset, as when the server crashes mid-request).
    """

    verb: str = "*"
    plural: str = "*"
    subresource: str | None = "*"
    code: int = 503
    times: int = 1
    hits: int = 0

    def matches(self, verb: str, plural: str, subresource: str | None) -> bool:
        return (
            self.hits < self.times
            and self.verb in ("*", verb)
            and self.plural in ("*", plural)
            and self.subresource in ("*", subresource)
        )


REASONS = {
    409: ("Conflict", "the object has been modified; please apply your changes to the latest version and try again"),
    422: ("Invalid", "the object is invalid: spec: Invalid value: injected: rejected by admission"),
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    500: ("InternalError", 'an error on the server ("injected") has prevented the request from succeeding'),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


def take(faults: list[Fault], verb: str, plural: str, subresource: str | None) -> Fault | None:
    """The first matching fault, counted as used; None when the request should go through."""
    for fault in faults:
        if fault.matches(verb, plural, subresource):
            fault.hits += 1
            return fault
    return None
