"""Every way a recording stops ends the same way: each file finalised, uploaded and reported."""
from __future__ import annotations

import signal
import time

from .conftest import probe


def _one_good_file(studio, result, tmp_path, seconds, tolerance=0.1):
    [entry] = result["Files"]
    assert entry["Status"] == 1 and entry["UserId"] == "alice", entry
    found = probe(studio.fetch(entry["RecordFile"], tmp_path / "out.mp3"))
    assert found.codecs == ["mp3float"]
    assert abs(found.audio_s - seconds) <= tolerance, found
    return found


def test_dismissed_room_stops_and_reports(studio, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00"))
    anchor = studio.anchor(room, "alice").publish(1.5).wait()
    studio.dismiss(room)
    result = run.wait()
    anchor.leave()
    assert result["Reason"] == "dismissed"
    assert studio.callback.wait_for(1)[0].json["Reason"] == "dismissed"
    _one_good_file(studio, result, tmp_path, 1.5)


def test_max_idle_time_without_anchors_stops(studio, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", MaxIdleTime=2))
    anchor = studio.anchor(room, "alice").publish(1.0).wait()
    anchor.leave()
    left = time.monotonic()
    result = run.wait(timeout=15)
    waited = time.monotonic() - left
    assert result["Reason"] == "idle"
    assert 1.5 <= waited <= 6, waited  # MaxIdleTime after the last anchor left, not before
    _one_good_file(studio, result, tmp_path, 1.0)


def test_max_idle_time_in_an_empty_room(studio):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", MaxIdleTime=1))
    result = run.wait(timeout=10)
    assert result["Reason"] == "idle" and result["Files"] == []
    assert studio.callback.wait_for(1)[0].json["Files"] == []


def test_max_duration_stops_the_recording(studio, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", MaxDuration=2))
    anchor = studio.anchor(room, "alice").publish(4.0)
    result = run.wait(timeout=15)
    anchor.wait()
    anchor.leave()
    assert result["Reason"] == "max_duration"
    [entry] = result["Files"]
    found = probe(studio.fetch(entry["RecordFile"], tmp_path / "max.mp3"))
    assert 1.4 <= found.audio_s <= 2.6, found  # stopped about 2 s after entering, not at 4 s


def test_time_limit_drawing_near_stops_in_time(studio, tmp_path, monkeypatch):
    monkeypatch.setenv("STOP_MARGIN_SECONDS", "1")
    room = studio.new_room()
    started = time.monotonic()
    run = studio.start(studio.event(room, mode="00"), context=studio.context(time_limit_s=4.0))
    anchor = studio.anchor(room, "alice").publish(5.0)
    result = run.wait(timeout=15)
    elapsed = time.monotonic() - started
    anchor.wait()
    anchor.leave()
    assert result["Reason"] == "time_limit"
    assert elapsed < 4.0, elapsed  # finished, uploaded and called back before SCF's limit
    assert result["Files"][0]["Status"] == 1
    assert studio.callback.wait_for(1)[0].json["Reason"] == "time_limit"


def test_sigterm_finalises_uploads_and_calls_back(studio, tmp_path):
    room = studio.new_room()
    event = studio.event(room, mode="02")
    child = studio.start_child(event)
    anchor = studio.anchor(room, "alice").publish(2.0).wait()
    child.proc.send_signal(signal.SIGTERM)
    result, logs = child.wait(timeout=20)
    anchor.leave()
    assert child.proc.returncode == 0, logs[-2000:]
    assert result["Reason"] == "terminated"
    assert '"msg": "recording stopping"' in logs  # the run's JSON log on stderr, as SCF collects it
    for secret in (event["UserSig"], event["CosConfig"]["SecretKey"], event["CosConfig"]["SecretId"]):
        assert secret not in logs
    assert studio.callback.wait_for(1)[0].json == result
    [entry] = result["Files"]
    found = probe(studio.fetch(entry["RecordFile"], tmp_path / "term.mp4"))
    assert found.codecs == ["aac"]  # Mode 02 from an anchor without a camera: audio-only MP4
    assert abs(found.audio_s - 2.0) <= 0.1, found
