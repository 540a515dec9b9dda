"""push_stream's lifecycle events through the gateway: the sequence of a push with two switches and
a pause; a receiver that answers slowly does not slow the push's frames; a second start with the
same IdempotencyKey is a duplicate (one room member), other parameters a conflict naming the key;
and an IdempotencyKey without any Redis is a 400 naming it."""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator.cloud import LocalCloud
from emulator.httpserver import HttpServer
from shared.room import RoomRef
from tests.cloud.conftest import until
from tests.push.conftest import PUSH_CLIP, Subscriber, make_clip

from .conftest import check_stream, ended, types

TOKEN = "the-caller-s-own-control-token"


def _post(cloud: LocalCloud, body: dict[str, Any], path: str) -> requests.Response:
    return requests.post(cloud.info()["gateway"] + path, data=json.dumps(body),
                         headers={"Content-Type": "application/json"}, timeout=30)


def _control(cloud: LocalCloud, request_id: str, action: str, **fields: Any) -> dict[str, Any]:
    r = _post(cloud, {"requestId": request_id, "action": action, "controlToken": TOKEN, **fields}, "/push_control")
    assert r.status_code == 200, r.text
    return r.json()


def _push_body(cloud: LocalCloud, src: Path, room: int, **extra: Any) -> dict[str, Any]:
    info = cloud.info()
    assert cloud.rooms is not None
    return {"videoSrc": str(src), "sdkAppId": info["sdkAppId"], "roomId": room, "userId": "teacher",
            "userSig": cloud.rooms.usersig("teacher"), "controlToken": TOKEN, **extra}


def _start(cloud: LocalCloud, body: dict[str, Any]) -> str:
    r = _post(cloud, body, "/push_stream")
    assert r.status_code == 200, r.text
    return r.headers["x-scf-reqid"]


def _registered(cloud: LocalCloud, request_id: str) -> None:
    def status() -> bool:
        r = _post(cloud, {"requestId": request_id, "action": "status", "controlToken": TOKEN}, "/push_control")
        return r.status_code == 200
    until(status, 30, "the push to register")


def _result(cloud: LocalCloud, request_id: str, timeout: float = 60.0) -> Any:
    assert cloud.scf is not None
    until(lambda: cloud.scf.get(request_id).ended_at is not None, timeout, "the push's end")
    result = cloud.scf.get(request_id).result
    return json.loads(result["body"]) if isinstance(result, dict) and "body" in result else result


@pytest.fixture(scope="module")
def clips(cloud):
    media = cloud.state_dir / "media"
    media.mkdir(exist_ok=True)
    return (make_clip(media / "events-a.mp4", duration=20.0, **PUSH_CLIP),
            make_clip(media / "events-b.mp4", duration=20.0, **PUSH_CLIP))


def _room() -> int:
    return 850_000 + uuid.uuid4().int % 100_000


def test_a_push_with_two_switches_and_a_pause(cloud, clips, event_receiver):
    a, b = clips
    room = _room()
    rid = _start(cloud, _push_body(cloud, a, room, EventCallback=event_receiver.url))
    _registered(cloud, rid)
    _control(cloud, rid, "switch", videoSrc=str(b))
    _control(cloud, rid, "pause")
    _control(cloud, rid, "resume")
    _control(cloud, rid, "switch", videoSrc=str(a), seekSecond=2)
    _control(cloud, rid, "stop")
    until(lambda: ended(event_receiver), 30, "the end event")
    events = check_stream(event_receiver, rid)
    assert types(events) == ["started", "switched", "paused", "resumed", "switched", "stopped"], types(events)
    started = events[0]
    assert started["TrtcEventType"] == 701 and started["EventGroupId"] == 7 and started["Function"] == "push_stream"
    assert started["Payload"]["VideoSrc"] == str(a) and started["Payload"]["Path"] in ("passthrough", "transcode")
    assert started["RoomId"] == room and started["UserId"] == "teacher"
    first, second = events[1]["Payload"], events[4]["Payload"]
    assert (first["From"], first["To"]) == (str(a), str(b)) and (second["From"], second["To"]) == (str(b), str(a))
    assert second["Position"] == pytest.approx(2.0, abs=0.5)  # where the new source starts
    assert events[2]["Payload"]["Position"] >= 0
    last = events[-1]
    assert last["TrtcEventType"] == 702 and last["Payload"]["Result"]["reason"] == "control_stop"
    assert last["Payload"]["Result"] == _result(cloud, rid)


