"""recognize_stream end to end: POST through the gateway, students speaking in a local room, the
emulator's ASR service (its WebSocket protocol, auth and limits) with pocketsphinx behind it."""
from __future__ import annotations

import io
import json
import wave

import requests

from emulator.clients import cos_client
from shared.cos.urls import parse_cos_url

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
    rid = classroom.start(classroom.params(room, HotwordList=["triangle", "square", "circle"], Partial=True,
                                           CosConfig=classroom.cos_config()))
    assert classroom.cloud.asr is not None
    backend = classroom.cloud.asr.backend
    until(lambda: len(backend.live("sdkappid 1400000001")) >= 2, 20, "one ASR connection per student")
    alice.say("i think it is a triangle")
    bob.say("square")
    try:
        until(lambda: any("triangle" in r["Voice"] for r in _sentences(classroom, rid, "alice"))
              and _sentences(classroom, rid, "bob"), 25, "a sentence from each student")
    except AssertionError as e:  # what was heard instead, for whoever reads the failure
        heard = [(b["UserId"], b.get("Final"), [r["Voice"] for r in b.get("Result", [])]) for b in classroom.bodies(rid)]
        raise AssertionError(f"{e}; heard: {heard}") from None
    said_alice = next(r for r in _sentences(classroom, rid, "alice") if "triangle" in r["Voice"])
    said_bob = _sentences(classroom, rid, "bob")[0]
    # Each student's own words, in the template's shape; the hotword wins over its neighbours
    # ("square" alone is "where" to the general model).
    assert "triangle" in said_alice["Voice"].split()
    assert not any("square" in r["Voice"] for r in _sentences(classroom, rid, "alice"))
    assert "square" in said_bob["Voice"].split() and "triangle" not in said_bob["Voice"]
    assert said_alice["Message"] == "success"
    # Partial: the words heard while she spoke came first, marked not final, for the same sentence.
    bodies = classroom.bodies(rid)
    partial = [i for i, b in enumerate(bodies) if b["UserId"] == "alice" and b["Final"] is False]
    final = next(i for i, b in enumerate(bodies) if b["UserId"] == "alice" and b["Final"] is True)
    assert partial and partial[0] < final and bodies[partial[0]]["Result"][0]["Voice"]
    assert 0 <= said_alice["StartTime"] < said_alice["EndTime"]

    alice.leave()
    bob.leave()
    result = classroom.result(rid)
    assert result["status"] == "finished" and result["Reason"] == "idle"
    assert result["UserId"] == "recognizer" and result["RoomId"] == room
    anchors = {a["UserId"]: a for a in result["Anchors"]}
    assert set(anchors) == {"alice", "bob"}
    assert said_alice in anchors["alice"]["Sentences"]
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
    clip_url = alice_out["Clips"][said_alice["Index"]]
    assert clip_url.endswith(f"sentence-{said_alice['Index']:04d}.wav")
    with wave.open(io.BytesIO(_cos_bytes(classroom, clip_url))) as w:
        assert (w.getframerate(), w.getnchannels()) == (16000, 1)
        seconds = w.getnframes() / 16000
    assert abs(seconds * 1000 - (said_alice["EndTime"] - said_alice["StartTime"])) < 100
    assert seconds > 0.5


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


def _voice_ids(classroom: Classroom, request_id: str, user_id: str) -> list[str]:
    return [b["VoiceId"] for b in classroom.bodies(request_id) if b.get("Status") == "recognizing"
            and b["UserId"] == user_id and b.get("Final", True)]


def test_a_drop_mid_sentence_reconnects_with_a_new_voice_id_and_loses_nothing(classroom: Classroom):
    assert classroom.cloud.asr is not None
    backend = classroom.cloud.asr.backend
    room = classroom.new_room()
    frank = classroom.student(room, "frank")
    rid = classroom.start(classroom.params(room, HotwordList=["triangle", "square"]))
    [first] = until(lambda: backend.live("sdkappid 1400000001"), 20, "frank's ASR connection")
    backend.drop_after_ms = first.received_ms + 900  # the connection dies inside the sentence
    frank.say("i think it is a triangle")
    until(lambda: _sentences(classroom, rid, "frank"), 25, "frank's sentence")
    assert backend.drop_after_ms is None and first.sentences == []  # it dropped before the sentence ended
    [said] = _sentences(classroom, rid, "frank")
    assert "triangle" in said["Voice"].split()
    assert _voice_ids(classroom, rid, "frank") != [first.voice_id]  # heard on the new connection
    frank.leave()
    result = classroom.result(rid)
    assert [s["Voice"] for s in result["Anchors"][0]["Sentences"]] == [said["Voice"]]  # once, whole


def test_a_muted_student_and_one_who_leaves_and_comes_back(classroom: Classroom):
    assert classroom.cloud.asr is not None
    backend = classroom.cloud.asr.backend
    backend.idle_timeout_s = 2.0  # the service closes a connection that gets no audio for 2 s
    try:
        room = classroom.new_room()
        gina = classroom.student(room, "gina")
        rid = classroom.start(classroom.params(room, HotwordList=["triangle", "square"], MaxIdleTime=10))
        [first] = until(lambda: backend.live("sdkappid 1400000001"), 20, "gina's ASR connection")
        gina.muted = True  # nothing from her microphone: the function sends silence meanwhile
        until(lambda: classroom.in_room(room) and first.received_ms > 0, 10, "audio flowing")
        mute_from = first.received_ms
        until(lambda: first.received_ms >= mute_from + 3500, 10, "3.5 s of silence sent for the muted student")
        assert first in backend.live("sdkappid 1400000001")  # not closed for want of audio
        gina.muted = False
        gina.say("square")
        until(lambda: _sentences(classroom, rid, "gina"), 20, "gina's sentence after unmuting")
        gina.leave()
        until(lambda: first not in backend.live(), 15, "the connection of her first stay to end")
        back = classroom.student(room, "gina")
        until(lambda: len(backend.live("sdkappid 1400000001")) == 1, 15, "a connection for her second stay")
        back.say("triangle")
        until(lambda: len(_sentences(classroom, rid, "gina")) >= 2, 20, "gina's sentence after coming back")
        back.leave()
        result = classroom.result(rid)
    finally:
        backend.idle_timeout_s = 15.0
    sentences = result["Anchors"][0]["Sentences"]
    assert len(sentences) == 2
    assert "square" in sentences[0]["Voice"].split() and "triangle" in sentences[1]["Voice"].split()
    assert [s["Index"] for s in sentences] == [0, 1]  # one transcript across her two stays
    assert sentences[0]["EndTime"] < sentences[1]["StartTime"]


def test_a_callback_that_is_down_gets_the_result_once_it_is_back(classroom: Classroom):
    room = classroom.new_room()
    classroom.student(room, "hana")
    classroom.callback.down()
    rid = classroom.start(classroom.params(room, MaxDuration=2))
    log = f"{classroom.info['gateway']}/_runs/{rid}/log"
    until(lambda: "result callback" not in requests.get(log, timeout=5).text
          and "callback attempt failed" in requests.get(log, timeout=5).text
          and "recognition stopped" in requests.get(log, timeout=5).text, 20,
          "the result's callback failing while the receiver is down")
    classroom.callback.up()
    result = classroom.result(rid, timeout=30)  # retried with backoff as record_stream's
    assert result["status"] == "finished" and result["Reason"] == "max_duration"
    assert [a["UserId"] for a in result["Anchors"]] == ["hana"]
