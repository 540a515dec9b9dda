"""The control channel on a real redis-server: push_control's `send` against a push-side loop that
uses ControlInbox as the push will (poll each iteration, ack or refuse, close at the end).

Every answer comes within the 2 s the contract gives, whatever the push does: applies (200),
refuses (409 with its reason), never answers (409, withdrawn or not applied), ends meanwhile (409
ending, then 404), was superseded (404 naming the newer push), or its Redis is gone (503)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
import redis

from shared.contracts.control import ControlParams
from shared.failures import Kind
from shared.push.control import Command, commands, proof
from shared.redis import keys
from shared.redis.address import RedisAddress
from shared.room import RoomRef

from .conftest import REPO, poll_until
from .fake_push import APP, SIG, FakePush, answer

BUDGET = commands.ANSWER_BUDGET_S


@pytest.fixture
def address(redis_server) -> RedisAddress:
    return RedisAddress(redis_server.host, redis_server.port)


@pytest.fixture
def room() -> RoomRef:
    return RoomRef(f"ctl-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def pushes():
    made: list[FakePush] = []

    def make(*args: Any, **kw: Any) -> FakePush:
        push = FakePush(*args, **kw)
        made.append(push)
        return push

    yield make
    for push in made:
        push.close("test_end")


def call(address: RedisAddress, **body: Any) -> tuple[int, dict, float]:
    params = ControlParams.model_validate({"redisHost": address.host, "redisPort": address.port,
                                           "redisDb": address.db, "userSig": SIG, **body})
    t0 = time.monotonic()
    status, got = answer(params, started=t0)
    return status, got, time.monotonic() - t0


def by_user(room: RoomRef, user: str = "pusher") -> dict:
    return {"sdkAppId": APP, "roomId": room.id, "roomIdType": 0 if room.is_string else 1, "userId": user}


# --- applied ---------------------------------------------------------------------------------------

def test_status_by_request_id_and_by_user_answers_the_push_s_state(address, room, pushes):
    push = pushes(address, room)
    for target in ({"requestId": push.request_id}, by_user(room)):
        status, body, took = call(address, action="status", **target)
        assert status == 200, body
        assert body["applied"] is True and body["requestId"] == push.request_id
        assert body["state"] == {"status": "playing", "videoSrc": "/lesson-1.mp4", "position": 12.5, "queue": [],
                                 "volume": 100}
        assert took < BUDGET
    assert [c.action for c in push.seen] == ["status", "status"]


def test_each_action_reaches_the_push_with_its_arguments(address, room, pushes):
    push = pushes(address, room)
    rid = {"requestId": push.request_id}
    assert call(address, action="pause", **rid)[1]["state"]["status"] == "paused"
    assert call(address, action="resume", **rid)[1]["state"]["status"] == "playing"
    assert call(address, action="volume", volume=35, **rid)[1]["state"]["volume"] == 35
    status, body, _ = call(address, action="switch", videoSrc="/lesson-2.mp4", seekSecond=4.5, **rid)
    assert status == 200 and body["state"]["videoSrc"] == "/lesson-2.mp4" and body["state"]["position"] == 4.5
    assert body["switches"] == 1  # what the push adds to its answer reaches the caller
    status, body, _ = call(address, action="enqueue", videoSrc=["/a.mp4", "/b.mp4", "/c.mp4"], **rid)
    assert body["state"]["queue"] == ["/a.mp4", "/b.mp4", "/c.mp4"]
    switch = next(c for c in push.seen if c.action == "switch")
    assert (switch.sources, switch.seek_second, switch.volume) == (("/lesson-2.mp4",), 4.5, None)
    # The command came with most of the budget left, measured on Redis's clock.
    assert 0.5 < switch.deadline - switch.received <= commands.APPLY_BUDGET_S


def test_the_registry_record_shows_the_published_state(address, room, pushes, redis_server):
    push = pushes(address, room, heartbeat_s=0.2)
    push.state.position = 42.0
    push.inbox.publish_state(push.state)
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    record = poll_until(lambda: (r := client.hgetall(keys.run_key(push.request_id)))
                        and json.loads(r["state"])["position"] == 42.0 and r, timeout=3)
    assert record["userId"] == "pusher" and record["room"] == room.key and record["sdkAppId"] == str(APP)
    assert 0 < client.ttl(keys.run_key(push.request_id)) <= commands.REGISTRY_TTL_S
    assert client.get(keys.user_key(APP, room, "pusher")) == push.request_id


# --- refused, or not answered -----------------------------------------------------------------------

def test_a_refusal_is_a_409_with_the_push_s_reason_and_nothing_changes(address, room, pushes):
    def refuse(c: Command):
        if c.action == "switch" and c.video_src == "/missing.mp4":
            return Kind.CONFLICT, "source_error", "videoSrc /missing.mp4: file not found"
        return None

    push = pushes(address, room, refuse=refuse)
    status, body, took = call(address, action="switch", videoSrc="/missing.mp4", requestId=push.request_id)
    assert status == 409 and took < BUDGET
    assert body["reason"] == "source_error" and "file not found" in body["message"]
    assert call(address, action="status", requestId=push.request_id)[1]["state"]["videoSrc"] == "/lesson-1.mp4"


def test_a_push_that_cannot_apply_in_time_refuses_past_its_deadline_and_the_call_gets_409(address, room, pushes):
    push = pushes(address, room, answer=False)  # takes the command, never gets round to it
    status, body, took = call(address, action="pause", requestId=push.request_id)
    # The push's deadline comes before the caller's: expire_overdue refused it, the loop drops it.
    assert status == 409 and body["reason"] == "not_applied" and "nothing was changed" in body["message"], body
    assert took < BUDGET
    assert [c.action for c in push.expired] == ["pause"]


def test_a_push_that_takes_a_command_and_goes_silent_gets_409_within_2_s(address, room, pushes):
    push = pushes(address, room, answer=False, expire=False)  # e.g. stuck in a long call
    status, body, took = call(address, action="pause", requestId=push.request_id)
    assert status == 409 and body["reason"] == "not_acknowledged" and "took the command" in body["message"], body
    assert took < BUDGET


def test_a_registered_push_that_takes_nothing_gets_409_and_the_command_is_withdrawn(address, room, redis_server):
    # What a push that died a moment ago leaves: its registration, with nobody reading the inbox.
    rid = f"req-{uuid.uuid4().hex[:12]}"
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    client.hset(keys.run_key(rid), mapping={"requestId": rid, "sdkAppId": str(APP), "room": room.key,
                                            "userId": "ghost", **proof.registration_fields(SIG, None)})
    client.expire(keys.run_key(rid), 30)
    status, body, took = call(address, action="stop", requestId=rid)
    assert status == 409 and body["reason"] == "not_acknowledged" and "withdrawn" in body["message"]
    assert took < BUDGET
    assert client.llen(keys.inbox_key(rid)) == 0  # nothing waits to be applied later
    client.delete(keys.run_key(rid))


# --- the push's end, and pushes that are gone ------------------------------------------------------

def test_a_command_that_races_the_push_s_end_is_answered_409_ending_then_404(address, room, pushes):
    push = pushes(address, room)
    push.stop_polling()  # the loop is busy ending: the command is taken but never polled
    answers: list[tuple[int, dict, float]] = []
    caller = threading.Thread(target=lambda: answers.append(call(address, action="pause",
                                                                 requestId=push.request_id)))
    caller.start()
    assert poll_until(lambda: push.inbox.commands >= 1, timeout=2)
    push.close("end_of_source")
    caller.join(3)
    status, body, took = answers[0]
    assert status == 409 and body["reason"] == "ending" and "end_of_source" in body["message"]
    assert took < BUDGET
    status, body, _ = call(address, action="status", requestId=push.request_id)
    assert status == 404 and body["endedReason"] == "end_of_source" and "no longer running" in body["message"]
    status, body, _ = call(address, action="status", **by_user(room))
    assert status == 404 and "no running push matches" in body["message"]


def test_calls_racing_close_are_all_answered_in_time_never_lost(address, room, pushes):
    push = pushes(address, room)
    answers: list[tuple[int, dict, float]] = []
    callers = [threading.Thread(target=lambda: answers.append(call(address, action="status",
                                                                   requestId=push.request_id)))
               for _ in range(6)]
    for n, t in enumerate(callers):
        t.start()
        if n == 2:
            push.close("terminated")
    for t in callers:
        t.join(4)
    assert len(answers) == 6
    for status, body, took in answers:
        assert took < BUDGET, body
        assert (status, body.get("reason")) in ((200, None), (409, "ending"), (404, "not_running")), body


def test_a_superseded_push_is_404_naming_the_newer_one(address, room, pushes):
    old = pushes(address, room)
    new = pushes(address, room)  # the same user entered the room again
    status, body, _ = call(address, action="status", **by_user(room))
    assert status == 200 and body["requestId"] == new.request_id
    status, body, _ = call(address, action="pause", requestId=old.request_id)
    assert status == 404 and body["reason"] == "superseded" and body["supersededBy"] == new.request_id
    assert not [c for c in old.seen if c.action == "pause"]  # never reached the old push
    old.close("replaced")
    status, body, _ = call(address, action="status", requestId=old.request_id)
    assert status == 404 and body["supersededBy"] == new.request_id
    # The old push's end did not take the user's registration away from the new one.
    assert call(address, action="status", **by_user(room))[1]["requestId"] == new.request_id


def test_request_id_and_user_that_name_different_pushes_is_404(address, room, pushes):
    push = pushes(address, room, user="teacher")
    status, body, _ = call(address, action="status", requestId=push.request_id, userId="student", sdkAppId=APP,
                           roomId=room.id, roomIdType=0)
    assert status == 404 and "as userId teacher, not student" in body["message"]


def test_no_such_push_is_404_saying_where_it_looked(address, room):
    status, body, took = call(address, action="status", requestId="req-never-ran")
    assert status == 404 and body["reason"] == "not_running" and address.where in body["message"]
    assert took < 0.5


def test_a_push_that_died_without_unregistering_disappears_after_its_ttl(address, room, redis_server):
    rid = f"req-{uuid.uuid4().hex[:12]}"
    script = (
        "import sys, time\n"
        "from shared.redis.address import RedisAddress\n"
        "from shared.push.control import ControlInbox, PushState\n"
        "from shared.room import RoomRef\n"
        "from shared.runtime import get_logger\n"
        f"inbox = ControlInbox.register(RedisAddress({redis_server.host!r}, {redis_server.port}), request_id={rid!r},"
        f" sdk_app_id={APP}, room=RoomRef({room.id!r}), user_id='pusher', state=PushState(),"
        f" log=get_logger(), ttl_s=2, heartbeat_s=0.4, user_sig={SIG!r})\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    for c in inbox.poll():\n"
        "        inbox.ack(c, PushState())\n"
        "    time.sleep(0.01)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # alive past its first TTL: the heartbeat keeps it
        status, body, _ = call(address, action="status", requestId=rid)
        assert status == 200, body
        proc.kill()
        proc.wait(5)
        status = poll_until(lambda: call(address, action="status", requestId=rid)[0] == 404, timeout=5, step=0.3)
        assert status, "the dead push's registration did not expire"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# --- Redis trouble -----------------------------------------------------------------------------------

def test_redis_unreachable_is_503_at_once(room):
    status, body, took = call(RedisAddress("127.0.0.1", 1), action="status", requestId="req-x")
    assert status == 503 and body["reason"] == "redis_unavailable" and "127.0.0.1:1" in body["message"]
    assert took < 1.0


def test_the_push_loop_never_waits_on_an_absent_redis_and_is_controllable_again_after(fresh_redis, room, pushes):
    address = RedisAddress(fresh_redis.host, fresh_redis.port)
    push = pushes(address, room, heartbeat_s=0.3, read_wait_s=0.3)
    assert call(address, action="status", requestId=push.request_id)[0] == 200
    fresh_redis.stop()
    status, body, _ = call(address, action="status", requestId=push.request_id)
    assert status == 503
    time.sleep(1.0)  # the stimulus: the push loop runs on for a second with its Redis gone
    recent = push.poll_seconds[-20:]
    assert recent and max(recent) < 0.01  # poll() is local: the loop goes on at full speed
    fresh_redis.start()
    ok = poll_until(lambda: call(address, action="volume", volume=7, requestId=push.request_id)[0] == 200,
                    timeout=8, step=0.3)
    assert ok, "the push was not controllable again once Redis was back"
