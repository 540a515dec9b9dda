"""The handler envelope: gateway events and plain parameters, one clear error naming every bad field."""
import base64
import json

import pytest
from pydantic import BaseModel, Field

from shared.failures import Failure
from shared.gateway import handle, redact_event


class Params(BaseModel):
    videoSrc: str
    sdkAppId: int
    redis: bool = False
    volume: int = Field(100, ge=0, le=100)
    userSig: str


def work(params, inv, log):
    return {"status": "completed", "echo": params.model_dump(exclude={"userSig"}), "requestId": inv.request_id}


def gateway_event(body, b64=False, headers=None):
    text = json.dumps(body) if not isinstance(body, str) else body
    if b64:
        text = base64.b64encode(text.encode()).decode()
    return {"httpMethod": "POST", "path": "/push_stream", "body": text, "isBase64Encoded": b64,
            "headers": headers or {"content-type": "application/json"}, "queryString": {},
            "requestContext": {"requestId": "r1", "stage": "release", "sourceIp": "127.0.0.1"}}


GOOD = {"videoSrc": "a.mp4", "sdkAppId": "1400000001", "redis": "true", "userSig": "sig-value-123"}


def test_plain_parameters_return_the_plain_result():
    out = handle(GOOD, {"request_id": "req-1"}, function_name="f", model=Params, work=work)
    assert out["status"] == "completed" and out["requestId"] == "req-1"
    assert out["echo"]["sdkAppId"] == 1400000001 and out["echo"]["redis"] is True


def test_gateway_event_gets_a_gateway_response_and_strings_are_coerced():
    out = handle(gateway_event(GOOD), {}, function_name="f", model=Params, work=work)
    assert out["statusCode"] == 200
    assert json.loads(out["body"])["echo"] == {"videoSrc": "a.mp4", "sdkAppId": 1400000001, "redis": True, "volume": 100}


def test_base64_body():
    out = handle(gateway_event(GOOD, b64=True), {}, function_name="f", model=Params, work=work)
    assert out["statusCode"] == 200


def test_every_bad_field_is_named_in_one_400(capsys):
    out = handle(gateway_event({"sdkAppId": "abc", "volume": 300, "userSig": "s3cret-sig"}), {},
                 function_name="f", model=Params, work=work)
    assert out["statusCode"] == 400
    msg = json.loads(out["body"])["message"]
    assert "videoSrc: is required" in msg and "sdkAppId:" in msg and "volume:" in msg
    assert "s3cret-sig" not in capsys.readouterr().err


def test_invalid_json_body_is_a_400_not_a_traceback(capsys):
    out = handle(gateway_event("{not json"), {}, function_name="f", model=Params, work=work)
    assert out["statusCode"] == 400
    assert "body is not valid JSON" in json.loads(out["body"])["message"]
    assert "Traceback" not in capsys.readouterr().err


def test_async_invoke_with_bad_params_returns_failed_result():
    out = handle({"videoSrc": 5}, {}, function_name="f", model=Params, work=work)
    assert out["status"] == "failed" and out["reason"] == "invalid_parameters"
    assert "sdkAppId: is required" in out["message"]


def test_user_error_and_unexpected_error_are_reported_not_raised(capsys):
    def refuses(p, i, l):
        raise Failure("videoSrc a.mp4: 404 Not Found", "source_error")

    def crashes(p, i, l):
        raise ZeroDivisionError("boom")

    assert handle(GOOD, {}, function_name="f", model=Params, work=refuses)["message"] == "videoSrc a.mp4: 404 Not Found"
    out = handle(GOOD, {}, function_name="f", model=Params, work=crashes)
    assert out["reason"] == "internal_error" and "ZeroDivisionError" in out["message"]
    err = capsys.readouterr().err
    assert all(json.loads(line)["level"] == "error" for line in err.strip().splitlines())


