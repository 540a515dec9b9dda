"""The Redis checkpoint against a real redis-server: the record, its TTL, fencing, a lost Redis."""
from __future__ import annotations

import hashlib
import time
import uuid

import pytest
import redis

from shared.push.checkpoint import Checkpoint, CheckpointUnavailable, checkpoint_key
from shared.room import RoomRef
from shared.runtime import get_logger

from .conftest import poll_until

APP = 1400000001


def _connect(server, request_id: str, src: str = "http://example.com/a.mp4", room=RoomRef(4242), **kw) -> Checkpoint:
    return Checkpoint.connect(host=server.host, port=server.port, password=None, db=0, sdk_app_id=APP,
                              room=room, video_src=src, request_id=request_id,
                              log=get_logger(request_id, "push_stream"), **kw)


def _wait_for(predicate, timeout: float = 5.0, step: float = 0.05):
    return poll_until(predicate, timeout, step)


def test_key_covers_app_room_and_source():
    src = "http://example.com/a.mp4"
    digest = hashlib.sha256(src.encode()).hexdigest()[:32]
    assert checkpoint_key(APP, RoomRef(123), src) == f"trtc-push:{APP}:i:123:{digest}"
    keys = {checkpoint_key(APP, RoomRef(123), src), checkpoint_key(APP, RoomRef("123"), src),
            checkpoint_key(APP + 1, RoomRef(123), src), checkpoint_key(APP, RoomRef(123), src + "?x")}
    assert len(keys) == 4


def test_record_written_every_tick_with_ttl(redis_server, monkeypatch):
    monkeypatch.setenv("CHECKPOINT_TTL_SECONDS", "3600")
    src = f"http://example.com/{uuid.uuid4()}.mp4"
    cp = _connect(redis_server, "req-1", src)
    cp.start(12.0, 60.0)
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    record = client.hgetall(cp.key)
    assert record["position"] == "12.000" and record["duration"] == "60.000"
    assert record["requestId"] == "req-1" and record["status"] == "running" and record["videoSrc"] == src
    assert 3500 < client.ttl(cp.key) <= 3600

    client.expire(cp.key, 100)  # every write refreshes the TTL
    cp.update(13.5)
    assert _wait_for(lambda: client.hget(cp.key, "position") == "13.500", timeout=1.5)
    assert client.ttl(cp.key) > 3500
    first = float(client.hget(cp.key, "updatedAt"))
    # Written at least once a second even when the position does not move.
    assert _wait_for(lambda: float(client.hget(cp.key, "updatedAt")) > first, timeout=1.2)

    assert cp.finish("terminated", "terminated", position=14.0) == "saved"
    record = client.hgetall(cp.key)
    assert (record["position"], record["status"], record["reason"]) == ("14.000", "terminated", "terminated")
    assert cp.load().position == 14.0
    cp.close()


def test_end_of_source_clears_the_record(redis_server):
    cp = _connect(redis_server, "req-end", f"http://example.com/{uuid.uuid4()}.mp4")
    cp.start(0.0, 5.0)
    cp.update(4.98)
    assert cp.finish("completed", "end_of_source", clear=True) == "cleared"
    assert cp.load() is None
    cp.close()


def test_newer_push_fences_the_older(redis_server, capsys):
    src = f"http://example.com/{uuid.uuid4()}.mp4"
    older = _connect(redis_server, "req-old", src, interval_s=0.1)
    older.start(0.0, 100.0)
    older.update(10.0)
    fenced = []
    older.on_fenced = lambda: fenced.append(True)
    assert _wait_for(lambda: older.load().position == 10.0)

    newer = _connect(redis_server, "req-new", src, interval_s=0.1)
    assert newer.load().position == 10.0
    newer.start(10.0, 100.0)
    newer.update(11.0)
    older.update(50.0)  # the older push keeps going, but may not write any more

    assert _wait_for(lambda: older.fenced, timeout=2.0)
    assert fenced == [True]
    assert older.finish("stopped", "removed", position=55.0) == "fenced"
    assert older.finish("completed", "end_of_source", clear=True) == "fenced"
    record = newer.load()
    assert record.request_id == "req-new" and record.position == pytest.approx(11.0)
    assert "a newer push owns the record" in capsys.readouterr().err
    assert newer.finish("stopped", "terminated", position=12.0) == "saved"
    assert newer.load().position == 12.0
    older.close()
    newer.close()


