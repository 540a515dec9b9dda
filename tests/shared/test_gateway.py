"""The handler envelope: gateway events and plain parameters, one clear error naming every bad field."""
import base64
import json

from pydantic import BaseModel, Field

from shared.gateway import UserError, handle


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
        raise UserError("videoSrc a.mp4: 404 Not Found", "source_error")

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
