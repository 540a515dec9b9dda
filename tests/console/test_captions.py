"""recognize_stream in the console, in a real browser: a student anchor speaks espeak-ng's speech in a
local room, the run started through the gateway recognises it with the emulator's ASR service
(pocketsphinx), and the page shows the words: captions under the anchor on Watch and Rooms, the
sentence in the run's transcript, and once the run has ended the COS clip and transcript files."""
from __future__ import annotations

import io
import json
import os
import wave
from typing import Any, Iterator

import pytest
import requests

from emulator.cloud import LocalCloud
from emulator.console.captions import parse_sentence, run_room
from emulator.trtc import usersig
from tests.recognize.conftest import Student

from .conftest import APP, wait_for

ROOM = 7301
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")  # a directory: the pages are saved there to look at


@pytest.fixture
def student(cloud: LocalCloud) -> Iterator[Student]:
    assert cloud.asr is not None
    cloud.asr.backend.pool.warm()  # the model loads once, not inside the test's deadlines
    s = Student(cloud, ROOM, "alice")
    s.start()
    yield s
    if s.room.closed is None:  # the test did not make it leave
        s.leave()


def recognize_params(info: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"SdkAppId": APP, "RoomId": ROOM, "UserId": "recognizer", "UserSig": usersig("recognizer"),
            "EngineModelType": "16k_en", "VadSilenceTime": 500, "MaxIdleTime": 2,
            "HotwordList": ["triangle", "square", "circle"],
            "CosConfig": {"SecretId": info["secretId"], "SecretKey": info["secretKey"], "Region": info["cos"]["region"],
                          "Bucket": info["cos"]["bucket"], "Path": "/console-captions"}, **extra}


