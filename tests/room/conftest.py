"""The room contract suite runs against both backends: `local` (LocalRoom on the emulator's room
server) and `trtc` (TRTCRoom over the fake liteav SDK, which itself runs on the emulator's rooms).
"""
from __future__ import annotations

import gc
import importlib.util
import itertools
import time
from typing import Any, Callable

import pytest

from shared.room import EnterParams, Event, Role, Room, RoomRef, VideoEncodeConfig
from tests.logs import captured_log

# trtc runs on the real liteav module (its clouds replaced by the fake's): where liteav cannot be
# installed (it ships Linux wheels only) the trtc backend's tests are skipped.
HAVE_LITEAV = importlib.util.find_spec("liteav") is not None
BACKENDS = ["local", pytest.param("trtc", marks=pytest.mark.skipif(not HAVE_LITEAV, reason="liteav not installed"))]
WAIT_S = 5.0

# Room ids of this suite's own, so that tests sharing the session's room service never meet.
_ids = itertools.count(700001)


def room_factory(backend: str, address: str) -> Callable[[], Room]:
    host, _, port = address.rpartition(":")
    if backend == "local":
        from shared.room.local import LocalRoom

        return lambda: LocalRoom(host, int(port))
    from tests.fakes.liteav_fake import make_trtc_room

    return lambda: make_trtc_room(host, int(port))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def new_room(backend: str, room_service) -> Callable[[], Room]:
    """A not-yet-entered room of the backend under test on the session's room service."""
    return room_factory(backend, room_service.address)


@pytest.fixture
def room_id() -> Callable[[], int]:
    return lambda: next(_ids)


@pytest.fixture
def join(backend: str, room_service):
    """join(user_id, room_id, role=..., service=..., via=backend, **EnterParams fields) -> an entered Room.

    `via` picks another backend for this member (the backend under test by default).

    Every room joined is exited when the test ends.
    """
    joined: list[Room] = []

    def join(user_id: str, room: int | str, role: Role = Role.ANCHOR, service: Any = None, via: str | None = None,
             **params: Any) -> Room:
        svc = service or room_service
        r = room_factory(via or backend, svc.address)()
        joined.append(r)
        r.enter(EnterParams(svc.sdk_app_id, RoomRef(room), user_id, svc.usersig(user_id), role=role,
                            timeout=WAIT_S, **params))
        return r

    yield join
    for r in joined:
        r.exit()


def describe(events: list[Event]) -> str:
    names = [type(e).__name__ + (f"({getattr(e, 'user_id', '')})" if hasattr(e, "user_id") else "") for e in events]
    return ", ".join(names[-20:]) or "nothing"


def wait_for(room: Room, match: Callable[[Event], bool], timeout: float = WAIT_S) -> tuple[Event, list[Event]]:
    """The first event that matches (and every event seen up to it); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    seen: list[Event] = []
    while (left := deadline - time.monotonic()) > 0:
        event = room.poll(left)
        if event is None:
            break
        seen.append(event)
        if match(event):
            return event, seen
    raise AssertionError(f"no matching event within {timeout:g} s; saw {describe(seen)}")


def gather_until(room: Room, done: Callable[[list[Event]], bool]) -> list[Event]:
    """Every event until `done(events so far)` holds, then what follows until the room is quiet."""
    seen: list[Event] = []
    wait_for(room, lambda e: seen.append(e) or done(seen))
    return seen + drain(room, quiet=0.5)


def publish_tones_and_pictures(*anchors: Room, frames: int = 10) -> None:
    """Each anchor opens audio and video and sends `frames` tones and grey pictures, in turns."""
    from emulator import media

    for anchor in anchors:
        anchor.start_audio()
        anchor.start_video(VideoEncodeConfig(fps=25))
    for i in range(frames):
        for anchor in anchors:
            anchor.send_audio(media.tone(i))
            anchor.send_video(media.grey(160, 120, 90, i * 40))


def drain(room: Room, quiet: float = 0.3, limit: float = WAIT_S) -> list[Event]:
    """Every event until none has come for `quiet` seconds (at most `limit` seconds in all)."""
    deadline = time.monotonic() + limit
    seen: list[Event] = []
    while time.monotonic() < deadline:
        event = room.poll(quiet)
        if event is None:
            break
        seen.append(event)
    return seen


# --- the trtc backend on its own (tests/room/test_trtc_*.py) ------------------------------------------


@pytest.fixture
def log_lines():
    """(a RunLogger for the room under test, the LogLines it wrote)."""
    with captured_log() as pair:
        yield pair


@pytest.fixture
def trtc(room_service, log_lines):
    """trtc(user_id, room, **EnterParams fields) -> (entered TRTCRoom, its fake SDK); all exited at the end.

    The fake only records a raising delegate callback here (instead of stopping the run), and every
    test checks that none did, that no cloud outlived its room's exit(), and that none was destroyed
    on its own SDK thread.
    """
    pytest.importorskip("liteav")
    from shared.room.trtc import TRTCRoom
    from tests.fakes import liteav_fake as fake

    host, _, port = room_service.address.rpartition(":")
    logger, _ = log_lines
    made: list[tuple[Room, Any]] = []

    def make(user_id: str, room: int | str, role: Role = Role.ANCHOR, enter: bool = True, **params: Any):
        sdk = fake.make_sdk(host, int(port))
        sdk.fake_on_delegate_error = "record"
        r = TRTCRoom(sdk=sdk, logger=logger)
        made.append((r, sdk))
        if enter:
            params.setdefault("timeout", WAIT_S)
            r.enter(EnterParams(room_service.sdk_app_id, RoomRef(room), user_id, room_service.usersig(user_id),
                                role=role, **params))
        return r, sdk

    yield make
    for r, _ in made:
        r.exit()
    gc.collect()
    for _, sdk in made:
        assert sdk.fake_delegate_errors == [], [e.traceback for e in sdk.fake_delegate_errors]
        assert sdk.fake_misuse == []
        assert not [c for c in sdk.fake_clouds if c.fake_alive], "a cloud was left running after exit()"
