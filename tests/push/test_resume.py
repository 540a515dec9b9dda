"""Checkpoints and stops against a real redis-server: kill -9 then resume, SIGTERM, the time limit,
a Redis that goes away mid-push, and two pushes of the same source into the same room."""
from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from emulator.media import decode_h264, make_clip, step_level
from functions.push_stream.index import main_handler
from shared.push.checkpoint import checkpoint_key
from shared.room import RoomRef

from .conftest import PUSH_CLIP, new_room, params_for, poll_until


@pytest.fixture(scope="session")
def clip10_bframes(clip_dir: Path) -> Path:
    """10 s with B-frames (transcoded): a resume can start on any frame, not only on key frames."""
    return make_clip(clip_dir / "clip10b.mp4", duration=10.0, video="h264-bframes", **PUSH_CLIP)


def _client(server) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, decode_responses=True, socket_timeout=2)


def _redis_params(server) -> dict:
    return {"redis": "true", "redisHost": server.host, "redisPort": str(server.port)}


def _wait(predicate, timeout: float = 15.0, step: float = 0.05):
    return poll_until(predicate, timeout, step)


def _position(client: redis.Redis, key: str) -> float:
    try:
        value = client.hget(key, "position")
    except redis.RedisError:
        return -1.0
    return float(value) if value else -1.0


def test_kill_9_mid_push_then_resume_from_the_record(push_env, subscribe, children, redis_server, clip10_bframes):
    room = new_room()
    src = str(clip10_bframes)
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), src)
    client = _client(redis_server)
    params = params_for(push_env, src, room, **_redis_params(redis_server))

    child = children(params, {"PACING_SPEED": "2"}, "req-killed")
    assert _wait(lambda: _position(client, key) >= 3.0), "the push never recorded 3 s of progress"
    child.kill()
    record = client.hgetall(key)
    assert record["requestId"] == "req-killed" and record["status"] == "running"
    checkpoint = float(record["position"])
    assert 3.0 <= checkpoint < 9.0

    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params, {"request_id": "req-resume"})
    assert (result["status"], result["reason"]) == ("completed", "end_of_source")
    assert result["resumedFrom"] == pytest.approx(checkpoint, abs=0.001)
    got = sub.settle()
    # The first frame sent is within one frame of the checkpoint (40 ms of video, 20 ms of audio).
    assert abs(got.video_pts[0] - checkpoint * 1000) <= 40
    assert abs(got.audio_pts[0] - checkpoint * 1000) <= 20
    assert len(got.video_pts) == pytest.approx((10.0 - checkpoint) * 25, abs=1)
    assert not client.exists(key), "reaching the end clears the record"


def test_sigterm_writes_the_final_checkpoint_and_returns_terminated_within_2s(
        push_env, subscribe, children, redis_server, clip10):
    room = new_room()
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), str(clip10))
    client = _client(redis_server)
    sub = subscribe(RoomRef(room), "pusher")
    child = children(params_for(push_env, clip10, room, **_redis_params(redis_server)), {"PACING_SPEED": "1"},
                     "req-term")
    assert _wait(lambda: _position(client, key) >= 1.0)
    t0 = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    result, err = child.result(timeout=10)
    took = time.monotonic() - t0
    assert (result["status"], result["reason"], result["checkpoint"]) == ("terminated", "terminated", "saved")
    assert took < 2.0, f"took {took:.2f} s to stop"
    record = client.hgetall(key)
    assert record["status"] == "terminated" and record["requestId"] == "req-term"
    assert float(record["position"]) == pytest.approx(result["position"], abs=0.001)
    assert 1.0 <= result["position"] < 5.0
    got = sub.settle()
    assert got.video_pts[-1] / 1000 == pytest.approx(result["position"], abs=0.1)
    assert '"request_id": "req-term"' in err and "push finished" in err


def test_time_limit_stops_before_scf_would(push_env, redis_server, clip10, monkeypatch):
    monkeypatch.setenv("PACING_SPEED", "1")
    monkeypatch.setenv("STOP_MARGIN_SECONDS", "1")
    room = new_room()
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), str(clip10))
    t0 = time.monotonic()
    result = main_handler(params_for(push_env, clip10, room, **_redis_params(redis_server)),
                          {"request_id": "req-limit", "time_limit_in_ms": 2500})
    assert (result["status"], result["reason"]) == ("terminated", "time_limit")
    assert time.monotonic() - t0 < 2.5
    assert _client(redis_server).hget(key, "reason") == "time_limit"
    assert float(_client(redis_server).hget(key, "position")) == pytest.approx(result["position"], abs=0.001)


def test_redis_stopped_and_restarted_mid_push(push_env, subscribe, fresh_redis, clip10, monkeypatch, capfd):
    monkeypatch.setenv("PACING_SPEED", "2")
    room = new_room()
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), str(clip10))
    client = _client(fresh_redis)
    sub = subscribe(RoomRef(room), "pusher")
    out: dict = {}
    params = params_for(push_env, clip10, room, maxDuration=8, **_redis_params(fresh_redis))
    thread = threading.Thread(target=lambda: out.update(main_handler(params, {"request_id": "req-lost"})),
                              daemon=True)
    thread.start()
    assert _wait(lambda: _position(client, key) >= 1.0)

    fresh_redis.stop()
    before = len(sub.got.video_pts)
    sub.wait_for(lambda g: len(g.video_pts) > before + 20, timeout=5)
    assert len(sub.got.video_pts) > before + 20, "the push must keep going without Redis"
    fresh_redis.start()
    thread.join(10)
    assert not thread.is_alive()
    assert (out["status"], out["reason"], out["checkpoint"]) == ("completed", "max_duration", "saved")
    record = _client(fresh_redis).hgetall(key)
    assert float(record["position"]) == pytest.approx(out["position"], abs=0.001)
    assert out["position"] == pytest.approx(8.0, abs=0.1)
    err = capfd.readouterr().err
    assert "redis unreachable" in err and "redis is back" in err