def test_unreachable_redis_is_a_clear_error():
    from emulator.redis.server import free_port

    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as e:
        Checkpoint.connect(host="127.0.0.1", port=port, password=None, db=0, sdk_app_id=APP, room=RoomRef(1),
                           video_src="x.mp4", request_id="r", log=get_logger("r"))
    assert f"127.0.0.1:{port}" in str(e.value) and "unreachable" in str(e.value)
    assert time.monotonic() - t0 < 3


def test_wrong_password_is_named(tmp_path):
    from emulator.redis import RedisServer

    with RedisServer(tmp_path / "r", password="s3cret-pw") as server:
        with pytest.raises(CheckpointUnavailable) as e:
            Checkpoint.connect(host=server.host, port=server.port, password="wrong-pw", db=0, sdk_app_id=APP,
                               room=RoomRef(1), video_src="x.mp4", request_id="r", log=get_logger("r"))
        assert "redisPassword" in str(e.value)
        ok = Checkpoint.connect(host=server.host, port=server.port, password="s3cret-pw", db=0, sdk_app_id=APP,
                                room=RoomRef(1), video_src="x.mp4", request_id="r", log=get_logger("r"))
        assert ok.load() is None
        ok.close()


def test_redis_lost_mid_push_then_back(fresh_redis, capsys):
    cp = _connect(fresh_redis, "req-lost", "http://example.com/lost.mp4", interval_s=0.1)
    cp.start(1.0, 100.0)
    cp.update(2.0)
    assert _wait_for(lambda: cp.load().position == 2.0)

    fresh_redis.stop()  # saves its data on the way down, as a restarted Redis would
    t0 = time.monotonic()
    for i in range(10):  # the pusher's updates never block on a dead Redis
        cp.update(3.0 + i)
    assert time.monotonic() - t0 < 0.1
    assert _wait_for(lambda: not cp.reachable, timeout=3.0)
    assert "redis unreachable" in capsys.readouterr().err

    fresh_redis.start()
    assert _wait_for(lambda: cp.reachable, timeout=5.0)
    assert _wait_for(lambda: cp.load().position == 12.0, timeout=2.0)
    assert "redis is back" in capsys.readouterr().err
    assert cp.finish("terminated", "terminated", position=13.0) == "saved"
    assert cp.load().position == 13.0
    cp.close()


def test_final_write_retries_until_redis_is_back(fresh_redis):
    import threading

    cp = _connect(fresh_redis, "req-final", "http://example.com/final.mp4", interval_s=0.1)
    cp.start(0.0, 100.0)
    fresh_redis.stop()
    threading.Timer(1.0, fresh_redis.start).start()
    assert cp.finish("stopped", "removed", position=7.5, budget_s=8.0) == "saved"
    record = cp.load()
    assert (record.position, record.status, record.reason) == (7.5, "stopped", "removed")
    cp.close()


def test_final_write_gives_up_within_its_budget(fresh_redis, capsys):
    cp = _connect(fresh_redis, "req-gone", "http://example.com/gone.mp4", interval_s=0.1)
    cp.start(0.0, 100.0)
    fresh_redis.kill()
    t0 = time.monotonic()
    assert cp.finish("terminated", "terminated", position=3.0, budget_s=0.8) == "unsaved"
    assert time.monotonic() - t0 < 2.0
    assert "could not write the final position" in capsys.readouterr().err
    cp.close()
