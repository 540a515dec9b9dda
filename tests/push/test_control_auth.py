"""push_control through its handler (as SCF calls it) against a push registered in a real
redis-server: a call must prove it speaks for whoever started the push (the push's userSig or the
controlToken given at start), refusals are 403 in the same time whether or not the push exists,
and a push's queue is bounded (MAX_QUEUE; past it, 409 naming the limit)."""
from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

import pytest
import redis

from functions.push_control.index import main_handler as control_handler
from shared.push.control import MAX_QUEUE
from shared.redis import keys
from shared.room import RoomRef

from .fake_push import SIG, TOKEN, FakePush


def gateway_event(params: dict[str, Any]) -> dict[str, Any]:
    return {"httpMethod": "POST", "path": "/push_control", "headers": {"content-type": "application/json"},
            "requestContext": {"stage": "release"}, "queryString": {}, "body": json.dumps(params)}


@pytest.fixture
def push(redis_server):
    from shared.redis.address import RedisAddress

    p = FakePush(RedisAddress(redis_server.host, redis_server.port), RoomRef(f"auth-{uuid.uuid4().hex[:8]}"))
    yield p
    p.close("test_end")


def control(redis_server, push: FakePush, **body: Any) -> tuple[int, dict[str, Any]]:
    params = {"requestId": push.request_id, "redisHost": redis_server.host, "redisPort": redis_server.port, **body}
    response = control_handler(gateway_event(params), {"request_id": f"ctl-{uuid.uuid4().hex[:8]}"})
    return response["statusCode"], json.loads(response["body"])


def test_a_request_id_alone_is_not_proof_403_naming_what_is_missing(redis_server, push):
    status, body = control(redis_server, push, action="stop")
    assert status == 403 and body["reason"] == "forbidden", body
    assert "userSig or controlToken required" in body["message"]
    time.sleep(0.2)
    assert push.seen == []  # nothing reached the push


def test_a_wrong_user_sig_or_token_is_403_does_not_match_and_nothing_is_applied(redis_server, push):
    for wrong in ({"userSig": "someone-elses-usersig-0000"}, {"controlToken": "a-guessed-control-token"},
                  {"userSig": TOKEN}, {"controlToken": SIG}):
        status, body = control(redis_server, push, action="switch", videoSrc="/theirs.mp4", **wrong)
        assert status == 403 and "does not match" in body["message"], (wrong, body)
        assert "state" not in body  # nothing of the push is read out to a stranger
    status, body = control(redis_server, push, action="status", userSig=SIG)
    assert status == 200 and body["state"]["videoSrc"] == "/lesson-1.mp4"
    assert [c.action for c in push.seen] == ["status"]


def test_the_user_sig_or_the_control_token_the_push_started_with_is_accepted(redis_server, push):
    assert control(redis_server, push, action="volume", volume=20, userSig=SIG)[0] == 200
    status, body = control(redis_server, push, action="pause", controlToken=TOKEN)
    assert status == 200 and body["state"] == {**body["state"], "status": "paused", "volume": 20}


def test_the_registration_keeps_only_salted_hashes(redis_server, push):
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    record = client.hgetall(keys.run_key(push.request_id))
    text = json.dumps(record)
    assert SIG not in text and TOKEN not in text
    assert len(record["authSalt"]) == 32 and len(record["userSigHash"]) == 64 and len(record["controlTokenHash"]) == 64


def test_no_such_push_and_a_wrong_token_take_the_same_time(redis_server, push):
    missing = FakePush.__new__(FakePush)
    missing.request_id = f"req-never-{uuid.uuid4().hex[:8]}"
    times: dict[str, list[float]] = {"missing": [], "wrong": []}
    for _ in range(15):  # interleaved pairs, so that load on the machine falls on both alike
        for name, target in (("missing", missing), ("wrong", push)):
            t0 = time.perf_counter()
            status, _ = control(redis_server, target, action="status", controlToken="not-the-right-token-1")
            times[name].append(time.perf_counter() - t0)
            assert status == (404 if name == "missing" else 403)
    # The median of the pairs' differences: a path that skipped the hash would be ~50 ms faster.
    gap = abs(statistics.median(m - w for m, w in zip(times["missing"], times["wrong"])))
    assert gap < 0.020, {k: sorted(round(t * 1000) for t in v) for k, v in times.items()}


def test_the_queue_is_bounded_and_an_enqueue_past_it_is_409_naming_the_limit(redis_server, push):
    batch = [f"/item-{n}.mp4" for n in range(100)]
    for _ in range(MAX_QUEUE // len(batch)):
        status, body = control(redis_server, push, action="enqueue", videoSrc=batch, userSig=SIG)
        assert status == 200, body
    status, body = control(redis_server, push, action="enqueue", videoSrc="/one-more.mp4", userSig=SIG)
    assert status == 409 and body["reason"] == "queue_full", body
    assert f"at most {MAX_QUEUE} sources" in body["message"]
    assert len(push.state.queue) == MAX_QUEUE  # nothing was added past the bound


def test_a_warm_instance_hashes_a_proven_credential_once_and_a_wrong_one_every_time(monkeypatch):
    """push_control's round trip stays short on a warm instance (the AI class's answer -> feedback
    latency), without letting a guesser skip the hash: only successes are remembered."""
    from shared.push.control import proof

    record = proof.registration_fields("the-users-sig-0123456789", "a-token-of-16-chars-or-more")
    calls: list[str] = []
    real = proof._digest
    monkeypatch.setattr(proof, "_digest", lambda secret, salt: calls.append(secret) or real(secret, salt))
    assert proof.proves(record, "the-users-sig-0123456789", None)
    assert proof.proves(record, "the-users-sig-0123456789", None)
    assert calls == ["the-users-sig-0123456789"]  # the second call was not hashed again
    for _ in range(2):
        assert not proof.proves(record, "a-wrong-sig-0123456789", None)
    assert calls[1:] == ["a-wrong-sig-0123456789"] * 2  # every refusal pays the full hash
    other = proof.registration_fields("the-users-sig-0123456789", None)  # a new push, a new salt
    del calls[:]
    assert proof.proves(other, "the-users-sig-0123456789", None)
    assert calls == ["the-users-sig-0123456789"]  # proven for the old push is not proven for this one
