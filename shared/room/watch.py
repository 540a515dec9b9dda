"""Why a run that sits in a room as an audience member stops, and what its result says about it.

record_stream and recognize_stream watch a room the same way: the room closing (removed, replaced,
dismissed, ended by the server, its connection failed), MaxIdleTime without anchors, MaxDuration,
SIGTERM and the time limit drawing near (the StopSignal). `RoomWatch` runs their poll loop and
keeps the first stop reason; `stop_message` is the sentence the result gives for it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from shared.room.base import EnterParams, Event, Room, RoomClosed, RoomError
from shared.runtime import RunLogger, StopSignal

POLL_S = 0.1
MAX_EVENTS_PER_BATCH = 500  # the checks must run even when media never pauses
CHECK_EVERY_S = 1.0  # idle, MaxDuration (and the caller's own checks) are looked at this often

# The result's Message for each reason ("{who}": the recorder, the recogniser).
STOP_MESSAGES = {
    "removed": "the {who} was removed from the room",
    "replaced": "another client entered the room with the {who}'s UserId",
    "dismissed": "the room was dismissed",
    "ended_by_server": "the TRTC server ended the {who}'s stay in the room (a dismissal, or an end it did not name)",
    "idle": "no anchor in the room for MaxIdleTime",
    "max_duration": "MaxDuration reached",
    "terminated": "the function was terminated (SIGTERM)",
    "time_limit": "the function's time limit drew near",
    "disk_full": "the disk is full",
    "room_error": "the connection to the room failed",
    "enter_failed": "could not enter the room",
    "cos_config": "CosConfig cannot be used",
    "exited": "the {who} left the room",
    "internal_error": "the {who} failed",
}


def stop_message(reason: str, detail: str, who: str) -> str:
    """The result's Message: the reason's sentence, then the detail when there is one."""
    message = STOP_MESSAGES[reason].format(who=who) if reason in STOP_MESSAGES else reason
    return f"{message}: {detail}" if detail else message


def closed_detail(event: RoomClosed) -> str:
    return f"{event.message} (TRTC {event.code})" if event.code else event.message


@dataclass
class RoomWatch:
    """One run's stop: the first reason wins; `follow` polls the room until there is one.

    `activity` names the run in the log ("recording"), `who` the member in the result
    ("recorder"), `done` what MaxDuration counted ("recorded").
    """

    stop: StopSignal
    log: RunLogger
    max_idle_s: float
    max_duration_s: float | None
    activity: str
    who: str
    done: str
    reason: str | None = None
    detail: str = ""
    stopped_at: float | None = None  # monotonic, when the reason was set
    entered: float = field(default_factory=time.monotonic)
    enter_code: int | None = None  # TRTC's code when the room could not be entered
    _idle_since: float | None = None

    def end(self, reason: str, detail: str) -> None:
        if self.reason is None:
            self.reason, self.detail = reason, detail
            self.stopped_at = time.monotonic()
            self.log.info(f"{self.activity} stopping", reason=reason, detail=detail)

    @property
    def final_reason(self) -> str:
        return self.reason or "exited"

    def message(self) -> str:
        return stop_message(self.final_reason, self.detail, self.who)

    def enter(self, room_factory: Callable[[], Room], params: EnterParams) -> Room | None:
        """The room, entered; None (the stop "enter_failed" recorded, with `enter_code`) when it
        could not be."""
        try:
            room = room_factory()
            room.enter(params)
        except RoomError as e:
            self.enter_code = e.code
            self.end("enter_failed", e.message)
            return None
        except Exception as e:  # a misconfigured backend: said in the result, not as a traceback
            self.end("enter_failed", f"{type(e).__name__}: {e}")
            return None
        return room

    def run(self, room: Room, on_event: Callable[[Event, float], bool], present: Callable[[], bool],
            on_check: Callable[[float], bool] | None = None) -> None:
        """`follow`, then out of the room. A failure of the loop itself stops the run as
        "internal_error": the caller still finishes and reports what it has."""
        try:
            self.follow(room, on_event, present, on_check)
        except Exception as e:
            self.log.error(f"{self.activity} loop failed", exc_info=True, error=f"{type(e).__name__}: {e}")
            self.end("internal_error", f"{type(e).__name__}: {e}")
        finally:
            if room.closed is None:
                room.exit()

    def follow(self, room: Room, on_event: Callable[[Event, float], bool], present: Callable[[], bool],
               on_check: Callable[[float], bool] | None = None) -> None:
        """Hand each event to `on_event` until a stop: the room closing, the StopSignal, or
        `on_event` / `on_check` returning True (after calling `end`). `on_check` runs every
        CHECK_EVERY_S; by default it is `limit_reached` (MaxIdleTime with no one `present`,
        MaxDuration), which a caller's own check calls where it wants it."""
        check = on_check or self.limit_reached
        self.entered = self._idle_since = time.monotonic()
        next_check = 0.0
        while True:
            event = room.poll(POLL_S)
            budget = MAX_EVENTS_PER_BATCH
            while event is not None:
                if isinstance(event, RoomClosed):
                    self.end(event.result_reason, closed_detail(event))
                    return
                if on_event(event, time.monotonic()):
                    return
                budget -= 1
                if self.stop.reason or budget <= 0:  # a stop between events ends the batch too
                    break
                event = room.poll(0)
            now = time.monotonic()
            if present():
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = now
            if self.stop.reason:
                self.end(self.stop.reason, "")
                return
            if now >= next_check:
                next_check = now + CHECK_EVERY_S
                if check(now):
                    return

    def limit_reached(self, now: float) -> bool:
        """MaxIdleTime, MaxDuration: True (and the stop recorded) when one is reached."""
        if self._idle_since is not None and now - self._idle_since >= self.max_idle_s:
            self.end("idle", f"no anchor for {self.max_idle_s} s")
            return True
        if self.max_duration_s is not None and now - self.entered >= self.max_duration_s:
            self.end("max_duration", f"{self.max_duration_s} s {self.done}")
            return True
        return False