def test_unreachable_redis_at_start_pushes_nothing(push_env, subscribe, clip3):
    from emulator.redis.server import free_port

    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    port = free_port()
    result = main_handler(params_for(push_env, clip3, room, redis=True, redisHost="127.0.0.1", redisPort=port), {})
    assert (result["status"], result["reason"]) == ("failed", "redis_unavailable")
    assert f"127.0.0.1:{port}" in result["message"] and "nothing was pushed" in result["message"]
    time.sleep(0.3)  # the window: an entry into the room would be seen in it (nothing to poll for)
    assert sub.got.entered == [] and sub.got.video_pts == []


@pytest.mark.parametrize("same_user", [False, True])
def test_two_pushes_with_the_same_key_the_newer_wins(push_env, children, redis_server, clip10, monkeypatch,
                                                     same_user):
    monkeypatch.setenv("PACING_SPEED", "2")
    room = new_room()
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), str(clip10))
    client = _client(redis_server)
    older_id = f"req-older-{uuid.uuid4().hex[:6]}"
    older = children(params_for(push_env, clip10, room, user="pusher-a", **_redis_params(redis_server)),
                     {"PACING_SPEED": "2"}, older_id)
    assert _wait(lambda: _position(client, key) >= 2.0)

    # The newer push runs here; meanwhile a watcher records every owner the record ever had.
    owners: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            owners.append(client.hget(key, "requestId") or "")
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    user = "pusher-a" if same_user else "pusher-b"
    newer = main_handler(params_for(push_env, clip10, room, user=user, maxDuration=3,
                                    **_redis_params(redis_server)), {"request_id": "req-newer"})
    older_result, _ = older.result(timeout=15)
    time.sleep(0.6)  # a writer tick of the older push, had it survived
    done.set()
    watcher.join(2)

    assert newer["status"] == "completed" and newer["resumedFrom"] >= 2.0
    assert older_result["status"] == "stopped"
    assert older_result["reason"] == ("replaced" if same_user else "superseded")
    assert older_result["checkpoint"] in ("fenced", "saved" if same_user else "fenced")
    # Once the newer push claimed the record, the older one never owned it again.
    first_newer = owners.index("req-newer")
    assert set(owners[first_newer:]) == {"req-newer"}
    record = client.hgetall(key)
    assert record["requestId"] == "req-newer"
    assert float(record["position"]) == pytest.approx(newer["position"], abs=0.001)


@pytest.mark.parametrize("how", ["record", "seekSecond"])
def test_passthrough_starting_between_key_frames_is_exact_and_decodes(push_env, subscribe, redis_server, clip10,
                                                                       how):
    """A 1 s GOP source started at 1.37 s: the first picture is at 1.36 s, not back at the 1 s key frame."""
    room = new_room()
    src = str(clip10)
    extra: dict = {"maxDuration": 2}
    if how == "record":
        key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), src)
        _client(redis_server).hset(key, mapping={"position": "1.370", "duration": "10.000", "requestId": "req-prev",
                                                 "status": "terminated", "reason": "terminated", "updatedAt": "0"})
        extra.update(_redis_params(redis_server))
    else:
        extra["seekSecond"] = 1.37
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, src, room, **extra), {"request_id": f"req-{how}"})
    assert (result["status"], result["path"]) == ("completed", "passthrough")
    got = sub.settle()
    assert abs(got.video_pts[0] - 1370) <= 40 and got.video_keys[0] is True
    assert abs(got.audio_pts[0] - 1370) <= 20
    # 1.36 s .. 3.36 s without a gap, the source's own key frames at 2 s and 3 s passed through.
    assert got.video_pts == list(range(got.video_pts[0], got.video_pts[0] + 2000, 40))
    assert [pts for pts, key in zip(got.video_pts, got.video_keys) if key][1:] == [2000, 3000]
    pictures = decode_h264(got.video_data)
    assert len(pictures) == len(got.video_data)
    assert (pictures[0].width, pictures[0].height) == (160, 120)
    # The clip's brightness steps with each frame: the first picture shows frame 34 (1.36 s), the
    # one after the bridge frame 50 (the key frame at 2 s).
    index = got.video_pts[0] // 40
    for picture, frame_no in ((pictures[0], index), (pictures[50 - index], 50)):
        y = picture.planes[0]
        luma = bytes(y)[: y.line_size * picture.height]
        mean = sum(luma[r * y.line_size + c] for r in range(0, 120, 7) for c in range(0, 160, 7)) / (18 * 23)
        assert mean == pytest.approx(step_level(frame_no), abs=4)


def test_sigterm_with_redis_gone_still_stops_within_2s(push_env, children, fresh_redis, clip10):
    room = new_room()
    key = checkpoint_key(push_env.sdk_app_id, RoomRef(room), str(clip10))
    client = _client(fresh_redis)
    child = children(params_for(push_env, clip10, room, **_redis_params(fresh_redis)), {"PACING_SPEED": "1"},
                     "req-term-noredis")
    assert _wait(lambda: _position(client, key) >= 0.5)
    fresh_redis.kill()
    time.sleep(0.3)  # the stimulus: the push runs on a moment with its Redis gone before the SIGTERM
    t0 = time.monotonic()
    child.proc.send_signal(signal.SIGTERM)
    result, err = child.result(timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert (result["status"], result["reason"], result["checkpoint"]) == ("terminated", "terminated", "unsaved")
    assert "could not write the final position" in err