def test_form_encoded_body_and_query_string():
    ev = gateway_event("videoSrc=a.mp4&sdkAppId=1400000001&userSig=abcd",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    ev["queryString"] = {"redis": "1"}
    out = json.loads(handle(ev, {}, function_name="f", model=Params, work=work)["body"])
    assert out["echo"]["redis"] is True and out["echo"]["videoSrc"] == "a.mp4"


# --- bodies no parser should choke on ----------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ("[" * 50_000, "body: nested too deeply"),
    ('{"a":' * 1_500 + "1" + "}" * 1_500, "body: nested too deeply"),
    ('{"a":' * 900 + "1" + "}" * 900, "body: nested too deeply"),  # parses, but too deep to use
    ('{"sdkAppId": ' + "9" * 5_000 + "}", "body: number too large"),
])
def test_hostile_json_is_a_400_naming_the_body_not_a_traceback(body, expected, capsys):
    out = handle(gateway_event(body), {}, function_name="f", model=Params, work=work)
    assert out["statusCode"] == 400
    assert json.loads(out["body"])["message"].startswith(expected)
    err = capsys.readouterr().err
    assert "Traceback" not in err and expected in err


def test_a_deep_plain_event_is_refused_too():
    deep: dict = {}
    for _ in range(900):
        deep = {"a": deep}
    out = handle({**GOOD, "extra": deep}, {}, function_name="f", model=Params, work=work)
    assert out["reason"] == "invalid_parameters" and out["message"].startswith("parameters: nested too deeply")


def test_validation_messages_are_logged_as_written(capsys):
    handle(gateway_event({"videoSrc": "a.mp4", "sdkAppId": 1}), {}, function_name="f", model=Params, work=work)
    line = json.loads(capsys.readouterr().err)
    assert line["msg"] == "invalid parameters: userSig: is required"


def test_a_long_bad_value_is_quoted_short():
    out = handle({**GOOD, "sdkAppId": "x" * 5000}, {}, function_name="f", model=Params, work=work)
    assert "sdkAppId:" in out["message"] and len(out["message"]) < 300


# --- what a run record keeps of the event ----------------------------------------------------

def test_a_record_keeps_the_parsed_body_redacted_by_field():
    body = ('{"user\\u0053ig": "escaped-sig-value", "redisPassword": "pw-value-1", "videoSrc": '
            '"https://cdn.example.com/a.mp4?auth=tok-value-1", "sdkAppId": 1400000001}')
    kept = redact_event(gateway_event(body))
    text = json.dumps(kept)
    assert "escaped-sig-value" not in text and "pw-value-1" not in text and "tok-value-1" not in text
    assert json.loads(kept["body"]) == {"userSig": "***", "redisPassword": "***", "sdkAppId": 1400000001,
                                        "videoSrc": "https://cdn.example.com/a.mp4?***"}
    assert kept["isBase64Encoded"] is False and kept["requestContext"]["requestId"] == "r1"


def test_a_base64_body_is_decoded_before_it_is_redacted():
    kept = redact_event(gateway_event({**GOOD, "userSig": "b64-sig-value"}, b64=True))
    assert json.loads(kept["body"])["userSig"] == "***" and "b64-sig-value" not in json.dumps(kept)
    assert kept["isBase64Encoded"] is False


def test_a_body_that_does_not_parse_is_not_kept():
    raw = json.dumps({**GOOD, "userSig": "latin-sig-value", "videoSrc": "caf\xe9"}, ensure_ascii=False).encode("latin-1")
    event = gateway_event(base64.b64encode(raw).decode())
    event["isBase64Encoded"] = True
    kept = redact_event(event)
    assert "latin-sig-value" not in json.dumps(kept) and base64.b64encode(raw).decode() not in json.dumps(kept)
    assert kept["body"].startswith("*** (not kept: body is marked base64 but does not decode")
    assert redact_event(gateway_event('{"userSig": "cut-short-sig'))["body"].startswith("*** (not kept: body is not")


def test_a_form_body_is_kept_as_a_form_and_headers_by_name():
    ev = gateway_event("videoSrc=a.mp4&userSig=form-sig-value",
                       headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer x"})
    kept = redact_event(ev)
    assert kept["body"] == "videoSrc=a.mp4&userSig=%2A%2A%2A" and kept["headers"]["Authorization"] == "***"
