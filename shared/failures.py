"""The vocabulary of failures a caller can act on, in one place, with no HTTP in it.

Code below the edge (the push loop, the control inbox, the recorder, the Redis and COS doors) raises
a `Failure` of a `Kind`; only the edge (`shared.gateway`, push_control's handler) turns a kind into
an HTTP status code (`shared.gateway.HTTP_STATUS`), as moto's models never choose status codes.
"""
from __future__ import annotations

import enum
from typing import Any, Mapping


class Kind(enum.Enum):
    INVALID = "invalid"          # the caller sent something wrong: fix the request
    FORBIDDEN = "forbidden"      # the caller did not prove it may do this
    NOT_FOUND = "not_found"      # nothing matches what the caller named
    CONFLICT = "conflict"        # it exists, but cannot do this now (state, limits)
    UNAVAILABLE = "unavailable"  # a service it needs did not answer: try again later
    UPSTREAM = "upstream"        # a service it needs answered with an error of its own
    INTERNAL = "internal"        # our configuration or our bug: the caller cannot fix it


class Failure(Exception):
    """A failure reported as is, never with a traceback: `message` says what to fix, `reason` is the
    machine-readable word of the result (`source_error`, `redis_unavailable`, ...), `extra` fields
    go into the answer's body beside it."""

    def __init__(self, message: str, reason: str = "error", kind: Kind = Kind.INVALID,
                 extra: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.kind = kind
        self.extra = dict(extra or {})
