"""push_control's parameters and the Redis both push functions default to: a 400 naming every bad
field (before anything reaches a push), REDIS_URL as the default Redis (a call's own fields win),
and videoSrc as a playlist for push_stream."""
from __future__ import annotations

import json

import pytest

from functions.push_control.index import main_handler as control_handler
from functions.push_stream.index import main_handler as push_handler
from shared.contracts.control import ControlParams
from shared.contracts.push import PushParams
from shared.push.checkpoint import checkpoint_key
from shared.redis.address import RedisAddress, parse_redis_url
from shared.room import RoomRef

BY_ID = {"requestId": "3f1c9a0e-1111-2222-3333-444455556666"}
BY_USER = {"sdkAppId": 1400000001, "roomId": 1234, "userId": "pusher"}
PUSH = {"videoSrc": "/nonexistent/clip.mp4", "sdkAppId": "1400000001", "roomId": "1234", "userId": "pusher",
        "userSig": "sig-value-that-is-secret"}


def gateway_event(params: dict) -> dict:
    return {"httpMethod": "POST", "path": "/push_control", "headers": {"content-type": "application/json"},
            "requestContext": {"stage": "release"}, "queryString": {}, "body": json.dumps(params)}


def answer(params: dict) -> tuple[int, dict]:
    response = control_handler(gateway_event(params), {"request_id": "req-control"})
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture(autouse=True)
def _no_redis_url(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)


# --- 400 naming the field ------------------------------------------------------------------------

@pytest.mark.parametrize("body, named, why", [
    ({**BY_ID, "action": "jump"}, "action", "Input should be 'switch', 'enqueue', 'pause'"),
    ({**BY_ID}, "action", "is required"),
    ({**BY_ID, "action": "switch"}, "videoSrc", "is required for action switch"),
    ({**BY_ID, "action": "enqueue"}, "videoSrc", "is required for action enqueue"),
    ({**BY_ID, "action": "switch", "videoSrc": ["/a.mp4", "/b.mp4"]}, "videoSrc", "switch takes one source"),
    ({**BY_ID, "action": "enqueue", "videoSrc": []}, "videoSrc", "is an empty list"),
    ({**BY_ID, "action": "enqueue", "videoSrc": ["/a.mp4", ""]}, "videoSrc", "item 2: must not be empty"),
    ({**BY_ID, "action": "volume"}, "volume", "is required for action volume"),
    ({**BY_ID, "action": "volume", "volume": 101}, "volume", "less than or equal to 100"),
    ({**BY_ID, "action": "volume", "volume": -1}, "volume", "greater than or equal to 0"),
    ({**BY_ID, "action": "volume", "volume": True}, "volume", "must be a number, not true/false"),
    ({**BY_ID, "action": "pause", "volume": 50}, "volume", "does not apply to action pause"),
    ({**BY_ID, "action": "enqueue", "videoSrc": "/a.mp4", "seekSecond": 3}, "seekSecond",
     "does not apply to action enqueue (only to switch)"),
    ({**BY_ID, "action": "switch", "videoSrc": "/a.mp4", "seekSecond": -1}, "seekSecond", "greater than or equal"),
    ({**BY_ID, "action": "switch", "videoSrc": "http://10.1.2.3/x.mp4"}, "videoSrc", "is a private address"),
    ({**BY_ID, "action": "switch", "videoSrc": "http://169.254.169.254/latest"}, "videoSrc", "metadata"),
    ({**BY_ID, "action": "enqueue", "videoSrc": ["/a.mp4", "http://192.168.1.9/b.mp4"]}, "videoSrc",
     "item 2: host 192.168.1.9 is a private address"),
    ({**BY_ID, "action": "switch", "videoSrc": "http://[::1"}, "videoSrc", "is not a valid URL"),
    ({"action": "status"}, "sdkAppId", "is required when requestId is not given"),
    ({"sdkAppId": 1400000001, "roomId": 1234, "action": "status"}, "userId", "is required when requestId"),
    ({**BY_USER, "roomId": "bad/room", "action": "status"}, "roomId", "a string room id is"),
    ({**BY_USER, "userId": "a b", "action": "status"}, "userId", "letters, digits"),
    ({"requestId": "a b c", "action": "status"}, "requestId", "the push's request id"),
    ({**BY_ID, "action": "status", "redisPort": 99999}, "redisPort", "less than or equal to 65535"),
    ({**BY_ID, "action": "status", "redisHost": "no such host!"}, "redisHost", "host name or an IP address"),
    ({**BY_ID, "action": "status", "redis": True}, "redis", "is not a known parameter"),
    ({**BY_ID, "action": "status", "controlToken": "short"}, "controlToken", "must be 16..256 characters"),
    ({**BY_ID, "action": "status", "controlToken": "x" * 257}, "controlToken", "must be 16..256 characters"),
])
def test_bad_input_is_a_400_naming_the_field(body, named, why):
    status, got = answer(body)
    assert status == 400, got
    assert got["reason"] == "invalid_parameters"
    assert f"{named}:" in got["message"] and why in got["message"], got["message"]


