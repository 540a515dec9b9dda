"""recognize_stream end to end: POST through the gateway, students speaking in a local room, the
emulator's ASR service (its WebSocket protocol, auth and limits) with pocketsphinx behind it."""
from __future__ import annotations

import io
import json
import wave

import requests

from emulator.clients import cos_client
from shared.record.storage import parse_cos_url

from .conftest import Classroom, until


def _sentences(classroom: Classroom, request_id: str, user_id: str) -> list[dict]:
    return [r for b in classroom.bodies(request_id) if b.get("Status") == "recognizing" and b["UserId"] == user_id
            and b.get("Final", True) for r in b["Result"]]


def _cos_bytes(classroom: Classroom, url: str) -> bytes:
    bucket, _region, key = parse_cos_url(url)
    return cos_client(classroom.info).get_object(Bucket=bucket, Key=key)["Body"].get_raw_stream().read()


def test_two_students_recognised_separately_with_hotwords_and_transcripts_in_cos(classroom: Classroom):
    room = classroom.new_room()
    alice, bob = classroom.student(room, "alice"), classroom.student(room, "bob")
    rid = classroom.start(classroom.params(room, HotwordList=["triangle", "square", "circle"],
                                           CosConfig=classroom.cos_config()))
    assert classroom.cloud.asr is not None
    backend = classroom.cloud.asr.backend
    until(lambda: len(backend.live("sdkappid 1400000001")) >= 2, 20, "one ASR connection per student")
    alice.say("i think it is a triangle")
    bob.say("square")
    until(lambda: _sentences(classroom, rid, "alice") and _sentences(classroom, rid, "bob"), 25,
          "a sentence from each student")
    said_alice = _sentences(classroom, rid, "alice")[0]
    said_bob = _sentences(classroom, rid, "bob")[0]
    # Each student's own words, in the template's shape; the hotword wins over its neighbours
    # ("square" alone is "where" to the general model).
    assert "triangle" in said_alice["Voice"].split() and "square" not in said_alice["Voice"]
    assert said_bob["Voice"].split() == ["square"]
    assert said_alice["Message"] == "success" and said_alice["Index"] == 0
    assert 0 <= said_alice["StartTime"] < said_alice["EndTime"]

    alice.leave()
    bob.leave()
    result = classroom.result(rid)
    assert result["status"] == "finished" and result["Reason"] == "idle"
    assert result["UserId"] == "recognizer" and result["RoomId"] == room
    anchors = {a["UserId"]: a for a in result["Anchors"]}
    assert set(anchors) == {"alice", "bob"}
    assert anchors["alice"]["Sentences"][0] == said_alice
    # The result's own Result lists every sentence, each with its speaker.
    assert {(r["UserId"], r["Voice"]) for r in result["Result"]} >= {("alice", said_alice["Voice"]),
                                                                      ("bob", said_bob["Voice"])}

    # In COS: the transcript as JSON and WebVTT, and each sentence's clip (its index in the key).
    alice_out = anchors["alice"]
    doc = json.loads(_cos_bytes(classroom, alice_out["Transcript"]["Json"]))
    assert doc["UserId"] == "alice"
    assert [s["Voice"] for s in doc["Sentences"]] == [s["Voice"] for s in alice_out["Sentences"]]
    vtt = _cos_bytes(classroom, alice_out["Transcript"]["WebVtt"]).decode()
    assert vtt.startswith("WEBVTT") and said_alice["Voice"] in vtt
    clip_url = alice_out["Clips"][0]
    assert clip_url.endswith("sentence-0000.wav")
    with wave.open(io.BytesIO(_cos_bytes(classroom, clip_url))) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
        seconds = w.getnframes() / 16000
    assert abs(seconds * 1000 - (said_alice["EndTime"] - said_alice["StartTime"])) < 100
    assert seconds > 1.0  # "i think it is a triangle" is ~1.7 s of speech


def test_a_refusing_recogniser_fails_the_run_with_a_clear_message(classroom: Classroom):
    room = classroom.new_room()
    classroom.student(room, "carol")
    rid = classroom.start(classroom.params(room, MaxDuration=3, AsrConfig={
        "AppId": 1250000000, "SecretId": classroom.info["secretId"], "SecretKey": "not-the-secret-key"}))
    result = classroom.result(rid)
    assert result["status"] == "failed"  # nothing could be recognised
    carol = result["Anchors"][0]
    assert carol["UserId"] == "carol" and carol["Status"] == 0
    assert "refused the credentials" in carol["Message"] and "signature does not match" in carol["Message"]
    assert "refused every anchor" in result["Message"]


def test_the_concurrency_limit_is_named_and_only_its_anchor_goes_unrecognised(classroom: Classroom):
    assert classroom.cloud.asr is not None
    classroom.cloud.asr.backend.max_concurrency = 1
    room = classroom.new_room()
    classroom.student(room, "dave")
    until(lambda: classroom.students[0].alive, 5, "dave's microphone")
    rid = classroom.start(classroom.params(room, MaxDuration=4))
    until(lambda: classroom.in_room(room), 15, "the recogniser in the room")
    classroom.student(room, "erin")
    result = classroom.result(rid)
    assert result["status"] == "finished"  # one anchor was recognised (it said nothing)
    anchors = {a["UserId"]: a for a in result["Anchors"]}
    refused = [a for a in anchors.values() if a["Status"] == 0]
    assert len(refused) == 1 and len(anchors) == 2
    assert "concurrency limit" in refused[0]["Message"] and "(1 for sdkappid 1400000001)" in refused[0]["Message"]


def _answer(classroom: Classroom, params: dict) -> tuple[int, str]:
    """The run's answer as API Gateway gives it (async: the gateway's 200 first, the run's own after)."""
    rid = classroom.start(params)
    gateway = classroom.info["gateway"]
    record = until(lambda: (lambda d: d if d["status"] != "RUNNING" else None)(
        requests.get(f"{gateway}/_runs/{rid}", timeout=5).json()), 30, f"run {rid}")
    assert record["error"] is None, record["error"]  # the handler returned: no traceback
    return record["result"]["statusCode"], json.loads(record["result"]["body"])["message"]


def test_bad_input_is_a_400_naming_each_field(classroom: Classroom):
    room = classroom.new_room()
    status, message = _answer(classroom, classroom.params(room, EngineModelType="8k_klingon", VadSilenceTime=100,
                                                          TargetUserIds=["alice", "not a user!"]))
    assert status == 400
    for field in ("EngineModelType", "VadSilenceTime", "TargetUserIds"):
        assert field in message
    assert "'not a user!'" in message and "240" in message
    status, message = _answer(classroom, classroom.params(room, TargetUserIds="alice",
                                                          CosConfig={"Bucket": "x", "Region": "ap"}))
    assert status == 400 and "CosConfig.Path: is required" in message
    status, message = _answer(classroom, classroom.params(room, HotwordList=["ok", "a|b"], VadSilenceTime=2001))
    assert status == 400 and "HotwordList" in message and "'a|b'" in message and "VadSilenceTime" in message
    assert not classroom.in_room(room)
