"""push_stream's parameters through the handler: both event shapes, every bad field named at once."""
from __future__ import annotations

import base64
import json

import pytest

from functions.push_stream.index import main_handler
from shared.contracts.push import PushParams
from shared.room import RoomRef

GOOD = {"videoSrc": "/nonexistent/clip.mp4", "sdkAppId": "1400000001", "roomId": "1234", "userId": "pusher",
        "userSig": "sig-value-that-is-secret"}


def gateway_event(params: dict, base64_body: bool = False) -> dict:
    body = json.dumps(params)
    if base64_body:
        body = base64.b64encode(body.encode()).decode()
    return {"httpMethod": "POST", "path": "/push_stream", "headers": {"content-type": "application/json"},
            "requestContext": {"stage": "release"}, "queryString": {}, "body": body,
            "isBase64Encoded": base64_body}


def test_gateway_event_with_bad_fields_gets_400_naming_each():
    bad = {"videoSrc": "", "sdkAppId": "not-a-number", "roomId": "bad/room", "userSig": "x-secret-sig",
           "clientRole": "audience", "redis": "true", "redisPort": "99999", "volume": 101, "repeatNum": -2,
           "roomIdType": 3, "bogus": 1}
    response = main_handler(gateway_event(bad), {"request_id": "req-400"})
    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert body["status"] == "failed" and body["reason"] == "invalid_parameters"
    message = body["message"]
    for name in ("videoSrc", "sdkAppId", "roomId", "userId", "clientRole", "redisHost", "redisPort",
                 "volume", "repeatNum", "roomIdType", "bogus"):
        assert f"{name}:" in message, (name, message)
    assert "userId: is required" in message
    assert "an audience cannot publish" in message
    assert "redisHost: is required when redis is true" in message
    assert "x-secret-sig" not in response["body"]


def test_plain_dict_gets_the_failed_result_itself():
    result = main_handler({**GOOD, "clientRole": "audience"}, {"request_id": "req-aud"})
    assert result["status"] == "failed" and result["reason"] == "invalid_parameters"
    assert "clientRole: an audience cannot publish" in result["message"]


@pytest.mark.parametrize("role, ok", [("anchor", True), ("Anchor", True), (20, True), ("20", True),
                                      ("audience", False), (21, False), ("speaker", False), (None, False)])
def test_client_role(role, ok):
    result = main_handler({**GOOD, "clientRole": role, "redis": True}, {})  # fails on redisHost either way
    assert ("clientRole:" not in result["message"]) is ok, result["message"]


def test_base64_gateway_body_is_read():
    response = main_handler(gateway_event({**GOOD, "redis": True}, base64_body=True), {})
    assert response["statusCode"] == 400
    assert "redisHost: is required when redis is true" in json.loads(response["body"])["message"]


def test_source_error_reaches_the_caller_without_a_traceback(push_env, monkeypatch):
    monkeypatch.setenv("LOCAL_SOURCE_DIRS", "/nonexistent")  # a place local sources may be: a missing file
    response = main_handler(gateway_event(GOOD), {"request_id": "req-src"})
    body = json.loads(response["body"])
    assert response["statusCode"] == 400 and body["reason"] == "source_error"
    assert "/nonexistent/clip.mp4" in body["message"] and "not found" in body["message"]
    assert "Traceback" not in response["body"]


def test_gateway_strings_become_ints_and_bools():
    p = PushParams.model_validate({**GOOD, "redis": "true", "redisHost": "10.0.0.5", "redisPort": "6380",
                                   "redisDb": "2", "seekSecond": "1.5", "repeatNum": "-1", "volume": "50"})
    assert (p.sdkAppId, p.redis, p.redisPort, p.redisDb, p.seekSecond, p.repeatNum, p.volume) == \
        (1400000001, True, 6380, 2, 1.5, -1, 50)
    assert p.clientRole == "anchor" and p.redisPassword is None
    assert "sig-value-that-is-secret" not in repr(p)


@pytest.mark.parametrize("room_id, room_id_type, expected", [
    ("1234", None, RoomRef(1234)),
    (1234, None, RoomRef(1234)),
    ("1234", 0, RoomRef("1234")),
    (1234, "0", RoomRef("1234")),
    ("0123", None, RoomRef("0123")),  # a leading zero would change the room if read as a number
    ("4294967296", None, RoomRef("4294967296")),
    ("class-7b", None, RoomRef("class-7b")),
])
def test_room_id_type_rules(room_id, room_id_type, expected):
    extra = {} if room_id_type is None else {"roomIdType": room_id_type}
    assert PushParams.model_validate({**GOOD, "roomId": room_id, **extra}).room == expected


def test_integer_room_type_refuses_a_string_room():
    result = main_handler({**GOOD, "roomId": "class-7b", "roomIdType": 1}, {})
    assert result["reason"] == "invalid_parameters"
    assert "roomId: an integer room id must be in 1..4294967295" in result["message"]


# --- numbers are numbers, finite and in range; URLs parse ----------------------------------------

@pytest.mark.parametrize("name", ["roomId", "sdkAppId", "volume", "videoFps", "videoGop", "videoWidth",
                                  "repeatNum", "maxDuration", "seekSecond", "redisPort", "redisDb", "roomIdType"])
def test_a_boolean_is_not_a_number(name):
    # JSON true would otherwise be 1: room 1, volume 1, 1 fps.
    response = main_handler(gateway_event({**GOOD, name: True}), {})
    assert response["statusCode"] == 400
    assert f"{name}: must be a number, not true/false" in json.loads(response["body"])["message"]


@pytest.mark.parametrize("name, raw", [
    ("maxDuration", "1e308"), ("maxDuration", '"Infinity"'), ("maxDuration", "1e400"), ("maxDuration", "NaN"),
    ("maxDuration", "604801"), ("seekSecond", "1e308"), ("seekSecond", '"inf"'), ("seekSecond", "-0.5"),
])
def test_durations_are_finite_and_bounded(name, raw):
    body = json.dumps(GOOD)[:-1] + f', "{name}": {raw}}}'  # raw JSON: 1e400 and NaN as a client sends them
    event = {**gateway_event(GOOD), "body": body}
    response = main_handler(event, {})
    assert response["statusCode"] == 400, response
    message = json.loads(response["body"])["message"]
    assert f"{name}:" in message and "Traceback" not in message


def test_a_week_of_media_is_the_longest_push():
    assert PushParams.model_validate({**GOOD, "maxDuration": 604800}).maxDuration == 604800.0


@pytest.mark.parametrize("src, why", [("http://[::1", "Invalid IPv6 URL"), ("http://h:99999/a.mp4", "Port out of range"),
                                      ("http://h:0/a.mp4", "port 0"), ("rtmp://h:abc/live", "Port could not be cast")])
def test_a_video_src_urllib_cannot_parse_is_a_400_naming_it(src, why):
    response = main_handler(gateway_event({**GOOD, "videoSrc": src}), {})
    assert response["statusCode"] == 400
    message = json.loads(response["body"])["message"]
    assert message.startswith("invalid parameters: videoSrc: is not a valid URL") and why in message


def test_a_video_src_query_never_reaches_the_answer_or_the_log(capsys):
    src = "http://[::1/a.mp4?auth_key=token-value-123"
    response = main_handler(gateway_event({**GOOD, "videoSrc": src}), {})
    assert "token-value-123" not in response["body"] and "token-value-123" not in capsys.readouterr().err
