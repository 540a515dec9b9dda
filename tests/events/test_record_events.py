"""record_stream's lifecycle events through the gateway: a recording with two anchors, one leaving
and coming back; a recording killed hard and finished by the recovery (`recovered`, and nothing
after it); an EventCallback down for 30 s then up (every event, in order, no gap); a second start
with the same IdempotencyKey (one recorder in the room, one file) and the same key with other
parameters (a conflict naming the key)."""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import requests

from emulator.callbacks import CallbackReceiver
from emulator.cloud import LocalCloud
from tests.cloud.conftest import until
from tests.record.conftest import Anchor

from .conftest import check_stream, ended, events_of, types

_rooms = iter(range(840001, 840200))


def _body(cloud: LocalCloud, room: int, **extra: Any) -> dict[str, Any]:
    info = cloud.info()
    return {"SdkAppId": info["sdkAppId"], "RoomId": room, "UserId": "recorder",
            "UserSig": cloud.rooms.usersig("recorder"),
            "CosConfig": {"Region": info["cos"]["region"], "Bucket": info["cos"]["bucket"], "Path": "/ev"},
            "Mode": "00", "SegmentDuration": 2, "MaxIdleTime": 2, **extra}


def _post(cloud: LocalCloud, body: dict[str, Any]) -> str:
    answer = requests.post(f"{cloud.info()['gateway']}/record_stream", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-scf-reqid"]


def _in_room(cloud: LocalCloud, room: int) -> list[str]:
    return cloud.rooms.rooms.user_ids(cloud.info()["sdkAppId"], room)


def _result(cloud: LocalCloud, request_id: str, timeout: float = 90.0) -> Any:
    """The run's result (the body of the API Gateway answer the handler made)."""
    assert cloud.scf is not None
    until(lambda: cloud.scf.get(request_id).ended_at is not None, timeout, "the run's end")
    result = cloud.scf.get(request_id).result
    return json.loads(result["body"]) if isinstance(result, dict) and "body" in result else result


def test_two_anchors_one_leaving_and_coming_back(cloud, event_receiver, callback_receiver):
    room = next(_rooms)
    rid = _post(cloud, _body(cloud, room, EventCallback=event_receiver.url, Callback=callback_receiver.url))
    until(lambda: "recorder" in _in_room(cloud, room), 20, "the recorder in the room")
    alice = Anchor(cloud.rooms, room, "alice").publish(7.0)
    bob = Anchor(cloud.rooms, room, "bob").publish(2.0)
    bob.wait()
    bob.leave()
    until(lambda: "anchor_left" in types(events_of(event_receiver)), 20, "bob's leaving")
    bob = Anchor(cloud.rooms, room, "bob").publish(2.0)
    bob.wait()
    bob.leave()
    alice.wait()
    alice.leave()
    until(lambda: ended(event_receiver), 60, "the end event")

    events = check_stream(event_receiver, rid)
    kinds = types(events)
    assert kinds[0] == "started" and events[0]["TrtcEventType"] == 301 and events[0]["EventGroupId"] == 3
    assert kinds[-1] == "stopped" and events[-1]["TrtcEventType"] == 302
    joined = [e["Payload"]["AnchorId"] for e in events if e["EventType"] == "anchor_joined"]
    left = [e["Payload"]["AnchorId"] for e in events if e["EventType"] == "anchor_left"]
    assert sorted(joined) == ["alice", "bob", "bob"] and left == ["bob", "bob", "alice"], kinds
    started = [e["Payload"] for e in events if e["EventType"] == "file_started"]
    done = [e["Payload"]["File"] for e in events if e["EventType"] == "file_done"]
    assert sorted(p["AnchorId"] for p in started) == ["alice", "bob", "bob"]
    assert all(e["TrtcEventType"] == 307 for e in events if e["EventType"] == "file_started")
    assert all(e["TrtcEventType"] == 310 for e in events if e["EventType"] == "file_done")
    assert sorted(f["UserId"] for f in done) == ["alice", "bob", "bob"] and all(f["Status"] == 1 for f in done)
    assert sorted(p["RecordFile"] for p in started) == sorted(f["RecordFile"] for f in done)
    assert "segment_uploaded" not in kinds and "upload_failed" not in kinds  # EventVerbose was not asked for
    # Each anchor's file starts before it is done; bob's second stay starts after his first left.
    first_left = kinds.index("anchor_left")
    assert [p["AnchorId"] for p in started].count("bob") == 2
    assert kinds[first_left + 1:].count("file_started") >= 1
    # The end carries the result, the same the Callback got.
    result = events[-1]["Payload"]["Result"]
    [posted] = callback_receiver.wait_for(1, timeout=30)
    assert result == posted.json and len(result["Files"]) == 3
    assert events[0]["SdkAppId"] == cloud.info()["sdkAppId"] and events[0]["RoomId"] == room
    assert events[0]["UserId"] == "recorder" and events[0]["Function"] == "record_stream"


def test_event_verbose_adds_segment_uploaded(cloud, event_receiver):
    room = next(_rooms)
    rid = _post(cloud, _body(cloud, room, EventCallback=event_receiver.url, EventVerbose=True))
    until(lambda: "recorder" in _in_room(cloud, room), 20, "the recorder in the room")
    alice = Anchor(cloud.rooms, room, "alice").publish(5.0)
    alice.wait()
    alice.leave()
    until(lambda: ended(event_receiver), 60, "the end event")
    events = check_stream(event_receiver, rid)
    uploaded = [e for e in events if e["EventType"] == "segment_uploaded"]
    assert len(uploaded) >= 2 and all(e["Payload"]["Bytes"] > 0 for e in uploaded)
    assert types(events).index("file_started") < types(events).index("segment_uploaded")


def test_a_run_killed_hard_is_finished_by_the_recovery_whose_recovered_is_the_last_event(cloud, event_receiver,
                                                                                          callback_receiver):
    room = next(_rooms)
    rid = _post(cloud, _body(cloud, room, EventCallback=event_receiver.url, Callback=callback_receiver.url,
                             MaxIdleTime=60))
    until(lambda: "recorder" in _in_room(cloud, room), 20, "the recorder in the room")
    alice = Anchor(cloud.rooms, room, "alice").publish(8.0)
    until(lambda: "file_started" in types(events_of(event_receiver)), 20, "the first file")
    time.sleep(3.0)  # the stimulus: a few segments recorded before the kill
    assert cloud.scf is not None
    pid = cloud.scf.get(rid).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    until(lambda: ended(event_receiver), 120, "the recovered event")
    alice.wait()
    alice.leave()

    # Two more sweeps: nothing comes after `recovered`.
    assert cloud.timers is not None
    seen = len(cloud.timers.fired)
    until(lambda: len(cloud.timers.fired) >= seen + 2
          and all(cloud.scf.get(r).ended_at is not None for _, r in cloud.timers.fired[seen:seen + 2]),
          30, "two more sweeps")
    events = check_stream(event_receiver, rid)
    last = events[-1]
    assert last["EventType"] == "recovered" and last["TrtcEventType"] == 306
    assert last["Payload"]["Result"]["Reason"] == "recovered"
    assert types(events)[0] == "started" and "file_started" in types(events)
    [posted] = callback_receiver.wait_for(1, timeout=30)
    assert posted.json["Reason"] == "recovered" and len(callback_receiver.received) == 1


def test_an_event_callback_down_for_30_s_then_up_gets_every_event_in_order(cloud, event_receiver):
    room = next(_rooms)
    event_receiver.down()
    down_at = time.monotonic()
    rid = _post(cloud, _body(cloud, room, EventCallback=event_receiver.url))
    until(lambda: "recorder" in _in_room(cloud, room), 20, "the recorder in the room")
    alice = Anchor(cloud.rooms, room, "alice").publish(3.0)
    alice.wait()
    alice.leave()
    bob = Anchor(cloud.rooms, room, "bob").publish(2.0)
    bob.wait()
    bob.leave()
    time.sleep(max(0.0, 30.0 - (time.monotonic() - down_at)))  # the stimulus: the receiver is down 30 s
    assert event_receiver.received == []
    event_receiver.up()
    until(lambda: ended(event_receiver), 40, "the end event")
    events = check_stream(event_receiver, rid)
    assert types(events)[0] == "started" and types(events).count("file_done") == 2
    assert len(event_receiver.received) == len(events)  # each once: nothing got through while it was down
    assert _result(cloud, rid)["status"] == "finished"


def _result_of_first_pending(cloud: LocalCloud, request_id: str) -> bool:
    assert cloud.scf is not None
    return cloud.scf.get(request_id).ended_at is None  # still recording: the duplicate did not replace it


def test_a_second_start_with_the_same_key_is_a_duplicate_and_other_parameters_a_conflict(
        cloud, event_receiver, callback_receiver):
    room = next(_rooms)
    key = f"rec-{room}"
    body = _body(cloud, room, Callback=callback_receiver.url, IdempotencyKey=key, MaxIdleTime=4)
    first = _post(cloud, body)
    until(lambda: "recorder" in _in_room(cloud, room), 20, "the recorder in the room")
    alice = Anchor(cloud.rooms, room, "alice").publish(6.0)  # the first recording goes on meanwhile
    again = CallbackReceiver(path="/again").start()
    try:
        second = _post(cloud, {**body, "EventCallback": again.url, "UserSig": cloud.rooms.usersig("recorder")})
        result = _result(cloud, second, 30)
        assert result["status"] == "duplicate" and result["OriginalRequestId"] == first, result
        until(lambda: ended(again), 20, "the duplicate's event")
        [event] = check_stream(again, second)
        assert event["EventType"] == "duplicate" and event["Payload"]["Result"] == result
    finally:
        again.stop()
    conflict = _post(cloud, {**body, "MaxIdleTime": 5})
    refused = _result(cloud, conflict, 30)
    assert refused["status"] == "failed" and refused["reason"] == "idempotency_conflict", refused
    assert key in refused["message"] and "IdempotencyKey" in refused["message"]
    assert refused["OriginalRequestId"] == first
    assert _in_room(cloud, room).count("recorder") == 1 and _result_of_first_pending(cloud, first)
    alice.wait()
    alice.leave()
    [posted] = callback_receiver.wait_for(1, timeout=60)
    assert posted.json["RequestId"] == first and len(posted.json["Files"]) == 1  # one recording, one file
    assert _result(cloud, first)["Reason"] == "idle"
    assert len(callback_receiver.received) == 1