def test_a_slow_event_receiver_does_not_slow_the_frames(cloud, clips):
    a, b = clips
    room = _room()
    slow = _SlowReceiver(delay=3.0)
    assert cloud.rooms is not None
    sub = Subscriber(cloud.rooms.address, RoomRef(room), "teacher", cloud.rooms.usersig)
    try:
        rid = _start(cloud, _push_body(cloud, a, room, EventCallback=slow.url, maxDuration=8))
        assert sub.wait_for(lambda g: len(g.video_pts) > 5, 15)
        counts: list[tuple[float, int]] = []
        watching = time.monotonic()
        for src in (b, a, b):  # each switch is an event the receiver takes 3 s to answer
            _control(cloud, rid, "switch", videoSrc=str(src))
        while time.monotonic() - watching < 5.0:
            counts.append((time.monotonic(), len(sub.got.video_pts)))
            time.sleep(0.05)  # sampling the subscriber's frame count (the observation, not a synchronisation)
        result = _result(cloud, rid, 60)
        assert result["status"] == "completed", result
        longest = 0.0  # the longest time the subscriber's frame count stood still
        t_prev, n_prev = counts[0]
        since = t_prev
        for t, n in counts[1:]:
            if n != n_prev:
                since, n_prev = t, n
            longest = max(longest, t - since)
        frames = counts[-1][1] - counts[0][1]
        assert longest < 0.5, longest  # frames kept coming while the events waited on the receiver
        assert frames >= 0.8 * 25 * (counts[-1][0] - counts[0][0]), frames  # 25 fps, at pace
        until(lambda: len(slow.bodies) >= 5, 40, "the slow receiver to get every event")
        kinds = [b["EventType"] for b in slow.bodies]
        assert kinds[:4] == ["started", "switched", "switched", "switched"] and kinds[-1] == "stopped"
    finally:
        sub.close()
        slow.stop()


def test_a_second_push_with_the_same_key_is_a_duplicate_and_other_parameters_a_conflict(cloud, clips,
                                                                                           event_receiver):
    a, _ = clips
    room = _room()
    key = f"push-{room}"
    assert cloud.rooms is not None
    sub = Subscriber(cloud.rooms.address, RoomRef(room), "teacher", cloud.rooms.usersig)
    try:
        body = _push_body(cloud, a, room, IdempotencyKey=key)
        first = _start(cloud, body)
        _registered(cloud, first)
        second = _start(cloud, {**body, "EventCallback": event_receiver.url})
        result = _result(cloud, second, 30)
        assert result["status"] == "duplicate" and result["OriginalRequestId"] == first, result
        until(lambda: ended(event_receiver), 20, "the duplicate's event")
        [event] = check_stream(event_receiver, second)
        assert event["EventType"] == "duplicate" and event["Payload"]["Result"] == result
        conflict = _result(cloud, _start(cloud, {**body, "volume": 50}), 30)
        assert conflict["status"] == "failed" and conflict["reason"] == "idempotency_conflict", conflict
        assert "IdempotencyKey" in conflict["message"] and key in conflict["message"]
        _control(cloud, first, "stop")
        _result(cloud, first)
        got = sub.settle()
        assert got.entered.count("teacher") == 1 and [u for u, _ in got.left] == ["teacher"]  # one member, once
    finally:
        sub.close()


def test_an_idempotency_key_without_any_redis_is_400_naming_it(monkeypatch):
    from functions.push_stream.index import main_handler

    monkeypatch.delenv("REDIS_URL", raising=False)
    event = {"httpMethod": "POST", "path": "/push_stream", "requestContext": {}, "headers": {},
             "body": json.dumps({"videoSrc": "/x.mp4", "sdkAppId": 1400000001, "roomId": 1, "userId": "u",
                                 "userSig": "sig", "IdempotencyKey": "k1"})}
    answer = main_handler(event, {"request_id": "r-idem"})
    assert answer["statusCode"] == 400
    assert "IdempotencyKey" in json.loads(answer["body"])["message"]


class _SlowReceiver:
    """Answers each POST after `delay` seconds, one at a time."""

    def __init__(self, delay: float):
        self.bodies: list[dict[str, Any]] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)  # the receiver's own slowness
                with lock:
                    receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.http = HttpServer(Handler, name="slow-events", poll_interval=0.05)
        self.http.start()
        self.url = f"{self.http.url}/events"

    def stop(self) -> None:
        self.http.stop()
