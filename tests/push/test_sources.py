"""Sources of every kind through the whole push: HTTP files, HLS (VOD and live), odd formats, a
source that stalls."""
from __future__ import annotations

import signal
import time

import pytest
import redis

from functions.push_stream.index import main_handler
from shared.push.checkpoint import checkpoint_key
from shared.room import RoomRef

from .conftest import new_room, params_for


@pytest.mark.parametrize("name, over_http, path, audio_channels", [
    ("moov_at_end.mp4", True, "passthrough", 2),
    ("hls", True, "passthrough", 2),
    ("surround51.mp4", False, "passthrough", 2),
    ("mono8k.mp4", False, "passthrough", 1),
    ("odd_size.mp4", False, "transcode", 2),
    ("vfr.mkv", False, "passthrough", 2),
    ("audio_only.mp3", True, "transcode", 2),
])
def test_sources_arrive_in_the_room(push_env, subscribe, clips, media_http, name, over_http, path, audio_channels):
    local = clips.get(name)
    if name == "hls":
        src = media_http.url("hls/index.m3u8")
    else:
        src = media_http.url(name) if over_http else str(local)
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, src, room), {"request_id": f"req-{name}"})
    assert (result["status"], result["reason"]) == ("completed", "end_of_source"), result
    assert result["path"] == path
    assert result["position"] == pytest.approx(result["duration"], abs=0.15)
    got = sub.settle()
    sent = result["framesSent"]
    assert len(got.audio_pts) == sent["audio"] and len(got.video_pts) == sent["video"]
    assert sent["audio"] == pytest.approx(result["duration"] * 50, abs=3)
    assert got.audio_pts == sorted(got.audio_pts) and got.video_pts == sorted(got.video_pts)
    if name != "audio_only.mp3":
        assert sent["video"] > 0 and got.video_keys[0] is True


def test_live_hls_progress_is_written_but_never_resumed(push_env, subscribe, media_http, clips, redis_server):
    clips.get("hls")
    src = media_http.url("live/hls.m3u8")
    room = new_room()
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), src)
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    params = params_for(push_env, src, room, redis=True, redisHost=redis_server.host, redisPort=redis_server.port,
                        maxDuration=1.5, seekSecond=2)
    sub = subscribe(RoomRef(room), "pusher")
    first = main_handler(params, {"request_id": "req-live-1"})
    assert (first["status"], first["reason"], first["live"]) == ("completed", "max_duration", True)
    assert first["duration"] is None
    record = client.hgetall(key)
    assert record["duration"] == "" and record["requestId"] == "req-live-1"
    assert float(record["position"]) == pytest.approx(first["position"], abs=0.001) and first["position"] > 1.0
    assert sub.wait_for(lambda g: len(g.audio_pts) >= 70)

    second = main_handler(params, {"request_id": "req-live-2"})
    assert second["status"] == "completed" and second["resumedFrom"] is None
    assert client.hget(key, "requestId") == "req-live-2"


def test_sigterm_while_the_source_stalls(push_env, subscribe, children, media_http, clips, redis_server):
    clips.get("long.mp4")
    src = media_http.url("stallbody/long.mp4")  # a third of the file, then silence
    room = new_room()
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), src)
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    sub = subscribe(RoomRef(room), "pusher")
    child = children(params_for(push_env, src, room, redis=True, redisHost=redis_server.host,
                                redisPort=redis_server.port),
                     {"PACING_SPEED": "8", "SOURCE_TIMEOUT_SECONDS": "60"}, "req-stall")
    assert sub.wait_for(lambda g: len(g.video_pts) >= 10, timeout=15)
    count = len(sub.settle(quiet=0.5, timeout=15).video_pts)  # stalled: nothing more arrives
    t0 = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    result, _ = child.result(timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert (result["status"], result["reason"], result["checkpoint"]) == ("terminated", "terminated", "saved")
    assert float(client.hget(key, "position")) == pytest.approx(result["position"], abs=0.001)
    assert result["framesSent"]["video"] == count


def test_a_stalled_source_fails_within_its_timeout(push_env, media_http, clips, monkeypatch):
    clips.get("long.mp4")
    monkeypatch.setenv("SOURCE_TIMEOUT_SECONDS", "1.5")
    t0 = time.monotonic()
    result = main_handler(params_for(push_env, media_http.url("stallbody/long.mp4"), new_room()), {})
    assert time.monotonic() - t0 < 8
    assert (result["status"], result["reason"]) == ("failed", "source_error")
    assert "stallbody/long.mp4" in result["message"] and result["framesSent"]["video"] > 0
