"""The console's HTTP side without a browser: bad input and stale references get an answer that
says what is wrong (never a stack trace), the buttons' paths validate as the APIs do, the watch
stream starts at a key frame, and the page loads nothing from outside the machine."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator.cloud import LocalCloud
from shared.room import wire

from .conftest import APP, push_params, wait_for

STALE_RUN = "0d7c9f1e-0000-4000-8000-000000000000"


def _post(info: dict[str, Any], path: str, json: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(info["console"] + path.lstrip("/"), json=json, timeout=15, **kwargs)


def _get(info: dict[str, Any], path: str, **kwargs: Any) -> requests.Response:
    return requests.get(info["console"] + path.lstrip("/"), timeout=15, **kwargs)


def _error(r: requests.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert error["code"] == code, error
    assert "Traceback" not in r.text
    return str(error["message"])


def test_the_json_line_names_the_console_and_the_page_loads_nothing_from_outside(info: dict[str, Any]):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", info["console"])
    index = _get(info, "/")
    assert index.status_code == 200 and "text/html" in index.headers["Content-Type"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', index.text)
    assert assets and all(a.startswith(("/static/", "#", "data:")) for a in assets), assets
    for asset in [a for a in assets if a.startswith("/static/")] + ["/static/watch.js"]:
        text = _get(info, asset).text
        assert not re.search(r"https?://|//cdn|@import", text), f"{asset} refers outside the machine"
        assert not re.search(r"""import [^;]*from\s+["'](?!/static/)""", text), f"{asset} imports from elsewhere"


def test_a_stale_run_is_a_404_that_says_so(info: dict[str, Any]):
    assert "No async event" in _error(_get(info, f"/api/runs/{STALE_RUN}"), 404, "ResourceNotFound.AsyncEvent")
    _error(_get(info, f"/api/runs/{STALE_RUN}/log"), 404, "ResourceNotFound.AsyncEvent")
    assert STALE_RUN in _error(_post(info, f"/api/runs/{STALE_RUN}/terminate", {"grace": True}), 404,
                               "ResourceNotFound.AsyncEvent")
    _error(_get(info, "/api/nothing-here"), 404, "NotFound")


def test_terminate_validates_and_refuses_a_run_that_is_over(info: dict[str, Any], start: Any, cloud: LocalCloud):
    reqid = start("push_stream", {"videoSrc": "", "sdkAppId": APP})  # invalid: the run fails at once
    assert cloud.scf is not None and cloud.scf.get(reqid).done.wait(20)
    run = _get(info, f"/api/runs/{reqid}").json()
    assert run["status"] == "FAILED" and run["result"]["reason"] == "invalid_parameters"
    _error(_post(info, f"/api/runs/{reqid}/terminate", {}), 400, "InvalidParameter.GraceShutdown")
    _error(_post(info, f"/api/runs/{reqid}/terminate", {"grace": "yes"}), 400, "InvalidParameter.GraceShutdown")
    # The same answer TerminateAsyncEvent gives.
    assert "only a RUNNING event" in _error(_post(info, f"/api/runs/{reqid}/terminate", {"grace": False}), 409,
                                            "FailedOperation.AsyncEventStatus")
    # Its log, once over, is all there, and the stream ends with the run.
    log = _get(info, f"/api/runs/{reqid}/log").text
    assert "event: end" in log and "END RequestId" in log


def test_room_buttons_validate_as_the_trtc_api_does(info: dict[str, Any]):
    _error(_post(info, "/api/rooms/remove-user", {"sdkAppId": APP, "roomId": 987654, "userIds": ["x"]}), 404,
           "FailedOperation.RoomNotExist")
    _error(_post(info, "/api/rooms/dismiss", {"sdkAppId": APP, "roomId": 987654}), 404, "FailedOperation.RoomNotExist")
    _error(_post(info, "/api/rooms/dismiss", {"sdkAppId": APP, "roomId": "abc", "strRoom": True}), 404,
           "FailedOperation.RoomNotExist")
    _error(_post(info, "/api/rooms/remove-user", {"sdkAppId": APP, "roomId": 0, "userIds": ["x"]}), 400,
           "InvalidParameter.RoomId")
    _error(_post(info, "/api/rooms/remove-user", {"sdkAppId": APP, "roomId": 5, "userIds": []}), 400,
           "InvalidParameter.UserIds")
    _error(_post(info, "/api/rooms/dismiss", {"sdkAppId": 1, "roomId": 5}), 400, "InvalidParameter.SdkAppId")
    _error(_post(info, "/api/rooms/dismiss", {"roomId": 5}), 400, "MissingParameter.SdkAppId")


