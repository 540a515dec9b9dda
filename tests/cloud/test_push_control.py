"""push_control through the local cloud, as a caller reaches it: `POST {gateway}/push_control`
answers synchronously with the function's own status and body, and so does `Invoke` with
`RequestResponse` (the real tencentcloud ScfClient). The function runs in its own process with
the cloud's REDIS_URL, as a deployment would set it."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests
from tencentcloud.scf.v20180416 import models as scf_models

from emulator.cloud import CloudConfig, LocalCloud
from shared.redis.address import RedisAddress
from shared.room import RoomRef
from tests.push.conftest import PUSH_CLIP, Subscriber, make_clip
from tests.push.fake_push import APP, SIG, FakePush

from .conftest import scf_client, until


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCloud(CloudConfig(state_dir=tmp_path_factory.mktemp("control-cloud"), shutdown_grace_s=2.0,
                               bucket="controltest-1250000000", max_concurrency=4)).start()
    yield c
    c.stop()


TOKEN = "the-caller-s-own-control-token"  # chosen at push_stream, presented to push_control
PROOF = {"controlToken": TOKEN}


def post(cloud: LocalCloud, body: object, path: str = "/push_control") -> requests.Response:
    return requests.post(cloud.info()["gateway"] + path, data=json.dumps(body),
                         headers={"Content-Type": "application/json"}, timeout=30)


def test_the_cloud_serves_push_control_synchronously(cloud):
    info = cloud.info()
    assert info["functions"] == ["push_control", "push_stream", "recognize_stream", "record_stream"]
    fn = cloud.scf.function("push_control")
    assert fn.sync and not cloud.scf.function("push_stream").sync
    assert fn.environment["REDIS_URL"] == f"redis://127.0.0.1:{info['redis']['port']}/0"


def test_no_running_push_is_404_from_the_function(cloud):
    r = post(cloud, {"requestId": f"req-{uuid.uuid4().hex}", "action": "status", **PROOF})
    assert r.status_code == 404, r.text
    assert r.headers["Content-Type"] == "application/json" and r.headers["x-scf-reqid"]
    body = r.json()
    assert body["status"] == "failed" and body["reason"] == "not_running"
    # The cloud's REDIS_URL was where it looked (the call named no Redis).
    assert f"127.0.0.1:{cloud.info()['redis']['port']}" in body["message"]
    run = requests.get(f"{cloud.info()['gateway']}/_runs/{r.headers['x-scf-reqid']}", timeout=5).json()
    assert run["invokeType"] == "RequestResponse" and run["source"] == "apigw"


def test_a_bad_body_is_400_naming_the_field(cloud):
    r = post(cloud, {"requestId": "req-1", "action": "volume", "volume": 300})
    assert r.status_code == 400
    assert "volume: Input should be less than or equal to 100" in r.json()["message"]
    r = requests.post(cloud.info()["gateway"] + "/release/push_control", data=b"{not json",
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and "body is not valid JSON" in r.json()["message"]


def test_redis_unreachable_is_503(cloud):
    r = post(cloud, {"requestId": "req-1", "action": "status", "redisHost": "127.0.0.1", "redisPort": 1, **PROOF})
    assert r.status_code == 503
    assert r.json()["reason"] == "redis_unavailable" and "127.0.0.1:1" in r.json()["message"]


def test_a_running_push_is_controlled_through_the_gateway(cloud):
    info = cloud.info()
    room = RoomRef(f"cloud-{uuid.uuid4().hex[:8]}")
    push = FakePush(RedisAddress(info["redis"]["host"], info["redis"]["port"]), room, user="teacher")
    try:
        r = post(cloud, {"sdkAppId": APP, "roomId": room.id, "userId": "teacher", "action": "switch",
                         "videoSrc": "/lesson-2.mp4", "userSig": SIG})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["applied"] is True and body["requestId"] == push.request_id
        assert body["state"]["videoSrc"] == "/lesson-2.mp4"
        assert [c.action for c in push.seen] == ["switch"]
    finally:
        push.close()


def test_invoke_request_response_answers_with_the_function_s_result(cloud):
    info = cloud.info()
    client = scf_client(info["cloudApiEndpoint"], info["secretId"], info["secretKey"])
    req = scf_models.InvokeRequest()
    req.FunctionName, req.InvocationType = "push_control", "RequestResponse"
    req.ClientContext = json.dumps({"requestId": "req-gone", "action": "pause", **PROOF})
    result = client.Invoke(req).Result
    answer = json.loads(result.RetMsg)  # a plain invocation gets the body itself
    assert answer["status"] == "failed" and answer["reason"] == "not_running" and answer["requestId"] == "req-gone"
    req.ClientContext = json.dumps({"requestId": "req-gone", "action": "fly"})
    assert "action:" in json.loads(client.Invoke(req).Result.RetMsg)["message"]


# --- a real push, controlled through the gateway ------------------------------------------------


def _start_push(cloud: LocalCloud, src: Path, room: int, user: str = "teacher", user_sig: str = "") -> str:
    info = cloud.info()
    assert cloud.rooms is not None
    r = post(cloud, {"videoSrc": str(src), "sdkAppId": info["sdkAppId"], "roomId": room, "userId": user,
                     "userSig": user_sig or cloud.rooms.usersig(user), **PROOF}, path="/push_stream")
    assert r.status_code == 200, r.text
    request_id = r.headers["x-scf-reqid"]
    until(lambda: post(cloud, {"requestId": request_id, "action": "status", **PROOF}).status_code == 200, 30,
          "the push to register")
    return request_id


def _run(cloud: LocalCloud, request_id: str) -> dict:
    return requests.get(f"{cloud.info()['gateway']}/_runs/{request_id}", timeout=5).json()


@pytest.fixture(scope="module")
def cloud_clips(cloud):
    media = cloud.state_dir / "media"
    media.mkdir(exist_ok=True)
    return (make_clip(media / "lesson-a.mp4", duration=15.0, **PUSH_CLIP),
            make_clip(media / "lesson-b.mp4", **{**PUSH_CLIP, "duration": 3.0, "width": 176,
                                                      "height": 144, "video": "h264-bframes"}))


def test_a_real_push_switches_pauses_resumes_and_refuses_a_bad_source_through_the_gateway(cloud, cloud_clips):
    a, b = cloud_clips
    room = 800_000 + uuid.uuid4().int % 100_000
    assert cloud.rooms is not None
    sub = Subscriber(cloud.rooms.address, RoomRef(room), "teacher", cloud.rooms.usersig)
    try:
        sig = cloud.rooms.usersig("teacher")
        request_id = _start_push(cloud, a, room, user_sig=sig)
        assert sub.wait_for(lambda g: len(g.video_pts) > 10, 10)
        # Naming the push is not proof: 403 naming what is missing; a wrong token: 403, does not match.
        r = post(cloud, {"requestId": request_id, "action": "stop"})
        assert r.status_code == 403 and "userSig or controlToken required" in r.json()["message"], r.text
        r = post(cloud, {"requestId": request_id, "action": "stop", "controlToken": "not-the-token-at-all"})
        assert r.status_code == 403 and "does not match" in r.json()["message"], r.text
        # The push's own userSig is proof too.
        r = post(cloud, {"requestId": request_id, "action": "status", "userSig": sig})
        assert r.status_code == 200 and r.json()["state"]["status"] == "playing", r.text
        # A source that fails to open: 409 saying why, the push plays on.
        r = post(cloud, {"requestId": request_id, "action": "switch", "videoSrc": str(a.parent / "missing.mp4"), **PROOF})
        assert r.status_code == 409 and r.json()["reason"] == "source_error", r.text
        assert "file not found" in r.json()["message"]
        # Refused by egress before the push is touched: 400 naming it.
        r = post(cloud, {"requestId": request_id, "action": "switch", "videoSrc": "http://169.254.169.254/x.mp4", **PROOF})
        assert r.status_code == 400 and "videoSrc" in r.json()["message"]
        r = post(cloud, {"requestId": request_id, "action": "pause", **PROOF})
        assert r.status_code == 200 and r.json()["state"]["status"] == "paused"
        r = post(cloud, {"requestId": request_id, "action": "resume", **PROOF})
        assert r.status_code == 200 and r.json()["state"]["status"] == "playing"
        r = post(cloud, {"requestId": request_id, "action": "switch", "videoSrc": str(b), **PROOF})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"]["videoSrc"] == str(b) and body["switch"]["path"] == "encode"
        assert body["switch"]["latencyMs"] < 500
        until(lambda: _run(cloud, request_id)["status"] != "RUNNING", 30, "the push to end")
        got = sub.settle()
        assert all(y > x for x, y in zip(got.video_pts, got.video_pts[1:])), "room timestamps keep rising"
        # Same user all along: entered once, left once (at the end), never in between.
        assert got.entered.count("teacher") <= 1 and [u for u, _ in got.left] == ["teacher"]
        # After the end: 404, the push is not running.
        r = post(cloud, {"requestId": request_id, "action": "status", **PROOF})
        assert r.status_code == 404 and r.json()["reason"] == "not_running"
    finally:
        sub.close()


def test_a_push_superseded_by_the_same_user_is_404_naming_the_newer(cloud, cloud_clips):
    a, _ = cloud_clips
    room = 800_000 + uuid.uuid4().int % 100_000
    first = _start_push(cloud, a, room)
    second = _start_push(cloud, a, room)
    r = post(cloud, {"requestId": first, "action": "status", **PROOF})
    assert r.status_code == 404 and r.json()["reason"] == "superseded" and r.json()["supersededBy"] == second, r.text
    r = post(cloud, {"sdkAppId": APP, "roomId": room, "userId": "teacher", "action": "stop", **PROOF})
    assert r.status_code == 200 and r.json()["requestId"] == second
    until(lambda: _run(cloud, second)["status"] != "RUNNING", 15, "the stopped push to end")
