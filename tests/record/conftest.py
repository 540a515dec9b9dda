"""What the record tests share: anchors that publish PyAV-made media into the local room, a
record_stream run in a thread or in a child process, and a look inside the files it made."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import pytest

from emulator.media import h264_units, probe, tone  # noqa: F401  (the record tests import them from here)
from shared.cos.urls import parse_cos_url
from shared.room import NO_MEDIA, AudioFrame, EnterParams, H264Frame, Role, RoomRef, VideoFormat
from shared.room.local import LocalRoom

from .segmented import bucket, cos_env, prefix  # noqa: F401  (fixtures of the segment, upload and recovery tests)

REPO = Path(__file__).resolve().parents[2]
FPS = 25
RUN_TIMEOUT_S = 40.0

_room_ids = itertools.count(810001)


# --- media ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def video_units() -> list[H264Frame]:
    """10 s of 160x120 H.264 at 25 fps, one key frame a second (enough for every test here)."""
    return h264_units(10 * FPS)


def hevc_units(count: int, width: int = 160, height: int = 120, fps: int = 25, gop: int = 25) -> list[H264Frame]:
    """`count` H.265 access units (libx265, no B-frames, VPS/SPS/PPS on key frames), codec "hevc"."""
    import fractions

    import av

    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 1000)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x265-params": f"bframes=0:keyint={gop}:min-keyint={gop}:repeat-headers=1:log-level=none"}
    units: list[H264Frame] = []
    packets = []
    for i in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, value in zip(frame.planes, (16 + (i * 7) % 200, 128, 128)):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = i * 1000 // fps, fractions.Fraction(1, 1000)
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    for packet in packets:
        units.append(H264Frame(bytes(packet), int(packet.pts), bool(packet.is_keyframe), int(packet.dts), "hevc"))
    return units


# --- anchors -------------------------------------------------------------------------------------


class Anchor:
    """An anchor in the local room publishing a tone and pre-encoded H.264 in real time."""

    def __init__(self, service: Any, room: int | str, user_id: str):
        host, _, port = service.address.rpartition(":")
        self.user_id = user_id
        self.room = LocalRoom(host, int(port))
        self.room.enter(EnterParams(service.sdk_app_id, RoomRef(room), user_id, service.usersig(user_id),
                                    role=Role.ANCHOR, video_input=VideoFormat.H264, receive=NO_MEDIA))
        self.room.start_audio(1)
        self.room.start_video()
        self.sent_audio = 0
        self.sent_video = 0
        self._thread: threading.Thread | None = None

    def publish(self, seconds: float, units: list[H264Frame] | None = None, audio: bool = True,
                mute: tuple[float, float] | None = None, pts_base: int = 0) -> "Anchor":
        """Send `seconds` of a tone (and `units`) in real time (in a thread); `mute` (from, to) skips audio there."""
        frames: list[AudioFrame | None] = []
        for i in range(int(seconds * 50)):
            t = i * 0.02
            frames.append(tone(i) if audio and not (mute and mute[0] <= t < mute[1]) else None)
        return self.send_paced(frames, units, pts_base)

    def send_paced(self, audio: list[AudioFrame | None], units: list[H264Frame] | None = None,
                   pts_base: int = 0) -> "Anchor":
        """One 20 ms step per item of `audio` in real time, in a thread (None: no audio in that step),
        each step followed by the video `units` due by then; every timestamp moved by `pts_base`."""
        def run() -> None:
            start = time.monotonic()
            v = 0
            for i, frame in enumerate(audio):
                if frame is not None:
                    self.room.send_audio(replace(frame, pts_ms=frame.pts_ms + pts_base) if pts_base else frame)
                    self.sent_audio += 1
                while units is not None and v < len(units) and units[v].pts_ms <= i * 20:
                    u = units[v]
                    # replace(): the unit keeps its codec (H.264 or H.265)
                    self.room.send_video(replace(u, pts_ms=u.pts_ms + pts_base, dts_ms=u.pts_ms + pts_base))
                    self.sent_video += 1
                    v += 1
                delay = start + (i + 1) * 0.02 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

        self._thread = threading.Thread(target=run, name=f"anchor-{self.user_id}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float = 20.0) -> "Anchor":
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the anchor did not finish publishing"
        return self

    def leave(self) -> None:
        self.room.exit()


# --- runs ----------------------------------------------------------------------------------------


class Run:
    """record_stream's handler running in a thread of this process."""

    def __init__(self, event: dict[str, Any], context: dict[str, Any]):
        from functions.record_stream.index import main_handler

        self.result: Any = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.result = main_handler(event, context)
            except BaseException as e:  # surfaced by .wait()
                self.error = e

        self.thread = threading.Thread(target=target, name="record_stream", daemon=True)
        self.thread.start()

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"record_stream did not return within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