def test_every_bad_field_is_named_at_once():
    status, got = answer({**BY_ID, "action": "pause", "volume": 300, "seekSecond": 1, "redisDb": 5000})
    assert status == 400
    for name in ("volume", "seekSecond", "redisDb"):
        assert f"{name}:" in got["message"], got["message"]


def test_a_valid_call_with_no_redis_anywhere_is_409_the_push_has_no_redis():
    # Nothing pushed can be controlled without a Redis: the call names none and REDIS_URL is unset.
    status, got = answer({**BY_ID, "action": "status", "controlToken": "a-token-of-the-caller"})
    assert status == 409 and got["reason"] == "no_redis"
    assert "REDIS_URL" in got["message"] and "redisHost" in got["message"]


def test_a_direct_invocation_gets_the_same_answer_as_a_plain_result():
    result = control_handler({**BY_ID, "action": "jump"}, {})
    assert result["status"] == "failed" and "action:" in result["message"]


def test_a_malformed_redis_url_is_a_configuration_error_at_start(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "http://:pw-secret-1234@cache:6379")
    status, got = answer({**BY_ID, "action": "status"})
    assert status == 500 and got["reason"] == "configuration_error"
    assert "REDIS_URL must look like redis://" in got["message"] and "pw-secret-1234" not in json.dumps(got)
    result = push_handler(PUSH, {})
    assert result["reason"] == "configuration_error" and "REDIS_URL" in result["message"]


def test_the_password_never_reaches_the_answer_or_the_log(capsys):
    status, got = answer({**BY_ID, "action": "status", "redisHost": "127.0.0.1", "redisPort": 1,
                          "redisPassword": "control-password-123", "controlToken": "control-token-456-secret"})
    assert status == 503 and got["reason"] == "redis_unavailable"
    err = capsys.readouterr().err
    for secret in ("control-password-123", "control-token-456-secret"):
        assert secret not in json.dumps(got) and secret not in err


# --- REDIS_URL: the default Redis of both push functions ------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("redis://cache.internal", RedisAddress("cache.internal", 6379, None, 0)),
    ("redis://:p%40ss@10.0.0.12:6380/3", RedisAddress("10.0.0.12", 6380, "p@ss", 3)),
    ("redis://[::1]:7000", RedisAddress("::1", 7000, None, 0)),
])
def test_redis_url_forms(url, expected):
    got = parse_redis_url(url)
    assert (got.host, got.port, got.password, got.db) == (expected.host, expected.port, expected.password, expected.db)


@pytest.mark.parametrize("url, why", [
    ("rediss://h:6379", "TLS is not supported"), ("redis://user:pw@h", "a user name is not supported"),
    ("redis://h:6379/9999", "the db must be a number"), ("redis://h:99999", "Port out of range"),
    ("redis://", "names no host"), ("redis://h/0?timeout=1", "no query string"), ("h:6379", "scheme"),
])
def test_a_bad_redis_url_says_what_is_wrong(url, why):
    with pytest.raises(ValueError) as e:
        parse_redis_url(url)
    assert why in str(e.value) and "REDIS_URL" in str(e.value)


