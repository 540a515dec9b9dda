"""record_stream's parameters: what can be checked before a recording starts is refused at once,
with a 400 naming the field, instead of failing at the upload after the whole recording."""
from __future__ import annotations

import json

import pytest

from functions.record_stream.index import main_handler
from shared.contracts.record import RecordParams
from shared.rules.record import normalize_prefix

COS = {"Region": "ap-guangzhou", "Bucket": "records-1250000000", "Path": "/trtc"}
GOOD = {"SdkAppId": 1400000001, "RoomId": 5, "UserId": "recorder", "UserSig": "sig-value-that-is-secret",
        "CosConfig": COS}


@pytest.fixture(autouse=True)
def _room_backend(monkeypatch):
    # Validation answers before any room is entered; the backend only has to be configured.
    monkeypatch.setenv("ROOM_BACKEND", "local")
    monkeypatch.setenv("LOCAL_ROOM_ADDRESS", "127.0.0.1:9")


def gateway_event(params: dict) -> dict:
    return {"httpMethod": "POST", "path": "/record_stream", "headers": {"content-type": "application/json"},
            "requestContext": {"stage": "release"}, "queryString": {}, "body": json.dumps(params),
            "isBase64Encoded": False}


def refused(params: dict) -> str:
    response = main_handler(gateway_event(params), {"request_id": "req-params"})
    assert response["statusCode"] == 400, response
    body = json.loads(response["body"])
    assert body["reason"] == "invalid_parameters"
    return body["message"]


@pytest.mark.parametrize("path", ["/./x", ".", "a/./b", "/a/..", "a\\b", "a\x00b", "rec\nords", "\x7f",
                                  "录" * 201])  # 603 bytes
def test_a_path_object_key_would_refuse_is_refused_before_recording(path):
    assert "CosConfig.Path: must" in refused({**GOOD, "CosConfig": {**COS, "Path": path}})
    with pytest.raises(ValueError, match="CosConfig.Path"):  # the same rule, at upload
        normalize_prefix(path)


@pytest.mark.parametrize("path", ["/", "/trtc", "trtc/2024/", "a.b/c..d", "录制/课堂"])
def test_a_path_object_key_takes_is_accepted(path):
    assert RecordParams.model_validate({**GOOD, "CosConfig": {**COS, "Path": path}}).CosConfig.Path == path
    normalize_prefix(path)


@pytest.mark.parametrize("given, missing", [({"SecretId": "AKIDgivenAlone0000"}, "is required with SecretId"),
                                            ({"SecretKey": "keyGivenAlone0000"}, "needs SecretId as well")])
def test_half_a_key_pair_is_refused_before_recording(given, missing, capsys):
    message = refused({**GOOD, "CosConfig": {**COS, **given}})
    assert f"CosConfig.SecretKey: {missing}" in message
    out = capsys.readouterr().err
    assert "GivenAlone" not in message and "GivenAlone" not in out


def test_both_keys_or_neither_are_accepted():
    both = RecordParams.model_validate({**GOOD, "CosConfig": {**COS, "SecretId": "AKIDx0000000", "SecretKey": "k0000000"}})
    assert both.CosConfig.SecretKey is not None
    assert RecordParams.model_validate(GOOD).CosConfig.SecretId is None


@pytest.mark.parametrize("url, why", [("http://127.0.0.1:99999/cb", "Port out of range"),
                                      ("http://127.0.0.1:0/cb", "port 0"),
                                      ("http://[::1/cb", "Invalid IPv6 URL")])
def test_a_callback_url_that_does_not_parse_is_refused(url, why):
    message = refused({**GOOD, "Callback": url})
    assert "Callback: is not a valid URL" in message and why in message


def test_a_callback_query_is_never_shown(capsys, monkeypatch):
    monkeypatch.setenv("CALLBACK_ALLOWLIST", "")
    response = main_handler(gateway_event({**GOOD, "Callback": "http://10.1.2.3/cb?sig=callback-signature-1"}), {})
    assert response["statusCode"] == 400
    assert "Callback:" in response["body"] and "http://10.1.2.3/cb?***" in response["body"]
    assert "callback-signature-1" not in response["body"] + capsys.readouterr().err


@pytest.mark.parametrize("name", ["SdkAppId", "RoomId", "MaxIdleTime", "MaxDuration", "MaxMediaFileDuration",
                                  "SegmentDuration", "AudioChannels"])
def test_a_boolean_is_not_a_number(name):
    assert f"{name}: must be a number, not true/false" in refused({**GOOD, name: True})


@pytest.mark.parametrize("value", ["Infinity", "NaN", "1e400"])
def test_a_split_length_is_finite(value):
    assert "MaxMediaFileDuration:" in refused({**GOOD, "MaxMediaFileDuration": value})


def test_a_failing_callback_logs_no_query_even_in_the_http_client_s_error(capsys):
    from shared.record.callback import post_result

    url = "http://127.0.0.1:9/cb?sig=callback-signature-2"  # nothing listens on port 9
    params = RecordParams.model_validate({**GOOD, "Callback": url})
    assert post_result(params.Callback, {"SdkAppId": 1}, tries=3, backoff=0.01, max_backoff=0.01) is False
    err = capsys.readouterr().err
    assert "callback failed" in err and "http://127.0.0.1:9/cb?***" in err
    assert "callback-signature-2" not in err


@pytest.mark.parametrize("given, expected", [({}, ("mp4", 10, 1)),
                                             ({"OutputFormat": "HLS", "SegmentDuration": "2", "AudioChannels": "2"},
                                              ("hls", 2, 2)),
                                             ({"OutputFormat": 1, "SegmentDuration": 60}, ("hls+mp4", 60, 1)),
                                             ({"OutputFormat": "3"}, ("mp4", 10, 1)),
                                             ({"OutputFormat": 0}, ("hls", 10, 1))])
def test_output_format_segment_duration_and_channels(given, expected):
    p = RecordParams.model_validate({**GOOD, **given})
    assert (p.OutputFormat, p.SegmentDuration, p.AudioChannels) == expected


@pytest.mark.parametrize("field, value", [("OutputFormat", "flv"), ("OutputFormat", 2), ("OutputFormat", True),
                                          ("OutputFormat", "mp3"), ("SegmentDuration", 1), ("SegmentDuration", 61),
                                          ("SegmentDuration", 0), ("SegmentDuration", "ten"), ("AudioChannels", 3),
                                          ("AudioChannels", 0)])
def test_bad_output_settings_are_a_400_naming_the_field(field, value):
    message = refused({**GOOD, field: value})
    assert f"{field}:" in message, message
    if field == "OutputFormat":
        assert '"mp4", "hls", "hls+mp4"' in message
