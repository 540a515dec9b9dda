"""One run's lifecycle events: numbered 1, 2, 3... with no gap, stamped, and sent through the run's
outbox to EventCallback (signed and retried as the result callback is, in order, off the media loop).

    events = RunEvents(outbox, params.EventCallback, function="push_stream", request_id=..., ...)
    events.emit("switched", {"From": ..., "To": ..., "Position": 12.5})   # never blocks
    events.end("stopped", result)                                        # the last one, whatever ends the run

Each event: {"EventId" (unique, the same on every retry), "EventSeq", "EventMsTs", "EventType" (a
name; "TrtcEventType" and "EventGroupId" carry TRTC's number where it has one), "Function",
"RequestId", "SdkAppId", "RoomId", "StrRoomId", "UserId", "Payload"}. Once `end` was sent nothing
else is. A number is taken only by an event the outbox accepted, so a receiver never sees a gap: an
event refused past the outbox's bound is counted, and the end's Payload says how many
(`EventsDropped`). Every event is also logged (the emulator's console shows a run's log).
"""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Mapping

from shared.outbox import Outbox, Ticket
from shared.runtime import RunLogger, get_logger

from .kinds import BY_FUNCTION, Kind

EVENT_ID_KEY = "EventId"


class RunEvents:
    def __init__(self, outbox: Outbox | None, url: str | None, *, function: str, request_id: str,
                 sdk_app_id: int, room: int | str | None, user_id: str, verbose: bool = False,
                 log: RunLogger | None = None, first_seq: int = 0,
                 on_change: Callable[[int, list[dict[str, Any]]], None] | None = None):
        self.outbox, self.url = outbox, url
        self.function, self.request_id = function, request_id
        self.verbose = verbose
        self.log = log or get_logger(request_id, function)
        self.kinds = BY_FUNCTION[function]
        self.room_id = room if isinstance(room, int) else 0
        self.str_room_id = room if isinstance(room, str) else ""
        self.sdk_app_id, self.user_id = sdk_app_id, user_id
        self.seq = first_seq  # the last number taken
        self.dropped = 0
        self.ended: str | None = None
        # Told (last number, events not yet settled) whenever either changes: a recording keeps them in
        # its state, so that its recovery sends again what a dead run had not delivered.
        self.on_change = on_change
        self._unsettled: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()  # a put refused at once settles its ticket inside _send

    @property
    def enabled(self) -> bool:
        return bool(self.url) and self.outbox is not None

    def emit(self, name: str, payload: Mapping[str, Any] | None = None) -> Ticket | None:
        """Send event `name` (one of the function's kinds). Ignored after the end, and for a verbose
        kind unless EventVerbose was asked for."""
        kind = self._kind(name)
        if kind.final:
            raise ValueError(f"{name} ends the run: use end()")
        if kind.verbose and not self.verbose:
            return None
        return self._send(kind, dict(payload or {}), essential=False)

    def end(self, name: str, result: Mapping[str, Any], payload: Mapping[str, Any] | None = None) -> Ticket | None:
        """The run's last event, carrying its result (`Payload.Result`). Only the first call sends."""
        kind = self._kind(name)
        if not kind.final:
            raise ValueError(f"{name} does not end a run")
        body = {**dict(payload or {}), "Result": dict(result)}
        return self._send(kind, body, essential=True)

    def _kind(self, name: str) -> Kind:
        kind = self.kinds.get(name)
        if kind is None:
            raise ValueError(f"{self.function} has no event {name!r}")
        return kind

    def body(self, kind: Kind, seq: int, payload: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            EVENT_ID_KEY: uuid.uuid4().hex,
            "EventSeq": seq,
            "EventMsTs": int(time.time() * 1000),
            "EventType": kind.name,
        }
        if kind.trtc is not None:
            out["TrtcEventType"] = kind.trtc
            out["EventGroupId"] = kind.group
        out.update({"Function": self.function, "RequestId": self.request_id, "SdkAppId": self.sdk_app_id,
                    "RoomId": self.room_id, "StrRoomId": self.str_room_id, "UserId": self.user_id,
                    "Payload": payload})
        return out

    def _send(self, kind: Kind, payload: dict[str, Any], essential: bool) -> Ticket | None:
        with self._lock:  # numbers follow the order the outbox takes them in
            if self.ended is not None:
                self.log.debug("event after the end not sent", event=kind.name, ended=self.ended)
                return None
            if kind.final:
                self.ended = kind.name
                if self.dropped:
                    payload["EventsDropped"] = self.dropped
            seq = self.seq + 1
            body = self.body(kind, seq, payload)
            ticket: Ticket | None = None
            if self.enabled:
                assert self.outbox is not None and self.url is not None
                if self.on_change is not None:
                    self._unsettled[body[EVENT_ID_KEY]] = body
                ticket = self.outbox.put(self.url, body, what="event", id_key=EVENT_ID_KEY, param="EventCallback",
                                         essential=essential, on_settled=self._settled)
                if ticket is None:
                    self._unsettled.pop(body[EVENT_ID_KEY], None)
                    self.dropped += 1
                    return None
            self.seq = seq
        self.log.info("event", event=kind.name, seq=seq, payload=_short(payload))
        self._changed()
        return ticket

    def _settled(self, ticket: Ticket) -> None:
        with self._lock:
            self._unsettled.pop(ticket.message.id, None)
        self._changed()

    def pending(self) -> tuple[int, list[dict[str, Any]]]:
        """The last number taken, and the events not yet delivered nor given up, in order."""
        with self._lock:
            return self.seq, sorted(self._unsettled.values(), key=lambda b: int(b["EventSeq"]))

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(*self.pending())

    def silence(self, why: str) -> None:
        """Send nothing more (a recovery took the run over: its `recovered` is the last event)."""
        with self._lock:
            if self.ended is None:
                self.ended = why

    def send_again(self, body: Mapping[str, Any]) -> Ticket | None:
        """An event a run that died had queued (same EventId and EventSeq): its recovery sends it."""
        if not self.enabled:
            return None
        assert self.outbox is not None and self.url is not None
        with self._lock:
            self.seq = max(self.seq, int(body.get("EventSeq") or 0))
            ticket = self.outbox.put(self.url, dict(body), what="event", id_key=EVENT_ID_KEY,
                                     param="EventCallback", essential=True)
        self.log.info("event sent again", event=body.get("EventType"), seq=body.get("EventSeq"))
        return ticket


def _short(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What the log keeps of a payload (a result's Files list is long)."""
    return {k: (f"{len(v)} items" if isinstance(v, list) and len(v) > 5 else
                {"status": v.get("status"), "Reason": v.get("Reason")} if k == "Result" and isinstance(v, dict) else v)
            for k, v in payload.items()}