def test_redis_url_is_the_default_when_a_call_names_no_redis(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:url-password-1@10.0.0.12:6380/2")
    p = PushParams.model_validate({**PUSH, "redis": True})  # no redisHost needed now
    assert (p.redisHost, p.redisPort, p.redisPassword.get_secret_value(), p.redisDb) == \
        ("10.0.0.12", 6380, "url-password-1", 2)
    c = ControlParams.model_validate({**BY_ID, "action": "status"})
    assert c.redis_address == RedisAddress("10.0.0.12", 6380, "url-password-1", 2)
    # A call's own db (or port, password) wins on REDIS_URL's host.
    assert ControlParams.model_validate({**BY_ID, "action": "status", "redisDb": 5}).redis_address.db == 5


def test_a_call_that_names_its_redis_never_gets_redis_url_s_password(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:url-password-1@10.0.0.12:6380/2")
    p = PushParams.model_validate({**PUSH, "redis": True, "redisHost": "10.9.9.9"})
    assert (p.redisHost, p.redisPort, p.redisPassword, p.redisDb) == ("10.9.9.9", 6379, None, 0)


def test_a_push_has_a_redis_with_redis_true_or_redis_url(monkeypatch):
    assert PushParams.model_validate(PUSH).redis_address() is None
    with_redis = PushParams.model_validate({**PUSH, "redis": True, "redisHost": "10.0.0.5"})
    assert with_redis.redis_address() == RedisAddress("10.0.0.5", 6379, None, 0)
    # redis false and a stray redisHost: no Redis (the seed's rule); REDIS_URL gives one.
    assert PushParams.model_validate({**PUSH, "redisHost": "10.0.0.5"}).redis_address() is None
    monkeypatch.setenv("REDIS_URL", "redis://10.0.0.7")
    assert PushParams.model_validate(PUSH).redis_address() == RedisAddress("10.0.0.7", 6379, None, 0)


def test_without_redis_url_redis_true_still_needs_redis_host():
    result = push_handler({**PUSH, "redis": True}, {})
    assert "redisHost: is required when redis is true (or set the function's REDIS_URL)" in result["message"]


# --- push_stream's videoSrc as a playlist --------------------------------------------------------

def test_video_src_may_be_a_playlist_each_entry_checked_like_one():
    p = PushParams.model_validate({**PUSH, "videoSrc": [" /a.mp4", "http://media.example.com/b.mp4"]})
    assert p.videoSrc == ["/a.mp4", "http://media.example.com/b.mp4"] and p.is_playlist
    assert p.sources == ["/a.mp4", "http://media.example.com/b.mp4"]
    single = PushParams.model_validate(PUSH)
    assert single.videoSrc == "/nonexistent/clip.mp4" and single.sources == ["/nonexistent/clip.mp4"]
    assert not single.is_playlist


@pytest.mark.parametrize("src, why", [
    ([], "videoSrc: is an empty list: give a source, or a list of at least one"),
    (["/a.mp4", "http://[::1"], "videoSrc: item 2: is not a valid URL"),
    (["/a.mp4", 5, ""], "videoSrc: item 2: must be a string (a URL or a path); item 3: must not be empty"),
    (["/a.mp4"] * 101, "at most 100"),
    ({"url": "/a.mp4"}, "videoSrc: must be a string"),
])
def test_a_bad_playlist_is_a_400_naming_the_entry(src, why):
    response = push_handler(gateway_event({**PUSH, "videoSrc": src}), {})
    assert response["statusCode"] == 400
    assert why in json.loads(response["body"])["message"]


def test_the_checkpoint_key_of_a_single_source_is_unchanged():
    # The key a push of one source has always used: a resumed push finds its old record.
    p = PushParams.model_validate(PUSH)
    assert checkpoint_key(p.sdkAppId, p.room, p.videoSrc) == \
        "trtc-push:1400000001:i:1234:" + __import__("hashlib").sha256(b"/nonexistent/clip.mp4").hexdigest()[:32]
    assert p.room == RoomRef(1234)
