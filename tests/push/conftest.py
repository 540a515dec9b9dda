"""What the push tests share: a subscriber in the local room, small clips, and ways to run a push
in this process or in a child process that can be signalled or killed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from emulator.media import decode_h264, make_clip  # noqa: F401  (decode_h264: for the push tests)
from shared.room import (
    EnterParams,
    RemoteAudio,
    RemoteVideo,
    Role,
    RoomClosed,
    RoomRef,
    UserEntered,
    UserLeft,
    VideoFormat,
)
from shared.room.local import LocalRoom

REPO = Path(__file__).resolve().parents[2]
APP = 1400000001


# --- media ------------------------------------------------------------------------------------

# The push tests' clips: H.264 pictures whose brightness steps every frame (a picture tells which
# frame it is: emulator.media.step_level), a key frame every second, and a 440 Hz tone in AAC mono.
PUSH_CLIP: dict[str, Any] = {"pictures": "steps", "layout": "mono", "gop": 25}


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("push-clips")


@pytest.fixture(scope="session")
def clip3(clip_dir: Path) -> Path:
    """3 s, 160x120 at 25 fps, H.264 without B-frames (passthrough) + AAC mono."""
    return make_clip(clip_dir / "clip3.mp4", duration=3.0, **PUSH_CLIP)


@pytest.fixture(scope="session")
def clip10(clip_dir: Path) -> Path:
    """10 s of the same: long enough to stop, kill or resume in the middle."""
    return make_clip(clip_dir / "clip10.mp4", duration=10.0, **PUSH_CLIP)


# --- the subscriber ---------------------------------------------------------------------------


@dataclass
class Received:
    audio_pts: list[int] = field(default_factory=list)
    audio_data: list[bytes] = field(default_factory=list)  # PCM s16 mono, as the room decoded it
    video_pts: list[int] = field(default_factory=list)
    video_keys: list[bool] = field(default_factory=list)
    video_data: list[bytes] = field(default_factory=list)
    first_media_at: float | None = None  # time.monotonic() of the first frame from the pusher
    entered: list[str] = field(default_factory=list)
    left: list[tuple[str, int]] = field(default_factory=list)
    closed: RoomClosed | None = None


class Subscriber:
    """An audience member collecting what `user_id` publishes, on its own thread."""

    def __init__(self, address: str, room: RoomRef, user_id: str, usersig: Callable[[str], str],
                 me: str | None = None):
        host, _, port = address.rpartition(":")
        self.room = LocalRoom(host, int(port))
        self.user_id = user_id
        self.got = Received()
        self._stop = threading.Event()
        me = me or f"sub-{uuid.uuid4().hex[:8]}"
        self.room.enter(EnterParams(APP, room, me, usersig(me), role=Role.AUDIENCE,
                                    video_output=VideoFormat.H264, audio_output_channels=1))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        got = self.got
        while not self._stop.is_set():
            event = self.room.poll(0.05)
            if event is None:
                continue
            if isinstance(event, RemoteAudio) and event.user_id == self.user_id:
                got.first_media_at = got.first_media_at or time.monotonic()
                got.audio_pts.append(event.frame.pts_ms)
                got.audio_data.append(event.frame.data)
            elif isinstance(event, RemoteVideo) and event.user_id == self.user_id:
                got.first_media_at = got.first_media_at or time.monotonic()
                got.video_pts.append(event.frame.pts_ms)
                got.video_keys.append(bool(getattr(event.frame, "key", False)))
                got.video_data.append(event.frame.data)
            elif isinstance(event, UserEntered):
                got.entered.append(event.user_id)
            elif isinstance(event, UserLeft):
                got.left.append((event.user_id, event.reason))
            elif isinstance(event, RoomClosed):
                got.closed = event
                return

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.got):
                return True
            time.sleep(0.02)
        return predicate(self.got)

    def settle(self, quiet: float = 0.3, timeout: float = 5.0) -> Received:
        """Wait until nothing new has arrived for `quiet` seconds (frames still in flight land)."""
        deadline = time.monotonic() + timeout
        last = (-1, -1)
        while time.monotonic() < deadline:
            now = (len(self.got.audio_pts), len(self.got.video_pts))
            if now == last:
                break
            last = now
            time.sleep(quiet)
        return self.got

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.room.exit()


@pytest.fixture
def subscribe(room_service):
    made: list[Subscriber] = []

    def make(room: RoomRef, user_id: str) -> Subscriber:
        sub = Subscriber(room_service.address, room, user_id, room_service.usersig)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


# --- running a push ---------------------------------------------------------------------------


@pytest.fixture
def push_env(room_service, monkeypatch):
    """This process's environment set up for pushing into the session's local rooms."""
    for k, v in room_service.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PACING_SPEED", "8")
    return room_service


_room_counter = iter(range(10_000))


def new_room() -> int:
    """A room id no other test uses."""
    return 700_000 + os.getpid() % 1000 * 1000 + next(_room_counter)


def params_for(room_service, src: Path | str, room: int | str, user: str = "pusher", **extra: Any) -> dict[str, Any]:
    return {"videoSrc": str(src), "sdkAppId": room_service.sdk_app_id, "roomId": room, "userId": user,
            "userSig": room_service.usersig(user), **extra}


class Child:
    """A push in its own process (python -m tests.child push_stream), to be signalled or killed."""

    def __init__(self, params: dict[str, Any], env: dict[str, str], request_id: str,
                 context: dict[str, Any] | None = None):
        ctx = {"request_id": request_id, "function_name": "push_stream", **(context or {})}
        self.request_id = request_id
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.child", "push_stream", json.dumps(params), json.dumps(ctx)],
            cwd=str(REPO), env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout: float = 30.0) -> tuple[dict[str, Any], str]:
        out, err = self.proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines, f"the push printed no result; stderr:\n{err[-3000:]}"
        return json.loads(lines[-1]), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def children():
    made: list[Child] = []

    def make(*args: Any, **kw: Any) -> Child:
        child = Child(*args, **kw)
        made.append(child)
        return child

    yield make
    for child in made:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.communicate(timeout=10)


from tests.media_fixtures import clips, media_http  # noqa: E402,F401  (fixtures: named clips, local HTTP/HLS)


def poll_until(predicate, timeout: float = 5.0, step: float = 0.05):
    """The predicate's first truthy value within `timeout` (else its last value): bounded waiting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()
