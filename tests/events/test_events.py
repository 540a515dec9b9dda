"""RunEvents and IdempotencyKey's stores, against the real parts: numbering without gaps (even past
the outbox's bound), the end last and once, EventVerbose; the Redis store (SET NX, 24 h) and the
state bucket's create-once generations in the local COS."""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from shared.cos.errors import AlreadyExists
from shared.events.emitter import RunEvents
from shared.events.idempotency import TTL_S, BucketKeys, RedisKeys, Scope
from shared.outbox import Outbox
from shared.redis.address import address_of
from shared.redis.connection import connect

from .conftest import events_of, types


def _events(receiver, outbox: Outbox, verbose: bool = False) -> RunEvents:
    return RunEvents(outbox, receiver.url, function="record_stream", request_id="req-1", sdk_app_id=1400000001,
                     room="room a", user_id="recorder", verbose=verbose)


@pytest.fixture
def outbox():
    box = Outbox(backoff=0.05, max_backoff=0.2)
    box.start()
    yield box
    box.close()
    box.join(5)


def test_events_are_numbered_without_gaps_from_many_threads_and_the_end_is_last(callback_receiver, outbox):
    events = _events(callback_receiver, outbox)
    events.emit("started", {"Mode": "00"})

    def anchor(name: str) -> None:
        for _ in range(5):
            events.emit("anchor_joined", {"AnchorId": name})

    threads = [threading.Thread(target=anchor, args=(f"a{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    events.emit("segment_uploaded", {"Key": "k"})  # verbose: not sent without EventVerbose
    events.end("stopped", {"status": "finished"})
    events.emit("file_done", {})  # after the end: nothing
    events.end("stopped", {"status": "again"})
    got = callback_receiver.wait_for(22)
    time.sleep(0.3)  # anything wrongly sent after the end would arrive now
    received = events_of(callback_receiver)
    assert [e["EventSeq"] for e in received] == list(range(1, 23))
    assert types(received)[0] == "started" and types(received)[-1] == "stopped" and len(got) == 22
    assert received[-1]["Payload"]["Result"] == {"status": "finished"}
    assert received[0]["RoomId"] == 0 and received[0]["StrRoomId"] == "room a"


def test_event_verbose_sends_segment_uploaded(callback_receiver, outbox):
    events = _events(callback_receiver, outbox, verbose=True)
    events.emit("segment_uploaded", {"Key": "k"})
    assert events_of_wait(callback_receiver, 1)[0]["EventType"] == "segment_uploaded"


def events_of_wait(receiver, n: int) -> list[dict]:
    receiver.wait_for(n)
    return events_of(receiver)


def test_past_the_bound_events_are_not_numbered_and_the_end_says_how_many(callback_receiver):
    callback_receiver.down()
    box = Outbox(backoff=0.05, max_backoff=0.1, max_messages=3)
    box.start()
    try:
        events = _events(callback_receiver, box)
        for n in range(6):
            events.emit("anchor_joined", {"n": n})
        events.end("stopped", {"status": "finished"})
        assert events.dropped == 3
        callback_receiver.up()
        got = events_of_wait(callback_receiver, 4)
        assert [e["EventSeq"] for e in got] == [1, 2, 3, 4]
        assert got[-1]["Payload"]["EventsDropped"] == 3
    finally:
        box.close()
        box.join(5)


def test_the_pending_events_are_what_a_recovery_sends_again(callback_receiver, outbox):
    callback_receiver.down()
    changes: list[tuple[int, list]] = []
    events = _events(callback_receiver, outbox)
    events.on_change = lambda seq, pending: changes.append((seq, [e["EventSeq"] for e in pending]))
    events.emit("started")
    events.emit("anchor_joined", {"AnchorId": "a"})
    assert changes[-1] == (2, [1, 2])
    callback_receiver.up()
    deadline = time.monotonic() + 10
    while changes[-1] != (2, []):
        assert time.monotonic() < deadline, changes
        time.sleep(0.05)


# --- IdempotencyKey's stores ---------------------------------------------------------------------


def test_the_redis_store_keeps_a_key_for_24_h_and_tells_duplicate_from_conflict(redis_server):
    address = address_of(redis_server.host, redis_server.port, None, 0)
    assert address is not None
    client = connect(address)
    store = RedisKeys(client)
    scope = Scope("push_stream", 1400000001, f"k-{uuid.uuid4().hex}")
    assert store.claim(scope, "fp1", "r1").outcome == "first"
    assert store.claim(scope, "fp1", "r1").outcome == "first"  # the same run delivered again
    dup = store.claim(scope, "fp1", "r2")
    assert (dup.outcome, dup.original_request_id) == ("duplicate", "r1")
    assert store.claim(scope, "fp2", "r3").outcome == "conflict"
    keys = client.keys("trtc-push:idem:*")
    assert len(keys) == 1 and TTL_S - 60 < client.ttl(keys[0]) <= TTL_S
    assert json.loads(client.get(keys[0]))["RequestId"] == "r1"
    assert store.claim(Scope("push_stream", 1400000002, scope.key), "fp1", "r4").outcome == "first"  # per app
    client.delete(*client.keys("trtc-push:idem:*"))


def test_the_bucket_store_creates_each_generation_once(bucket, prefix):
    store = BucketKeys(bucket, prefix, AlreadyExists)
    scope = Scope("record_stream", 1400000001, "key-1")
    now = 1_000_000.0
    assert store.claim(scope, "fp", "r1", now=now).outcome == "first"
    assert store.claim(scope, "fp", "r2", now=now + 60).outcome == "duplicate"
    assert store.claim(scope, "other", "r3", now=now + 60).outcome == "conflict"
    later = store.claim(scope, "other", "r4", now=now + TTL_S + 1)  # a day later the key is free again
    assert later.outcome == "first"
    keys = [k for k, _ in bucket.list(prefix)]
    assert len(keys) == 1 and keys[0].endswith(".2")  # generation 2; generation 1 tidied


def test_two_starts_racing_for_one_key_in_the_bucket_one_wins(bucket, prefix):
    store = BucketKeys(bucket, prefix, AlreadyExists)
    scope = Scope("record_stream", 1400000001, "race")
    outcomes: list[str] = []

    def start(rid: str) -> None:
        outcomes.append(store.claim(scope, "fp", rid).outcome)

    threads = [threading.Thread(target=start, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(outcomes) == ["duplicate", "duplicate", "duplicate", "first"]
