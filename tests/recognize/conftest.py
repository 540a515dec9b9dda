"""recognize_stream through the local cloud's gateway: students in a local room speaking espeak-ng's
speech, the emulator's real recogniser (pocketsphinx) behind its ASR WebSocket, callbacks to a
local receiver, transcripts and clips in the local COS."""
from __future__ import annotations

import functools
import itertools
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import av
import pytest
import requests

from emulator.cloud import CloudConfig, LocalCloud
from shared.media.frames import AudioFrame
from shared.room import EnterParams, Role, RoomRef
from shared.room.local import LocalRoom
from shared.worker import Worker
from tests.waiting import wait_for

FRAME_BYTES = 48 * 20 * 2  # 20 ms of 48 kHz mono s16
_rooms = itertools.count(7100)


def until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """tests.waiting.wait_for with this folder's defaults."""
    return wait_for(predicate, timeout, what)


@functools.lru_cache(maxsize=None)
def speech(text: str) -> bytes:
    """espeak-ng saying `text`, as 48 kHz mono s16 (what a room carries)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (./dev test installs it)")
    out_dir = Path("/tmp/recognize-speech")
    out_dir.mkdir(exist_ok=True)
    wav = out_dir / ("_".join(text.split()) + ".wav")
    subprocess.run([exe, "-v", "en-us", "-s", "140", "-w", str(wav), text], check=True, timeout=30)
    pcm = bytearray()
    with av.open(str(wav)) as c:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in c.decode(audio=0):
            for f in resampler.resample(frame):
                pcm += bytes(f.planes[0])[:f.samples * 2]
        for f in resampler.resample(None):
            pcm += bytes(f.planes[0])[:f.samples * 2]
    return bytes(pcm)


class Student(Worker):
    """An anchor in the room whose microphone sends 20 ms frames in real time: speech when told
    to say something, silence otherwise, nothing while muted."""

    def __init__(self, cloud: LocalCloud, room: int, user_id: str):
        super().__init__(f"student-{user_id}")
        assert cloud.rooms is not None
        host, _, port = cloud.rooms.address.rpartition(":")
        self.user_id = user_id
        self.room = LocalRoom(host, int(port))
        self.room.enter(EnterParams(cloud.config.sdk_app_id, RoomRef(room), user_id, cloud.rooms.usersig(user_id),
                                    role=Role.ANCHOR, receive_media=False))
        self.room.start_audio(1)
        self._queue = bytearray()
        self.muted = False
        self.said_until = 0.0  # monotonic time the last speech frame was sent

    def say(self, text: str) -> None:
        self._queue += speech(text)

    @property
    def speaking(self) -> bool:
        return bool(self._queue)

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.closing.is_set():
            if self._queue:
                data = bytes(self._queue[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
                del self._queue[:FRAME_BYTES]
                self.said_until = time.monotonic()
            else:
                data = bytes(FRAME_BYTES)
            if not self.muted:
                try:
                    self.room.send_audio(AudioFrame(data, n * 20))
                except Exception:
                    return
            n += 1
            self.pause(max(0.0, start + n * 0.02 - time.monotonic()))

    def leave(self) -> None:
        self.close()
        self.join(2)
        self.room.exit()


class Classroom:
    def __init__(self, cloud: LocalCloud, callback: Any):
        self.cloud = cloud
        self.info = cloud.info()
        self.callback = callback
        self.students: list[Student] = []

    def new_room(self) -> int:
        return next(_rooms)

    def student(self, room: int, user_id: str) -> Student:
        s = Student(self.cloud, room, user_id)
        s.start()
        self.students.append(s)
        return s

    def params(self, room: int, user_id: str = "recognizer", **extra: Any) -> dict[str, Any]:
        assert self.cloud.rooms is not None
        info = self.info
        p: dict[str, Any] = {"SdkAppId": info["sdkAppId"], "RoomId": room, "UserId": user_id,
                             "UserSig": self.cloud.rooms.usersig(user_id), "Callback": self.callback.url,
                             "EngineModelType": "16k_en", "VadSilenceTime": 500, "MaxIdleTime": 2}
        p.update(extra)
        return p

    def cos_config(self) -> dict[str, Any]:
        info = self.info
        return {"SecretId": info["secretId"], "SecretKey": info["secretKey"], "Region": info["cos"]["region"],
                "Bucket": info["cos"]["bucket"], "Path": "/classes/recognize"}

    def post(self, params: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.info['gateway']}/recognize_stream", json=params, timeout=10)

    def start(self, params: dict[str, Any]) -> str:
        r = self.post(params)
        assert r.status_code == 200, r.text
        return r.headers["x-scf-reqid"]

    def in_room(self, room: int, user_id: str = "recognizer") -> bool:
        assert self.cloud.rooms is not None
        return user_id in self.cloud.rooms.rooms.user_ids(self.info["sdkAppId"], room)

    def bodies(self, request_id: str) -> list[dict[str, Any]]:
        return [r.json for r in list(self.callback.received) if isinstance(r.json, dict)
                and r.json.get("RequestID") == request_id]

    def result(self, request_id: str, timeout: float = 40.0) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            return next((b for b in self.bodies(request_id) if b.get("Status") == "finished"), None)

        return until(final, timeout, "the run's result callback")

    def close(self) -> None:
        for s in self.students:
            s.leave()
        self.students.clear()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCloud(CloudConfig(state_dir=tmp_path_factory.mktemp("recognize") / "state", shutdown_grace_s=2.0,
                               asr_max_concurrency=4, bucket="recognize-1250000000")).start()
    assert c.asr is not None
    c.asr.backend.pool.warm()  # the model loads once, not inside the first test's timings
    yield c
    c.stop()


@pytest.fixture
def classroom(cloud, callback_receiver):
    room = Classroom(cloud, callback_receiver)
    assert cloud.asr is not None
    cloud.asr.backend.max_concurrency = 4
    yield room
    room.close()