def test_posts_must_be_json_from_the_consoles_own_page(info: dict[str, Any]):
    path = info["console"] + "api/rooms/dismiss"
    _error(requests.post(path, data="sdkAppId=1", timeout=5,
                         headers={"Content-Type": "application/x-www-form-urlencoded"}), 415, "UnsupportedMediaType")
    _error(requests.post(path, json={"sdkAppId": APP, "roomId": 5}, timeout=5,
                         headers={"Origin": "http://evil.example"}), 403, "Forbidden")
    _error(requests.get(info["console"] + "api/runs", headers={"Host": "rebound.example:80"}, timeout=5), 403,
           "Forbidden")
    _error(requests.post(path, data="{not json", headers={"Content-Type": "application/json"}, timeout=5), 400,
           "InvalidParameter")
    _error(_post(info, "/api/rooms/dismiss", [1, 2]), 400, "InvalidParameter")
    origin = info["console"].rstrip("/")
    _error(requests.post(path, json={"sdkAppId": APP, "roomId": 5}, headers={"Origin": origin}, timeout=5), 404,
           "FailedOperation.RoomNotExist")  # the console's own page gets through to the API's answer


def test_watch_refuses_what_cannot_be_watched(info: dict[str, Any]):
    _error(_get(info, "/api/watch?app=x&room=1&user=u"), 400, "InvalidParameter")
    _error(_get(info, "/api/watch?app=1400000001&room=0&user=u"), 400, "InvalidParameter")
    assert "not in room 31337" in _error(_get(info, "/api/watch?app=1400000001&room=31337&str=0&user=u"), 404,
                                         "FailedOperation.UserNotExist")


def test_the_watch_stream_joins_mid_stream_at_a_key_frame_with_its_codec(info: dict[str, Any], start: Any,
                                                                          gray_clip: Path, cloud: LocalCloud):
    start("push_stream", push_params(gray_clip, 411, repeatNum=-1))
    rooms = cloud.rooms
    assert rooms is not None
    wait_for(lambda: any(m["video"] for r in rooms.rooms.snapshot() if r["roomId"] == 411 for m in r["members"]),
             20, "the pusher to publish")
    wait_for(lambda: (lambda f: f and f["video"] and f["video"]["fps"] > 10)(
        cloud.console.tap.figures((APP, "i:411", "pusher"))), 10, "video in the room")  # type: ignore[union-attr]
    with requests.get(info["console"] + "api/watch?app=1400000001&room=411&str=0&user=pusher", stream=True,
                      timeout=10) as r:
        assert r.status_code == 200
        decoder = wire.Decoder()
        messages: list[wire.Message] = []
        for chunk in r.iter_content(4096):
            messages += decoder.feed(chunk)
            if sum(1 for m in messages if m.type == "v") >= 30 and any(m.type == "a" for m in messages):
                break
    types = [m.type for m in messages]
    assert types[0] == "hello"
    video = [m for m in messages if m.type in ("v", "vconfig")]
    assert video[0].type == "vconfig" and video[0].header["codec"].startswith("avc1.42")
    assert (video[0].header["width"], video[0].header["height"]) == (320, 240)
    assert video[1].header["k"] == 1 and b"\x00\x00\x01\x67" in video[1].payload[:64]  # SPS in band
    audio = next(m for m in messages if m.type == "a")
    assert audio.header["ch"] == 1 and audio.payload and isinstance(audio.header["w"], int)
    pts = [m.header["pts"] for m in messages if m.type == "v"]
    assert pts == sorted(pts)  # no B-frames reordered: decode order is presentation order
    wait_for(lambda: cloud.console.tap.watching() == 0, 5, "the watcher to be let go")  # type: ignore[union-attr]