def shot(page: Any, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_a_student_speaking_is_captioned_on_watch_and_rooms_and_listed_in_the_run_transcript(
        page: Any, start: Any, cloud: LocalCloud, info: dict[str, Any], student: Student):
    reqid = start("recognize_stream", recognize_params(info))
    assert cloud.asr is not None
    backend = cloud.asr.backend
    wait_for(lambda: backend.live(f"sdkappid {APP}"), 20, "the run's ASR connection for alice")

    page.goto(f"#/watch?app={APP}&room={ROOM}&str=0&user=alice")
    captions = page.locator("#captions")
    captions.wait_for()
    assert "No speech recognised yet" in captions.inner_text()
    # Every caption the page shows while she speaks, noted as it appears.
    page.evaluate("""() => { window.captionsSeen = [];
      new MutationObserver(() => document.querySelectorAll('#captions .caption').forEach((c) =>
        window.captionsSeen.push([c.className, c.querySelector('.said').textContent])))
        .observe(document.getElementById('captions'), { childList: true, subtree: true }); }""")
    student.say("i think it is a triangle")
    # The caption under the picture: the words alice said, as the run recognised them, live.
    latest = page.locator("#captions .caption.final.latest")
    wait_for(lambda: latest.count() and "triangle" in latest.inner_text(), 30, "alice's caption on the Watch page")
    said = latest.locator(".said").inner_text()
    assert "triangle" in said.split()
    # Before the sentence ended, the words heard so far were up already (the ASR session's unstable text).
    seen = page.evaluate("window.captionsSeen")
    first_final = next(i for i, (cls, _) in enumerate(seen) if "final" in cls)
    partials = [text for cls, text in seen[:first_final] if "partial" in cls]
    assert partials and any(t.strip("…") for t in partials), seen
    wait_for(lambda: page.locator("#captions .caption.partial").count() == 0, 5, "the partial caption to go")
    # A student publishes audio only: the page says so rather than wait for a picture.
    assert page.locator("#watch-status").inner_text() == "in the room; audio only (no picture published)"
    assert page.locator("canvas.watch").is_hidden()
    shot(page, "watch-captions")

    # Rooms: the same words under alice's row, and nothing under the recogniser's.
    page.goto("#/rooms")
    room = page.locator(f'[data-room="i:{ROOM}"]')
    row = room.locator('tr[data-captions-of="alice"]')
    row.wait_for(timeout=10_000)
    assert said in row.inner_text()
    assert room.locator('tr[data-captions-of="recognizer"]').count() == 0
    shot(page, "rooms-captions")

    # The run's page, while it runs: the sentence, its speaker and times, from the log as it is written.
    page.goto(f"#/runs/{reqid}")
    line = page.locator('#transcript tr[data-user="alice"]').filter(has_text="triangle")
    line.wait_for(timeout=10_000)
    cells = line.locator("td").all_inner_texts()
    assert cells[0] == "alice" and cells[1] == "0" and cells[4] == said
    start_s, end_s = (float(c.rstrip(" s")) for c in cells[2:4])
    assert 0 <= start_s < end_s

    # Alice leaves; with no anchor for MaxIdleTime the run ends, and the page turns to its result:
    # the same sentence, its clip in COS (a WAV as long as the sentence) and the transcript files.
    student.leave()
    page.locator("#run-status .status.FINISHED").wait_for(timeout=30_000)
    page.locator('#transcript a.clip').first.wait_for(timeout=10_000)
    assert "From the run's result" in page.locator("#transcript").inner_text()
    line = page.locator('#transcript tr[data-user="alice"]').filter(has_text="triangle")
    assert line.locator("td").nth(4).inner_text() == said
    base = info["console"].rstrip("/")
    clip = line.locator("a.clip").get_attribute("href")
    assert clip.startswith("/api/cos/") and clip.endswith("sentence-0000.wav")
    with wave.open(io.BytesIO(requests.get(base + clip, timeout=10).content)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert abs(seconds - (end_s - start_s)) < 0.15
    vtt = page.locator('#transcript-files a[data-kind="WebVTT"]').get_attribute("href")
    assert said in requests.get(base + vtt, timeout=10).text
    doc = json.loads(requests.get(base + page.locator('#transcript-files a[data-kind="JSON"]').get_attribute("href"),
                                  timeout=10).content)
    assert doc["UserId"] == "alice" and [s["Voice"] for s in doc["Sentences"]] == [said]
    shot(page, "run-transcript")


def test_captions_need_a_member_and_a_run_without_recognition_has_no_transcript(info: dict[str, Any],
                                                                                  start: Any, gray_clip: Any):
    base = info["console"].rstrip("/")
    r = requests.get(f"{base}/api/captions", params={"app": "x", "room": "1", "user": "alice"}, timeout=5)
    assert r.status_code == 400 and "captions needs app" in r.json()["error"]["message"]
    r = requests.get(f"{base}/api/captions", params={"app": APP, "room": "1", "user": "nobody"}, timeout=5)
    assert r.status_code == 200 and r.json() == {"userId": "nobody", "captions": []}
    from .conftest import push_params

    reqid = start("push_stream", push_params(gray_clip, 7302))
    r = requests.get(f"{base}/api/runs/{reqid}/transcript", timeout=5)
    assert r.status_code == 200 and r.json()["recognize"] is False


def test_the_start_form_starts_a_recognize_stream_run_with_hotwords_and_cos(page: Any, cloud: LocalCloud,
                                                                         info: dict[str, Any]):
    page.goto("#/start")
    page.locator("#recognize_stream-RoomId").fill("7303")
    page.locator("#recognize_stream-HotwordList").fill("triangle, square")
    page.locator("#recognize_stream-Path").fill("/from-the-form")
    page.locator("#recognize_stream-EngineModelType").select_option("16k_en")
    body = wait_for(lambda: (lambda b: b if b.get("HotwordList") and b.get("CosConfig") and b["UserSig"] else None)(
        json.loads(page.locator("#recognize_stream-body").input_value())), 5, "the body to follow the form")
    assert body["RoomId"] == 7303 and body["UserId"] == "recognizer" and body["HotwordList"] == ["triangle", "square"]
    assert body["CosConfig"] == {"Region": info["cos"]["region"], "Bucket": info["cos"]["bucket"], "Path": "/from-the-form"}
    assert body["EngineModelType"] == "16k_en" and body["VadSilenceTime"] == 800 and "Callback" not in body
    page.locator("#form-recognize_stream button.send").click()
    link = page.locator("#recognize_stream-answer a.reqid")
    link.wait_for()
    reqid = link.inner_text()
    try:
        link.click()
        page.locator("#run-head").wait_for()
        assert "recognize_stream" in page.locator("#run-head").inner_text()
        # The run is in its room, listening: its page has a transcript, empty so far.
        page.locator("#transcript").wait_for()
        wait_for(lambda: "Nothing recognised yet" in page.locator("#transcript").inner_text(), 10, "an empty transcript")
    finally:
        assert cloud.scf is not None
        if not cloud.scf.get(reqid).done.is_set():
            cloud.scf.terminate("recognize_stream", reqid, grace=False)


def test_a_run_names_its_room_as_the_function_reads_it_and_only_sentence_lines_are_sentences():
    import base64

    params = {"SdkAppId": APP, "RoomId": 12, "StrRoomId": "ignored"}
    assert run_room({"body": json.dumps(params)}) == (APP, "i:12")
    assert run_room({"body": base64.b64encode(json.dumps(params).encode()).decode(), "isBase64Encoded": True}) \
        == (APP, "i:12")
    assert run_room({"SdkAppId": str(APP), "StrRoomId": "12"}) == (APP, "s:12")
    assert run_room({"SdkAppId": APP, "RoomId": "12"}) == (APP, "i:12")  # the gateway hands strings
    assert run_room({"body": "not json"}) is None and run_room({"SdkAppId": APP}) is None
    line = json.dumps({"time": "2026-12-07T06:01:13.094Z", "msg": "sentence", "anchor": "alice", "index": 2,
                       "text": "a triangle", "start_ms": 757, "end_ms": 2677})
    s = parse_sentence("r1", line)
    assert s is not None and (s.user_id, s.index, s.start_ms, s.end_ms, s.text) == ("alice", 2, 757, 2677, "a triangle")
    assert parse_sentence("r1", line.replace('"sentence"', '"anchor left"')) is None
    assert parse_sentence("r1", "START RequestId: r1") is None and parse_sentence("r1", '{"msg": "sentence"}') is None
