"""What travels on the control channel: a push's state, a command, an answer, and the channel's limits.

Both sides import this and nothing of each other: the push-side inbox (shared.push.control.inbox)
and push_control's caller side (shared.push.control.caller). An answer carries a failure's kind by
name (shared.failures.Kind), never an HTTP status: only the edge maps a kind to a status code.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from shared.contracts.control import ACTIONS
from shared.contracts.fields import MAX_PLAYLIST
from shared.failures import Failure, Kind
from shared.redis.keys import reply_key

ANSWER_BUDGET_S = 2.0  # the contract: push_control answers within 2 s
ANSWER_MARGIN_S = 0.1  # kept for answering once the wait is over (LREM, serialising, returning)
APPLY_BUDGET_S = 1.5  # at most this long for the push to apply a command and answer
REPLY_MARGIN_S = 0.15  # the push's answer travelling back through Redis
MIN_APPLY_BUDGET_S = 0.2  # less than this left after finding the push: refuse rather than send
REGISTRY_TTL_S = 10
HEARTBEAT_S = 2.0
ENDED_TTL_S = 600
REPLY_TTL_S = 30
READ_WAIT_S = 0.5  # the reader's BLPOP timeout: how long a close() may wait for it
SOCKET_TIMEOUT_S = 0.5
MAX_QUEUE_SHOWN = 100
# The bound of a push's queue (sources waiting their turn: a playlist's items still to play and what
# enqueue added): an enqueue past it is refused (conflict). One enqueue lists at most MAX_ENQUEUE
# sources, as a playlist does (a longer list is a bad videoSrc).
MAX_QUEUE = 200
MAX_ENQUEUE = MAX_PLAYLIST

STATUS_PLAYING = "playing"
STATUS_PAUSED = "paused"


@dataclass
class PushState:
    """What a push tells about itself: in every answer, and in its registry record."""

    status: str = STATUS_PLAYING  # playing | paused
    video_src: Optional[str] = None  # the current source (as it may be shown: no query or userinfo)
    position: float = 0.0  # seconds into the current source
    queue: list[str] = field(default_factory=list)  # sources to play next, in order
    volume: int = 100

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "videoSrc": self.video_src, "position": round(self.position, 3),
                "queue": list(self.queue[:MAX_QUEUE_SHOWN]), "volume": self.volume}


@dataclass(frozen=True)
class Command:
    """One control call, as the push loop gets it from `ControlInbox.poll()`."""

    id: str
    action: str  # switch | enqueue | pause | resume | volume | stop | status
    sources: tuple[str, ...] = ()  # switch: one; enqueue: one or more, in order
    seek_second: Optional[float] = None  # switch only
    volume: Optional[int] = None  # volume only
    deadline: float = 0.0  # time.monotonic() after which it must not be applied (refused instead)
    received: float = 0.0  # time.monotonic() when the push took it
    sent_ms: int = 0  # Redis time when push_control delivered it (for latency: its clock, not ours)
    reply_to: str = ""

    @property
    def video_src(self) -> Optional[str]:
        return self.sources[0] if self.sources else None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    @classmethod
    def parse(cls, stored: str, redis_now_ms: int, request_id: str) -> "Command":
        """From the inbox's "<sent ms> <json>"; ValueError if it is not one of ours."""
        sent, _, text = stored.partition(" ")
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("action") not in ACTIONS:
            raise ValueError("not a command")
        sent_ms = int(sent)
        budget_ms = int(body.get("budgetMs") or 0)
        now = time.monotonic()
        left_s = (sent_ms + budget_ms - redis_now_ms) / 1000.0
        src = body.get("videoSrc")
        sources = tuple([src] if isinstance(src, str) else src or ())
        return cls(id=str(body["id"]), action=str(body["action"]), sources=sources,
                   seek_second=body.get("seekSecond"), volume=body.get("volume"), deadline=now + left_s,
                   received=now, sent_ms=sent_ms, reply_to=reply_key(request_id, str(body["id"])))


def failure(reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """The body of every answer but an applied one (the shape shared.gateway gives a failure)."""
    return {"status": "failed", "reason": reason, "message": message, **extra}


# --- answers on the wire: {"body": {...}} applied, {"kind": "<Kind name>", "body": {...}} refused ---


def applied_answer(body: dict[str, Any]) -> dict[str, Any]:
    return {"body": body}


def refused_answer(kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind.value, "body": body}


def read_answer(text: str) -> dict[str, Any]:
    """The applied body of an answer from the push; a Failure of the kind the push named when it
    refused; ValueError when it is not an answer at all."""
    answer = json.loads(text)
    body = answer.get("body") if isinstance(answer, dict) else None
    if not isinstance(body, dict):
        raise ValueError("no body")
    if answer.get("kind") is None:
        return body
    kind = Kind(answer["kind"])  # ValueError for a name that is not a kind
    extra = {k: v for k, v in body.items() if k not in ("status", "reason", "message")}
    raise Failure(str(body.get("message") or "refused"), str(body.get("reason") or "refused"), kind, extra=extra)
