"""recognize_stream's lifecycle events through the gateway: `started`, then the end (`stopped`,
carrying the result) after every sentence callback reached Callback (one sender, one lane per URL,
so the result comes last); a second start with the same IdempotencyKey is a duplicate."""
from __future__ import annotations

from typing import Iterator

import pytest

from emulator.cloud import CloudConfig, LocalCloud
from tests.recognize.conftest import Classroom, until

from .conftest import ended, events_of, types


@pytest.fixture(scope="module")
def asr_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    c = LocalCloud(CloudConfig(state_dir=tmp_path_factory.mktemp("recognize-events") / "state",
                               shutdown_grace_s=2.0, asr_max_concurrency=4, bucket="recev-1250000000")).start()
    assert c.asr is not None
    c.asr.backend.pool.warm()
    yield c
    c.stop()


def test_a_recognition_sends_started_then_its_end_after_every_sentence(asr_cloud, callback_receiver, event_receiver):
    classroom = Classroom(asr_cloud, callback_receiver)
    try:
        room = classroom.new_room()
        alice = classroom.student(room, "alice")
        key = f"asr-{room}"
        params = classroom.params(room, EventCallback=event_receiver.url, IdempotencyKey=key, MaxIdleTime=3)
        rid = classroom.start(params)
        until(lambda: "started" in types(events_of(event_receiver)), 20, "the started event")
        again = classroom.start({**params, "UserSig": asr_cloud.rooms.usersig("recognizer")})
        alice.say("i think it is a triangle")
        until(lambda: any(b.get("Status") == "recognizing" for b in classroom.bodies(rid)), 25, "a sentence")
        alice.leave()
        result = classroom.result(rid)
        until(lambda: ended(event_receiver) and len(types(events_of(event_receiver))) >= 3, 30,
              "both runs' ends")
        mine = [e for e in events_of(event_receiver) if e["RequestId"] == rid]
        dup = [e for e in events_of(event_receiver) if e["RequestId"] == again]
        assert types(mine) == ["started", "stopped"] and [e["EventSeq"] for e in mine] == [1, 2]
        assert mine[-1]["Payload"]["Result"]["CallbackId"] == result["CallbackId"]
        assert types(dup) == ["duplicate"] and dup[0]["Payload"]["Result"]["OriginalRequestId"] == rid
        bodies = classroom.bodies(rid)
        assert bodies[-1]["Status"] == "finished" and any(b["Status"] == "recognizing" for b in bodies[:-1])
        assert not any(b.get("RequestID") == again for b in (r.json for r in callback_receiver.received))
    finally:
        classroom.close()
