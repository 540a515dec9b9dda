"""Around every asynchronous run: its outbox, its events, its IdempotencyKey, and its last event.

    def record(params, inv, log):
        return run_with_events(params, inv, log, function="record_stream", who=Who(...),
                               store=lambda: bucket_keys(), work=lambda events: Recorder(..., events).run())

`work(events)` does the run and returns its result; whatever way it ends (a result, a Failure, a
bug) the last event is the end with that result, and the outbox is flushed (until the end of the
retry window or the time limit, whichever is first) before the handler returns. A start whose
IdempotencyKey was seen with the same parameters ends at once as a duplicate (its only event says
so); with other parameters, a conflict (409) naming the key.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from shared.failures import Failure, Kind
from shared.outbox import Outbox
from shared.outbox.delivery import retry_window
from shared.runtime import Invocation, RunLogger

from .emitter import RunEvents
from .idempotency import IdempotencyStore, Scope, conflict, duplicate_result, fingerprint

# Seconds kept back from the time limit once the messages are flushed, to return the result.
RETURN_RESERVE_S = 1.0
# The end's flush waits at most this long past the retry window (a receiver down 30 s still gets all).
FLUSH_SLACK_S = 10.0


@dataclass(frozen=True)
class Who:
    """The run's room and user, as its events name them."""

    sdk_app_id: int
    room: int | str | None
    user_id: str


def flush_deadline_s(retry_for: float | None = None) -> float:
    """How long a run's end waits for its messages: the retry window, and a little more."""
    return (retry_window() if retry_for is None else retry_for) + FLUSH_SLACK_S


def flush_deadline(inv: Invocation, retry_for: float | None = None) -> float:
    return min(inv.deadline - RETURN_RESERVE_S, time.monotonic() + flush_deadline_s(retry_for))


def open_events(params: Any, inv: Invocation, log: RunLogger, function: str, who: Who,
                outbox: Outbox | None = None, first_seq: int = 0) -> RunEvents:
    if outbox is None:
        outbox = Outbox(log=log, deadline=inv.deadline - RETURN_RESERVE_S, name=f"{function}-outbox")
        outbox.start()
    return RunEvents(outbox, getattr(params, "EventCallback", None), function=function,
                     request_id=inv.request_id, sdk_app_id=who.sdk_app_id, room=who.room, user_id=who.user_id,
                     verbose=bool(getattr(params, "EventVerbose", False)), log=log, first_seq=first_seq)


def run_with_events(params: Any, inv: Invocation, log: RunLogger, *, function: str, who: Who,
                    work: Callable[[RunEvents], dict[str, Any]],
                    store: Callable[[], IdempotencyStore] | None = None, end: str = "stopped") -> dict[str, Any]:
    events = open_events(params, inv, log, function, who)
    assert events.outbox is not None
    try:
        key = getattr(params, "IdempotencyKey", None)
        if key and store is not None:
            scope = Scope(function, who.sdk_app_id, key)
            try:
                keys = store()
                try:
                    claim = keys.claim(scope, fingerprint(params), inv.request_id)
                finally:
                    getattr(keys, "close", lambda: None)()
            except Failure:
                raise
            except Exception as e:  # the store is unreachable: a second task must not start unchecked
                raise Failure(f"IdempotencyKey could not be checked ({getattr(e, 'message', None) or e}); "
                              "nothing was started, try again", "idempotency_unavailable", Kind.UNAVAILABLE) from None
            if claim.outcome == "conflict":
                raise conflict(scope, claim)
            if claim.outcome == "duplicate":
                result = duplicate_result(scope, claim, inv.request_id)
                log.warning("duplicate start: no second task", idempotency_key=key,
                            original_request_id=claim.original_request_id)
                events.end("duplicate", result)
                return result
        result = work(events)
        events.end(end, result)
        return result
    except Failure as e:
        events.end(end, {"status": "failed", "reason": e.reason, "message": e.message, **e.extra})
        raise
    except Exception as e:
        events.end(end, {"status": "failed", "reason": "internal_error", "message": f"{type(e).__name__}: {e}"})
        raise
    finally:
        events.outbox.finish(flush_deadline(inv))