class Child:
    """record_stream's handler in a child process (for SIGTERM); its result is the last stdout line."""

    def __init__(self, event: dict[str, Any], context: dict[str, Any], env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.child", "record_stream", json.dumps(event), json.dumps(context)],
            cwd=str(REPO), env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = RUN_TIMEOUT_S) -> tuple[dict[str, Any], str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"record_stream child did not finish within {timeout} s: {err[-2000:]}") from None
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines, f"record_stream child printed nothing (exit {self.proc.returncode}): {err[-2000:]}"
        return json.loads(lines[-1]), err


@dataclass
class Studio:
    """A room service, COS, a callback receiver and a CFS folder, wired into the environment."""

    rooms: Any
    cos: Any
    callback: Any
    cfs: Path
    env: dict[str, str]

    def new_room(self) -> int:
        return next(_room_ids)

    def event(self, room: int | str, mode: str = "00", user_id: str = "recorder", **extra: Any) -> dict[str, Any]:
        params: dict[str, Any] = {
            "SdkAppId": self.rooms.sdk_app_id,
            "UserId": user_id,
            "UserSig": self.rooms.usersig(user_id),
            "CosConfig": {"SecretId": self.cos.secret_id, "SecretKey": self.cos.secret_key,
                          "Region": self.cos.region, "Bucket": self.cos.bucket, "Path": "/trtc/test"},
            "Callback": self.callback.url,
            "Mode": mode,
        }
        params["StrRoomId" if isinstance(room, str) else "RoomId"] = room
        params.update(extra)
        return params

    @staticmethod
    def context(time_limit_s: float = 120.0) -> dict[str, Any]:
        return {"request_id": f"rec-{uuid.uuid4().hex[:12]}", "function_name": "record_stream",
                "time_limit_in_ms": int(time_limit_s * 1000)}

    def start(self, event: dict[str, Any], context: dict[str, Any] | None = None) -> Run:
        run = Run(event, context or self.context())
        self.wait_in_room(event.get("RoomId") or event.get("StrRoomId"), event["UserId"])
        return run

    def record(self, event: dict[str, Any], user_ids: Iterable[str], seconds: float, **publish: Any) -> dict[str, Any]:
        """A recording of `user_ids`, each publishing `seconds` of media (Anchor.publish's `publish`),
        until the recorder is removed: its result."""
        room = event.get("RoomId") or event.get("StrRoomId")
        run = self.start(event)
        anchors = [self.anchor(room, u).publish(seconds, **publish) for u in user_ids]
        for a in anchors:
            a.wait()
        self.remove(room)
        result = run.wait()
        for a in anchors:
            a.leave()
        return result

    def start_child(self, event: dict[str, Any], context: dict[str, Any] | None = None) -> Child:
        child = Child(event, context or self.context(), self.env)
        self.wait_in_room(event.get("RoomId") or event.get("StrRoomId"), event["UserId"], timeout=20.0)
        return child

    def wait_in_room(self, room: int | str, user_id: str, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while user_id not in self.rooms.rooms.user_ids(self.rooms.sdk_app_id, room):
            assert time.monotonic() < end, f"{user_id} did not enter room {room} within {timeout} s"
            time.sleep(0.02)

    def anchor(self, room: int | str, user_id: str) -> Anchor:
        return Anchor(self.rooms, room, user_id)

    def remove(self, room: int | str, user_id: str = "recorder") -> None:
        """RemoveUser (or RemoveUserByStrRoomId) through the real TrtcClient."""
        from tencentcloud.trtc.v20190722 import models

        client = self.rooms.trtc_client()
        if isinstance(room, str):
            req = models.RemoveUserByStrRoomIdRequest()
        else:
            req = models.RemoveUserRequest()
        req.RoomId = room
        req.SdkAppId = self.rooms.sdk_app_id
        req.UserIds = [user_id]
        (client.RemoveUserByStrRoomId if isinstance(room, str) else client.RemoveUser)(req)

    def dismiss(self, room: int) -> None:
        from tencentcloud.trtc.v20190722 import models

        req = models.DismissRoomRequest()
        req.SdkAppId = self.rooms.sdk_app_id
        req.RoomId = room
        self.rooms.trtc_client().DismissRoom(req)

    def fetch(self, url: str, into: Path) -> Path:
        """The object behind a RecordFile URL, read from COS into a local file."""
        bucket_name, _region, key = parse_cos_url(url)
        assert bucket_name == self.cos.bucket
        data = self.cos.client().get_object(Bucket=bucket_name, Key=key)["Body"].get_raw_stream().read()
        into.write_bytes(data)
        return into


def make_studio(rooms: Any, cos_service: Any, callback_receiver: Any, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Studio:
    cfs = tmp_path / "cfs"
    cfs.mkdir()
    env = {**rooms.env, "COS_ENDPOINT": cos_service.endpoint_url, "CFS_PATH": str(cfs),
           "CALLBACK_ALLOWLIST": "127.0.0.0/8,::1/128,localhost"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Studio(rooms, cos_service, callback_receiver, cfs, env)


@pytest.fixture
def studio(room_service, cos_service, callback_receiver, tmp_path, monkeypatch) -> Studio:
    return make_studio(room_service, cos_service, callback_receiver, tmp_path, monkeypatch)
