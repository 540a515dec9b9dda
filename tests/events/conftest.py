"""What the event tests share: a local cloud (gateway, SCF, rooms, COS, Redis, record_stream's timer
every 2 s), receivers for EventCallback, and the checks every event stream must pass."""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Iterator

import pytest

from emulator.callbacks import CallbackReceiver
from emulator.cloud import CloudConfig, LocalCloud
from tests.record.segmented import bucket, cos_env, prefix  # noqa: F401  (the local COS's fixtures)

SIGN_KEY = "eventsSignKey123"


@pytest.fixture(scope="package")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    c = LocalCloud(CloudConfig(state_dir=tmp_path_factory.mktemp("events") / "state", shutdown_grace_s=2.0,
                               bucket="eventstest-1250000000", timer_tick_s=2.0,
                               extra_env={"CALLBACK_SIGN_KEY": SIGN_KEY})).start()
    yield c
    c.stop()


@pytest.fixture
def event_receiver() -> Iterator[CallbackReceiver]:
    r = CallbackReceiver(path="/events").start()
    yield r
    r.stop()


def events_of(receiver: CallbackReceiver) -> list[dict[str, Any]]:
    """The events received, each once (an event POSTed again keeps its EventId), in arrival order."""
    seen: set[str] = set()
    out = []
    for r in list(receiver.received):
        body = r.json
        if body["EventId"] not in seen:
            seen.add(body["EventId"])
            out.append(body)
    return out


def ended(receiver: CallbackReceiver) -> bool:
    return any(e["EventType"] in ("stopped", "recovered", "duplicate") for e in events_of(receiver))


def check_stream(receiver: CallbackReceiver, request_id: str) -> list[dict[str, Any]]:
    """Every event of the run: signed as TRTC signs, numbered 1..n in the order they arrived with no
    gap, stamped in order, naming the run; the last is the end and comes last. The events, in order."""
    for r in receiver.received:
        assert r.headers["Sign"] == base64.b64encode(hmac.new(SIGN_KEY.encode(), r.body, hashlib.sha256).digest()).decode()
        assert r.headers["X-Callback-Id"] == r.json["EventId"]
    events = events_of(receiver)
    assert [e["EventSeq"] for e in events] == list(range(1, len(events) + 1)), [(e["EventSeq"], e["EventType"])
                                                                              for e in events]
    stamps = [e["EventMsTs"] for e in events]
    assert stamps == sorted(stamps)
    assert {e["RequestId"] for e in events} == {request_id}
    finals = [e for e in events if e["EventType"] in ("stopped", "recovered", "duplicate")]
    assert finals and finals[0] is events[-1] and len(finals) == 1, [e["EventType"] for e in events]
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["EventType"] for e in events]
