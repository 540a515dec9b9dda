"""RoomWatch: the one place record_stream and recognize_stream turn what a room says, idle time and
their limits into a stop reason and the result's message (a room of our own feeds it events)."""
from __future__ import annotations

import time
from typing import Any

import pytest

from shared.room import (
    ERR_BANNED_BY_SERVER,
    ERR_INVALID_USER_SIG,
    AudioFrame,
    CloseReason,
    EnterParams,
    Event,
    RemoteAudio,
    Room,
    RoomClosed,
    RoomError,
    RoomRef,
    UserEntered,
)
from shared.room.watch import RoomWatch, stop_message
from shared.runtime import StopSignal
from tests.logs import captured_log


class ScriptedRoom(Room):
    """A room whose events the test puts in; it records whether it was left."""

    def __init__(self, *events: Event) -> None:
        super().__init__()
        self.exited = False
        for event in events:
            self.put(event)

    def put(self, event: Event) -> None:
        if isinstance(event, RoomClosed):
            self._close(event)
        else:
            self._emit(event)

    def enter(self, params: EnterParams) -> None:
        pass

    def exit(self) -> None:
        self.exited = True
        self._close(RoomClosed(CloseReason.EXITED))

    def start_audio(self, channels: int = 1, bitrate_bps: int = 0) -> None:
        raise NotImplementedError

    def start_video(self, config: Any = None) -> None:
        raise NotImplementedError

    def set_video_encode(self, config: Any) -> None:
        raise NotImplementedError

    def send_audio(self, frame: Any) -> None:
        raise NotImplementedError

    def send_video(self, frame: Any) -> None:
        raise NotImplementedError

    def request_key_frame(self, user_id: str) -> None:
        pass


def watch(stop: StopSignal | None = None, max_idle_s: float = 30, max_duration_s: float = 10) -> RoomWatch:
    """A recorder's watch; MaxDuration bounds every test that expects another stop."""
    with captured_log() as (log, _):
        return RoomWatch(StopSignal() if stop is None else stop, log, max_idle_s, max_duration_s,
                         activity="recording", who="recorder", done="recorded")


def follow(w: RoomWatch, room: Room, present: bool = True, **kw: Any) -> float:
    """Seconds `follow` took (every test's room or limit ends it within a few seconds)."""
    started = time.monotonic()
    w.follow(room, kw.pop("on_event", lambda event, now: False), lambda: present, **kw)
    return time.monotonic() - started


def test_a_removal_is_the_reason_and_the_message_names_trtc_s_code():
    w = watch()
    follow(w, ScriptedRoom(UserEntered("a"), RoomClosed(CloseReason.REMOVED, ERR_BANNED_BY_SERVER, "kicked")))
    assert (w.final_reason, w.detail) == ("removed", f"kicked (TRTC {ERR_BANNED_BY_SERVER})")
    assert w.message() == f"the recorder was removed from the room: kicked (TRTC {ERR_BANNED_BY_SERVER})"


def test_no_anchor_for_max_idle_time_stops_as_idle():
    w = watch(max_idle_s=0.3)
    took = follow(w, ScriptedRoom(), present=False)
    assert w.reason == "idle" and 0.3 <= took < 3.0
    assert w.message() == "no anchor in the room for MaxIdleTime: no anchor for 0.3 s"


def test_max_duration_stops_a_room_that_has_anchors():
    w = watch(max_idle_s=0.1, max_duration_s=1)
    took = follow(w, ScriptedRoom(UserEntered("a")), present=True)
    assert w.reason == "max_duration" and 1.0 <= took < 4.0
    assert w.message() == "MaxDuration reached: 1 s recorded"


def test_sigterm_through_the_stop_signal_ends_the_batch_and_the_run():
    stop = StopSignal()
    room = ScriptedRoom(*[RemoteAudio("a", AudioFrame(b"\0" * 1920, 0)) for _ in range(5)])
    seen: list[Event] = []

    def on_event(event: Event, now: float) -> bool:
        seen.append(event)
        stop.request("terminated")
        return False

    w = watch(stop)
    follow(w, room, on_event=on_event)
    assert w.reason == "terminated" and len(seen) == 1  # the events after the stop are not handled
    assert w.message() == "the function was terminated (SIGTERM)"


def test_the_first_reason_wins_and_the_caller_s_check_runs_with_the_limits():
    w = watch(max_idle_s=0.1)

    def check(now: float) -> bool:
        w.end("disk_full", "0 MB left")
        return True

    follow(w, ScriptedRoom(), present=False, on_check=check)
    w.end("idle", "too late")
    assert (w.reason, w.message()) == ("disk_full", "the disk is full: 0 MB left")


def test_a_room_that_cannot_be_entered_is_enter_failed_with_its_code():
    def refuses() -> Room:
        raise RoomError(ERR_INVALID_USER_SIG, "invalid UserSig")

    w = watch()
    assert w.enter(refuses, EnterParams(1400000001, RoomRef(1), "recorder", "sig")) is None
    assert (w.reason, w.enter_code, w.message()) == ("enter_failed", ERR_INVALID_USER_SIG,
                                                      "could not enter the room: invalid UserSig")


def test_a_loop_that_fails_is_internal_error_and_the_room_is_left():
    room = ScriptedRoom(UserEntered("a"))

    def on_event(event: Event, now: float) -> bool:
        raise ValueError("bad")

    w = watch()
    w.run(room, on_event, lambda: True)
    assert room.exited and (w.reason, w.detail) == ("internal_error", "ValueError: bad")


@pytest.mark.parametrize("reason, who, expected", [
    ("replaced", "recogniser", "another client entered the room with the recogniser's UserId"),
    ("exited", "recorder", "the recorder left the room"),
    ("something_new", "recorder", "something_new"),
])
def test_stop_messages_name_the_member(reason, who, expected):
    assert stop_message(reason, "", who) == expected
