"""shared.outbox against real receivers on 127.0.0.1: order per URL, ids stable across retries,
a receiver down then up gets everything in order, a slow one never blocks put(), bounded memory,
signed as TRTC signs."""
from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from emulator.callbacks import CallbackReceiver
from emulator.httpserver import HttpServer
from shared.outbox import Outbox
from shared.outbox.delivery import CALLBACK_ID_HEADER


class SlowReceiver:
    """Answers every POST after `delay` seconds; records bodies in arrival order."""

    def __init__(self, delay: float):
        self.delay = delay
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay)  # the receiver's own slowness, not the test's synchronisation
                receiver.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.http = HttpServer(Handler, name="slow-receiver", poll_interval=0.05)
        self.http.start()
        self.url = f"{self.http.url}/slow"

    def stop(self) -> None:
        self.http.stop()


def _poll(cond, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def outbox():
    boxes: list[Outbox] = []

    def make(**kw: Any) -> Outbox:
        kw.setdefault("backoff", 0.05)
        kw.setdefault("max_backoff", 0.2)
        kw.setdefault("timeout", 2.0)
        box = Outbox(**kw)
        box.start()
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.close()
        box.join(5)


def test_messages_to_one_url_arrive_in_order_with_their_ids(outbox, callback_receiver, monkeypatch):
    monkeypatch.setenv("CALLBACK_SIGN_KEY", "outboxKey123")
    box = outbox(sign_key=None)
    tickets = [box.put(callback_receiver.url, {"SdkAppId": 1400000001, "n": n}) for n in range(20)]
    assert all(t is not None for t in tickets)
    got = callback_receiver.wait_for(20)
    assert [r.json["n"] for r in got] == list(range(20))
    for ticket, r in zip(tickets, got):
        assert ticket is not None and ticket.wait(5) is True
        assert r.json["CallbackId"] == ticket.message.id == r.headers[CALLBACK_ID_HEADER]
        assert r.headers["SdkAppId"] == "1400000001"
        assert r.headers["Sign"] == base64.b64encode(hmac.new(b"outboxKey123", r.body, hashlib.sha256).digest()).decode()


def test_an_id_is_the_same_on_every_retry_and_order_holds_behind_it(outbox, callback_receiver):
    callback_receiver.fail_next(3)  # the first message is answered 503 three times
    box = outbox()
    first = box.put(callback_receiver.url, {"n": 0}, id_key="EventId")
    second = box.put(callback_receiver.url, {"n": 1}, id_key="EventId")
    assert first is not None and second is not None
    assert first.wait(10) is True and second.wait(10) is True
    assert callback_receiver.attempts == 5 and first.attempts == 4
    assert [r.json["n"] for r in callback_receiver.received] == [0, 1]
    assert callback_receiver.received[0].json["EventId"] == first.message.id


def test_a_receiver_down_then_up_gets_every_message_in_order(outbox, callback_receiver):
    box = outbox(retry_for=5.0)
    callback_receiver.down()
    tickets = [box.put(callback_receiver.url, {"n": n}) for n in range(10)]
    time.sleep(1.5)  # the receiver's outage (what is tested is what happens across it)
    assert callback_receiver.received == []
    callback_receiver.up()
    got = callback_receiver.wait_for(10, timeout=10)
    assert [r.json["n"] for r in got] == list(range(10))
    assert all(t is not None and t.wait(5) for t in tickets)
    assert len({r.json["CallbackId"] for r in got}) == 10  # each delivered once


def test_a_slow_receiver_never_blocks_put_nor_another_url(outbox, callback_receiver):
    slow = SlowReceiver(delay=1.0)
    try:
        box = outbox()
        started = time.monotonic()
        for n in range(5):
            box.put(slow.url, {"n": n})
        fast = box.put(callback_receiver.url, {"fast": True})
        put_s = time.monotonic() - started
        assert put_s < 0.2, put_s  # put() only queues
        assert fast is not None and fast.wait(3) is True  # not behind the slow URL's five seconds
        assert len(slow.bodies) <= 2
        assert box.flush(time.monotonic() + 15)
        assert [int(b.split(b'"n":')[1][0:1]) for b in slow.bodies] == [0, 1, 2, 3, 4]
    finally:
        slow.stop()


def test_a_receiver_down_for_good_is_given_up_message_by_message_then_the_outbox_ends(outbox, callback_receiver):
    url = callback_receiver.url
    callback_receiver.down()
    box = outbox(retry_for=0.5)
    tickets = [box.put(url, {"n": n}) for n in range(5)]
    assert box.finish(time.monotonic() + 10)
    assert [t.delivered for t in tickets if t is not None] == [False] * 5
    assert tickets[0] is not None and tickets[0].attempts > 1
    assert all(t is not None and t.attempts == 1 for t in tickets[1:])  # the lane was down: one try each


def test_past_the_bound_put_refuses_but_never_an_essential_message(outbox, callback_receiver):
    callback_receiver.down()
    box = outbox(max_messages=3, retry_for=0.2)
    taken = [box.put(callback_receiver.url, {"n": n}) for n in range(5)]
    assert [t is not None for t in taken] == [True, True, True, False, False]
    assert box.dropped == 2
    assert box.put(callback_receiver.url, {"end": True}, essential=True) is not None


def test_finish_gives_up_what_is_left_at_its_deadline(outbox, callback_receiver):
    callback_receiver.down()
    box = outbox(retry_for=60.0)
    ticket = box.put(callback_receiver.url, {"n": 0})
    t0 = time.monotonic()
    assert box.finish(t0 + 0.5) is False
    assert time.monotonic() - t0 < 5
    assert ticket is not None and ticket.delivered is False
    assert box.put(callback_receiver.url, {"late": True}) is None  # closed


def test_a_refused_url_is_settled_at_once_and_nothing_is_sent(outbox, callback_receiver, monkeypatch):
    monkeypatch.delenv("CALLBACK_ALLOWLIST", raising=False)
    box = outbox()
    ticket = box.put(callback_receiver.url, {"n": 0})
    assert ticket is not None and ticket.delivered is False and "CALLBACK_ALLOWLIST" in ticket.error
    assert callback_receiver.attempts == 0


def test_put_from_many_threads_keeps_each_threads_order(outbox, callback_receiver):
    box = outbox()

    def producer(name: str) -> None:
        for n in range(10):
            box.put(callback_receiver.url, {"t": name, "n": n})

    threads = [threading.Thread(target=producer, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    got = callback_receiver.wait_for(40)
    for i in range(4):
        assert [r.json["n"] for r in got if r.json["t"] == f"t{i}"] == list(range(10))


def test_a_second_receiver_is_its_own_lane(outbox, callback_receiver):
    other = CallbackReceiver(path="/other").start()
    try:
        other.fail_next(2)
        box = outbox()
        box.put(other.url, {"to": "other"})
        box.put(callback_receiver.url, {"to": "main"})
        callback_receiver.wait_for(1, timeout=5)
        other.wait_for(1, timeout=5)
        assert other.attempts == 3
    finally:
        other.stop()
