"""The one door to Redis (shared.redis): low in the house, the only way in, and silent about the far side."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from shared.redis.address import RedisAddress
from shared.redis.connection import RedisRefused, RedisUnavailable, connect
from shared.room import RoomRef

from ..push.conftest import REPO


def test_the_door_imports_nothing_of_the_features_above_it():
    code = ("import json, sys; import shared.redis.address, shared.redis.connection, shared.redis.keys; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('shared.'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=60,
                         check=True).stdout
    loaded = json.loads(out)
    above = [m for m in loaded if m.split(".")[1] in ("push", "record", "contracts", "gateway", "recognize")]
    assert above == [], above


def test_every_redis_client_in_the_tree_is_made_by_the_door():
    # A plain redis.Redis( / ConnectionPool( anywhere else under shared/ would bypass REDIS_ALLOWLIST.
    offenders = []
    for path in (REPO / "shared").rglob("*.py"):
        if path.parent.name == "redis" and path.parent.parent.name == "shared":
            continue
        text = path.read_text("utf-8")
        if "redis.Redis(" in text or "ConnectionPool(" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_an_address_the_allowlist_does_not_open_is_refused_naming_redis_host(redis_server, monkeypatch):
    monkeypatch.setenv("REDIS_ALLOWLIST", "10.0.0.0/8")
    with pytest.raises(RedisRefused) as e:
        connect(RedisAddress(redis_server.host, redis_server.port))
    assert str(e.value).startswith("redisHost:") and "REDIS_ALLOWLIST" in str(e.value)
    assert isinstance(e.value, RedisUnavailable)  # one exception for every caller to catch


def test_a_listed_redis_is_reached_and_reads_wait_as_long_as_asked(redis_server):
    client = connect(RedisAddress(redis_server.host, redis_server.port), timeout_s=0.3, socket_timeout_s=2.0)
    try:
        t0 = time.monotonic()
        assert client.blpop(["trtc-push:test:door-empty"], timeout=1) is None  # longer than the connect budget
        assert 0.9 < time.monotonic() - t0 < 1.9
    finally:
        client.close()


def test_the_keyspace_is_the_one_the_features_have_always_used():
    from shared.redis import keys

    room = RoomRef(1234)
    assert keys.run_key("r1") == "trtc-push:run:{r1}"
    assert keys.inbox_key("r1") == "trtc-push:inbox:{r1}"
    assert keys.reply_key("r1", "c") == "trtc-push:reply:{r1}:c"
    assert keys.ended_key("r1") == "trtc-push:ended:{r1}"
    assert keys.user_key(1400000001, room, "u") == f"trtc-push:user:1400000001:{room.key}:u"
    assert keys.checkpoint_key(1400000001, room, "a.mp4").startswith(f"trtc-push:1400000001:{room.key}:")
    assert ":list:" in keys.playlist_key(1400000001, room, ["a.mp4", "b.mp4"])
