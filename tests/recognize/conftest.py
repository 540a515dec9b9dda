"""recognize_stream through the local cloud's gateway: students in a local room speaking espeak-ng's
speech, the emulator's real recogniser (pocketsphinx) behind its ASR WebSocket, callbacks to a
local receiver, transcripts and clips in the local COS."""
from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest
import requests

from emulator.classroom import SpeechUnavailable, Student as SpeakingAnchor, speech as espeak_speech
from emulator.cloud import CloudConfig, LocalCloud
from shared.room import RoomRef
from tests.waiting import wait_for

_rooms = itertools.count(7100)


def until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """tests.waiting.wait_for with this folder's defaults."""
    return wait_for(predicate, timeout, what)


def speech(text: str) -> bytes:
    """espeak-ng saying `text`, as 48 kHz mono s16 (emulator/classroom.py's); skipped without espeak-ng."""
    try:
        return espeak_speech(text)
    except SpeechUnavailable as e:
        pytest.skip(str(e))


class Student(SpeakingAnchor):
    """emulator/classroom.py's student (an anchor speaking espeak-ng's speech in real time), in the cloud's rooms."""

    def __init__(self, cloud: LocalCloud, room: int, user_id: str):
        assert cloud.rooms is not None
        super().__init__(cloud.rooms.address, cloud.config.sdk_app_id, RoomRef(room), user_id,
                         cloud.rooms.usersig(user_id))

    def say(self, text: str) -> None:
        speech(text)  # skips the test without espeak-ng
        super().say(text)


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
