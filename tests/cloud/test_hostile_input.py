"""Hostile bodies through the local cloud with real clients: the run record (run.json, /_runs/<id>)
keeps no secret whatever the body's encoding, and no body or Invoke event ends in a traceback or an
InternalError."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.scf.v20180416 import models

from emulator.cloudapi import CloudApi
from emulator.scf import FunctionConfig, Gateway, Scf, register

from .conftest import SECRET_ID, SECRET_KEY, scf_client, until

REPO = Path(__file__).resolve().parents[2]
PUSH = {"videoSrc": "/nonexistent/clip.mp4", "sdkAppId": 1400000001, "roomId": 1234, "userId": "pusher"}


@pytest.fixture
def functions(tmp_path: Path):
    """The real push_stream and record_stream behind the gateway. Every body here is refused at
    validation, so the room backend only has to be configured, not reachable."""
    api = CloudApi(SECRET_ID, SECRET_KEY).start()
    env = {"ROOM_BACKEND": "local", "LOCAL_ROOM_ADDRESS": "127.0.0.1:9", "CALLBACK_ALLOWLIST": "127.0.0.0/8"}
    scf = Scf(tmp_path / "runs", [FunctionConfig(name, REPO / "functions" / name, time_limit_ms=60_000,
                                                 environment=env, sync=name == "push_control")
                                  for name in ("push_stream", "record_stream", "push_control")], max_concurrency=2)
    register(api, scf)
    gateway = Gateway(scf).start()
    yield api, scf, gateway
    gateway.stop()
    scf.shutdown(2.0)
    api.stop()


def _post(gateway: Gateway, function: str, body: bytes) -> tuple[dict, str, str]:
    """POST `body`; wait for the run; (its record as /_runs serves it, run.json as text, its log)."""
    r = requests.post(f"{gateway.url}/{function}", data=body, headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 200, r.text
    reqid = r.headers["x-scf-reqid"]
    record = until(lambda: (lambda d: d if d["status"] != "RUNNING" else None)(
        requests.get(f"{gateway.url}/_runs/{reqid}", timeout=5).json()), 60, f"run {reqid}")
    served = requests.get(f"{gateway.url}/_runs/{reqid}", timeout=5).text
    log = requests.get(f"{gateway.url}/_runs/{reqid}/log", timeout=5).text
    return record, served + Path(record["logFile"]).with_name("run.json").read_text(), log


def _answer(record: dict) -> tuple[int, str]:
    assert record["error"] is None, record["error"]  # the handler returned: no traceback, no crash
    return record["result"]["statusCode"], json.loads(record["result"]["body"])["message"]


def test_a_body_with_one_byte_that_is_not_utf8_keeps_no_secret_in_the_record(functions):
    _, _, gateway = functions
    body = json.dumps({**PUSH, "userSig": "usersig-kept-nowhere", "redisPassword": "redis-pw-kept-nowhere",
                       "userId": "caf\xe9"}, ensure_ascii=False).encode("latin-1")  # one byte 0xE9
    record, kept, log = _post(gateway, "push_stream", body)
    assert record["event"]["body"].startswith("*** (not kept: body is marked base64 but does not decode")
    for secret in ("usersig-kept-nowhere", "redis-pw-kept-nowhere"):
        assert secret not in kept and secret not in log
    status, message = _answer(record)
    assert status == 400 and message.startswith("body is marked base64")


def test_a_key_spelled_with_a_json_escape_is_redacted_as_the_function_reads_it(functions):
    _, _, gateway = functions
    body = ('{"videoSrc": "/nonexistent/clip.mp4", "sdkAppId": 1400000001, "roomId": 1234, "userId": "pusher", '
            '"user\\u0053ig": "escaped-usersig-value", "volume": true}').encode()
    record, kept, log = _post(gateway, "push_stream", body)
    assert json.loads(record["event"]["body"])["userSig"] == "***"
    assert "escaped-usersig-value" not in kept and "escaped-usersig-value" not in log
    assert _answer(record) == (400, "invalid parameters: volume: must be a number, not true/false (got True)")


def test_a_callback_query_is_in_neither_the_log_nor_the_record(functions):
    _, _, gateway = functions
    body = json.dumps({"SdkAppId": 1400000001, "RoomId": 5, "UserId": "rec", "UserSig": "sig-not-kept-0001",
                       "CosConfig": {"Region": "ap-guangzhou", "Bucket": "b-1250000000", "Path": "/./x"},
                       "Callback": "http://127.0.0.1:99999/cb?sig=callback-sig-not-kept"}).encode()
    record, kept, log = _post(gateway, "record_stream", body)
    assert json.loads(record["event"]["body"])["Callback"] == "http://127.0.0.1:99999/cb?***"
    assert "callback-sig-not-kept" not in kept and "callback-sig-not-kept" not in log
    status, message = _answer(record)
    assert status == 400 and "CosConfig.Path: must not contain '.'" in message and "Callback: is not a valid URL" in message


@pytest.mark.parametrize("body, expected", [
    (b"[" * 50_000, "body: nested too deeply"),
    (b'{"a":' * 1_500 + b"1" + b"}" * 1_500, "body: nested too deeply"),
    (b'{"sdkAppId": ' + b"7" * 5_000 + b"}", "body: number too large"),
])
def test_hostile_json_through_the_gateway_is_a_400_without_a_traceback(functions, body, expected):
    _, _, gateway = functions
    record, kept, log = _post(gateway, "push_stream", body)
    status, message = _answer(record)
    assert status == 400 and message.startswith(expected)
    assert "Traceback" not in log and expected in log
    assert record["event"]["body"].startswith(f"*** (not kept: {expected}")


@pytest.mark.parametrize("context, expected", [
    ("[" * 900 + "]" * 900, "nested too deeply"),
    ('{"a": ' * 900 + "1" + "}" * 900, "nested too deeply"),
    ('{"sdkAppId": ' + "7" * 5_000 + "}", "number too large"),
])
def test_a_hostile_invoke_event_is_an_invalid_parameter_not_an_internal_error(functions, context, expected):
    api, scf, _ = functions
    req = models.InvokeRequest()
    req.FunctionName = "push_stream"
    req.InvocationType = "Event"
    req.ClientContext = context
    with pytest.raises(TencentCloudSDKException) as caught:
        scf_client(api.endpoint).Invoke(req)
    assert caught.value.code == "InvalidParameterValue.ClientContext"
    assert expected in caught.value.message
    assert scf.runs() == []  # nothing started


def test_an_invoke_with_a_boolean_room_is_refused_by_the_function(functions):
    api, _, _ = functions
    req = models.InvokeRequest()
    req.FunctionName = "push_stream"
    req.InvocationType = "RequestResponse"
    req.ClientContext = json.dumps({**PUSH, "roomId": True, "userSig": "sig-value-0001"})
    result = scf_client(api.endpoint).Invoke(req).Result
    answer = json.loads(result.RetMsg)
    assert answer["reason"] == "invalid_parameters" and "roomId: must be a number" in answer["message"]


def test_a_nul_byte_in_video_src_is_a_400_naming_it_not_an_internal_error(functions):
    _, _, gateway = functions
    record, _, log = _post(gateway, "push_stream", json.dumps({**PUSH, "videoSrc": "/tmp/a\u0000b.mp4",
                                                                "userSig": "sig-value-0001"}).encode())
    status, message = _answer(record)
    assert status == 400 and "videoSrc: must not contain a NUL byte" in message
    assert "internal_error" not in log
    r = requests.post(f"{gateway.url}/push_control", timeout=30,
                      json={"requestId": "r-1", "action": "switch", "videoSrc": ["ok.mp4", "a\u0000b.mp4"]})
    assert r.status_code == 400 and "videoSrc: item 2: must not contain a NUL byte" in r.json()["message"]


@pytest.mark.parametrize("function", ["push_stream", "push_control"])
def test_a_lone_surrogate_in_a_body_is_a_400_saying_the_body_is_not_utf8_json(functions, function):
    _, _, gateway = functions
    body = json.dumps({**PUSH, "videoSrc": "\ud800", "userSig": "sig-value-0001"}).encode()  # "\\ud800": ASCII
    if function == "push_control":
        body = json.dumps({"requestId": "r-1", "action": "switch", "videoSrc": "\ud800"}).encode()
        r = requests.post(f"{gateway.url}/{function}", data=body, timeout=30)
        status, message = r.status_code, r.json()["message"]
    else:
        record, kept, _ = _post(gateway, function, body)
        status, message = _answer(record)
        assert record["event"]["body"].startswith("*** (not kept: body is not valid UTF-8 JSON text")
    assert status == 400 and message.startswith("body is not valid UTF-8 JSON text: videoSrc holds a lone surrogate")