def test_objects_are_served_with_ranges_and_a_missing_one_says_so(info: dict[str, Any], cloud: LocalCloud):
    from emulator.clients import cos_client

    cos = cos_client(info)
    data = bytes(range(256)) * 40
    cos.put_object(Bucket=info["cos"]["bucket"], Key="console-test/a.mp3", Body=data)
    listed = _get(info, "/api/recordings").json()["buckets"]
    objects = {o["key"]: o for o in listed[0]["objects"]}
    assert listed[0]["bucket"] == info["cos"]["bucket"]
    assert objects["console-test/a.mp3"]["size"] == len(data) and objects["console-test/a.mp3"]["play"] == "audio"
    url = f"/api/cos/{info['cos']['bucket']}/console-test/a.mp3"
    whole = _get(info, url)
    assert whole.status_code == 200 and whole.content == data and whole.headers["Content-Type"] == "audio/mpeg"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = _get(info, url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    _error(_get(info, f"/api/cos/{info['cos']['bucket']}/console-test/gone.mp4"), 404, "NoSuchKey")
    _error(_get(info, "/api/cos/other-bucket-1250000000/console-test/a.mp3"), 404, "NoSuchKey")


def test_usersig_and_start_refuse_bad_input(info: dict[str, Any]):
    _error(_get(info, "/api/usersig?userId="), 400, "InvalidParameter.UserId")
    _error(_get(info, "/api/usersig?userId=" + "x" * 33), 400, "InvalidParameter.UserId")
    assert _get(info, "/api/usersig?userId=alice").json()["sdkAppId"] == APP
    _error(_post(info, "/api/start/no_such_function", {}), 404, "ResourceNotFound.Function")


def test_a_console_bug_is_an_error_message_not_a_stack_trace(info: dict[str, Any], monkeypatch: pytest.MonkeyPatch):
    from emulator.console import views

    def broken(*args: Any) -> Any:
        raise RuntimeError("something the console did not expect")

    monkeypatch.setattr(views, "runs_list", broken)
    message = _error(_get(info, "/api/runs"), 500, "InternalError")
    assert "something the console did not expect" in message


def test_slices_snapshots_and_trimmed_copies_are_named_and_served_as_such(info: dict[str, Any], cloud: LocalCloud):
    """record_stream's issue-21 outputs: the Recordings page shows snapshots as pictures and plays
    slices and trimmed copies."""
    from emulator.clients import cos_client

    cos = cos_client(info)
    bucket, stem = info["cos"]["bucket"], "console-slices/1400000001_7_alice_20260101T000000000Z"
    jpeg = b"\xff\xd8\xff\xe0" + bytes(100) + b"\xff\xd9"
    for key, body in ((f"{stem}/images/0.jpg", jpeg), (f"{stem}/audio/0.mp3", b"\xff\xfb" + bytes(100)),
                      (f"{stem}/audio/1.wav", b"RIFF" + bytes(100)),
                      (f"{stem}_trimmed.mp4", bytes(100)), (f"{stem}.mp4", bytes(100))):
        cos.put_object(Bucket=bucket, Key=key, Body=body)
    objects = {o["key"]: o for o in _get(info, "/api/recordings").json()["buckets"][0]["objects"]}
    assert (objects[f"{stem}/images/0.jpg"]["play"], objects[f"{stem}/images/0.jpg"]["kind"]) == ("image", "snapshot")
    assert (objects[f"{stem}/audio/0.mp3"]["play"], objects[f"{stem}/audio/0.mp3"]["kind"]) == ("audio", "slice")
    assert (objects[f"{stem}/audio/1.wav"]["play"], objects[f"{stem}/audio/1.wav"]["kind"]) == ("audio", "slice")
    assert _get(info, f"/api/cos/{bucket}/{stem}/audio/1.wav").headers["Content-Type"] == "audio/wav"
    assert (objects[f"{stem}_trimmed.mp4"]["play"], objects[f"{stem}_trimmed.mp4"]["kind"]) == ("video", "trimmed")
    assert objects[f"{stem}.mp4"]["kind"] is None
    served = _get(info, f"/api/cos/{bucket}/{stem}/images/0.jpg")
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg" and served.content == jpeg
