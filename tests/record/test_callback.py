"""shared.record.callback against a local receiver: the body arrives, signed as TRTC signs, despite failures."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

import shared.outbox.delivery as delivery
import shared.record.callback as callback
from shared.egress import DestinationRefused
from shared.record.callback import post_result, validate_callback_url

RESULT = {"SdkAppId": 1400000001, "RoomId": 1234, "UserId": "recorder", "StrRoomId": "",
          "Files": [{"UserId": "anchor", "RecordFile": "https://b-1250000000.cos.ap-guangzhou.myqcloud.com/k.mp3",
                     "Status": 1, "Message": "录制成功"}]}


def _as_sent(got) -> dict:
    """The body without its CallbackId, which must be the header's."""
    body = dict(got.json)
    assert body.pop("CallbackId") == got.headers["X-Callback-Id"]
    return body


def test_result_is_posted_as_json(callback_receiver, monkeypatch):
    monkeypatch.delenv("CALLBACK_SIGN_KEY", raising=False)
    assert post_result(callback_receiver.url, RESULT, backoff=0.05) is True
    (got,) = callback_receiver.wait_for(1)
    assert _as_sent(got) == RESULT
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.headers["SdkAppId"] == "1400000001"
    assert "Sign" not in got.headers


def test_signed_like_trtc_and_verifiable(callback_receiver, monkeypatch):
    monkeypatch.setenv("CALLBACK_SIGN_KEY", "testKey123")
    assert post_result(callback_receiver.url, RESULT, backoff=0.05)
    (got,) = callback_receiver.wait_for(1)
    # What a receiver does per TRTC's callback doc: base64(HMAC-SHA256(key, raw body)).
    expected = base64.b64encode(hmac.new(b"testKey123", got.body, hashlib.sha256).digest()).decode()
    assert got.headers["Sign"] == expected
    forged = json.dumps({**RESULT, "RoomId": 9}).encode()
    assert base64.b64encode(hmac.new(b"testKey123", forged, hashlib.sha256).digest()).decode() != got.headers["Sign"]


def test_503s_then_delivered(callback_receiver):
    callback_receiver.fail_next(2)
    assert post_result(callback_receiver.url, RESULT, tries=3, backoff=0.05)
    assert callback_receiver.attempts == 3
    assert [_as_sent(r) for r in callback_receiver.received] == [RESULT]


def test_down_then_up_is_delivered(callback_receiver, monkeypatch):
    callback_receiver.down()
    slept: list[float] = []

    def sleep_then_recover(seconds: float) -> None:  # the receiver comes back during the first backoff
        slept.append(seconds)
        callback_receiver.up()

    monkeypatch.setattr(delivery, "_sleep", sleep_then_recover)
    assert post_result(callback_receiver.url, RESULT, tries=3, backoff=0.2)
    assert len(slept) == 1 and 0.1 <= slept[0] <= 0.2
    assert _as_sent(callback_receiver.wait_for(1)[0]) == RESULT


def test_dropped_connection_is_retried(callback_receiver):
    callback_receiver.drop_next(1)
    assert post_result(callback_receiver.url, RESULT, backoff=0.05)
    assert _as_sent(callback_receiver.wait_for(1)[0]) == RESULT


def test_down_for_good_returns_false_logs_and_does_not_raise(callback_receiver, capfd):
    url = callback_receiver.url
    callback_receiver.down()
    assert post_result(url, RESULT, tries=3, backoff=0.05, timeout=2) is False
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["msg"] == "callback failed"]
    assert failed and failed[0]["tries"] == 3 and "Connection" in failed[0]["error"]
    assert sum(1 for line in lines if line["msg"] == "callback attempt failed, retrying") == 2


def test_4xx_is_not_retried(callback_receiver):
    callback_receiver.fail_next(1, status=400)
    assert post_result(callback_receiver.url, RESULT, backoff=0.05) is False
    assert callback_receiver.attempts == 1


def test_internal_host_refused_without_allowlist(callback_receiver, monkeypatch, capfd):
    monkeypatch.delenv("CALLBACK_ALLOWLIST", raising=False)
    assert post_result(callback_receiver.url, RESULT, backoff=0.05) is False
    assert callback_receiver.attempts == 0  # nothing was sent
    assert "loopback" in capfd.readouterr().err
    for url in (callback_receiver.url, "http://10.0.0.8/cb", "http://169.254.169.254/latest", "http://metadata.tencentyun.com/x"):
        with pytest.raises(DestinationRefused, match="CALLBACK_ALLOWLIST"):
            validate_callback_url(url)


def test_callback_url_must_be_http(monkeypatch):
    for url in ("ftp://example.com/x", "file:///etc/passwd", "/tmp/x", "", "http://"):
        with pytest.raises(DestinationRefused, match="http or https"):
            validate_callback_url(url)
    assert validate_callback_url("http://127.0.0.1:9/cb") == "http://127.0.0.1:9/cb"  # allowlisted in tests


def test_sign_key_never_logged(callback_receiver, monkeypatch, capfd):
    monkeypatch.setenv("CALLBACK_SIGN_KEY", "super-secret-sign-key")
    callback_receiver.fail_next(1)
    assert post_result(callback_receiver.url + "?token=abcd1234", RESULT, backoff=0.05)
    err = capfd.readouterr().err
    assert "super-secret-sign-key" not in err and "abcd1234" not in err


class _VirtualTime:
    """A clock that only moves when the callback waits: the 60 s schedule runs in no time."""

    def __init__(self, monkeypatch):
        self.now = 1000.0
        self.waits: list[float] = []
        monkeypatch.setattr(delivery, "_clock", lambda: self.now)
        monkeypatch.setattr(delivery, "_sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _failures(capfd):
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    return [line for line in lines if line["msg"] == "callback failed"]


def test_default_schedule_keeps_trying_for_at_least_a_minute(callback_receiver, monkeypatch, capfd):
    policy = callback.callback_policy()
    assert policy.shortest_span() >= 60.0  # even with every wait jittered to its shortest
    assert policy.longest_span() <= 120.0
    clock = _VirtualTime(monkeypatch)
    callback_receiver.down()
    assert post_result(callback_receiver.url, RESULT) is False
    assert len(clock.waits) == policy.tries - 1 and sum(clock.waits) >= 60.0, clock.waits
    assert max(clock.waits) <= 10.0  # backs off to TRTC's own 10 s between tries, no further
    [failed] = _failures(capfd)
    assert failed["tries"] == policy.tries and "Connection" in failed["error"]


def test_the_deadline_bounds_the_schedule(callback_receiver, monkeypatch, capfd):
    clock = _VirtualTime(monkeypatch)
    callback_receiver.down()
    assert post_result(callback_receiver.url, RESULT, deadline=clock.now + 20.0) is False
    assert clock.now <= 1020.0 and 10.0 <= sum(clock.waits) <= 20.0, clock.waits
    [failed] = _failures(capfd)
    assert failed["error"].endswith("no time left to retry")


def test_down_for_most_of_a_minute_is_still_delivered(callback_receiver, monkeypatch):
    clock = _VirtualTime(monkeypatch)
    callback_receiver.down()

    def sleep_then_maybe_recover(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now - 1000.0 >= 45.0:  # back after 45 s: TRTC's own callbacks would still arrive
            callback_receiver.up()

    monkeypatch.setattr(delivery, "_sleep", sleep_then_maybe_recover)
    assert post_result(callback_receiver.url, RESULT) is True
    assert _as_sent(callback_receiver.wait_for(1)[0]) == RESULT


def test_the_callers_tries_are_kept(callback_receiver):
    callback_receiver.fail_next(5)
    assert post_result(callback_receiver.url, RESULT, tries=1, backoff=0.01) is False
    assert callback_receiver.attempts == 1  # one try asked for, one made (it used to be raised to 3)
    assert post_result(callback_receiver.url, RESULT, tries=2, backoff=0.01) is False
    assert callback_receiver.attempts == 3


def test_a_redirect_is_not_followed_and_is_reported(callback_receiver, capfd):
    callback_receiver.fail_next(1, status=302)
    assert post_result(callback_receiver.url, RESULT, backoff=0.01) is False
    assert callback_receiver.attempts == 1 and callback_receiver.received == []  # not retried, not followed
    [failed] = _failures(capfd)
    assert failed["error"] == "HTTP 302 redirect to /callback/moved not followed (give Callback the final URL)"


def _port_of(receiver) -> int:
    return int(receiver.url.rsplit(":", 1)[1].split("/")[0])


def test_a_dns_answer_that_changes_after_the_check_never_reaches_the_internal_host(callback_receiver, fake_dns,
                                                                                  monkeypatch, capfd):
    """The name is allowed when it is checked and internal when it is connected to: the POST must
    go where the check looked, or nowhere; 127.0.0.2 stands for the metadata service."""
    from emulator.callbacks import CallbackReceiver

    monkeypatch.setenv("CALLBACK_ALLOWLIST", "127.0.0.1/32")
    port = _port_of(callback_receiver)
    internal = CallbackReceiver(host="127.0.0.2", port=port).start()
    try:
        fake_dns["cb.egress.test"] = ["127.0.0.1", "127.0.0.2"]  # the first answer, then the rebound one
        delivered = post_result(f"http://cb.egress.test:{port}/callback", RESULT, tries=3, backoff=0.01)
        assert internal.attempts == 0 and internal.received == []
        if delivered:  # connected to the address that was checked
            assert _as_sent(callback_receiver.received[0]) == RESULT
        else:
            assert "callback refused" in capfd.readouterr().err
    finally:
        internal.stop()


def test_a_callback_host_that_resolves_inside_is_refused_at_connect(callback_receiver, fake_dns, monkeypatch, capfd):
    from emulator.callbacks import CallbackReceiver

    monkeypatch.setenv("CALLBACK_ALLOWLIST", "127.0.0.1/32")
    internal = CallbackReceiver(host="127.0.0.2").start()
    try:
        fake_dns["inside.egress.test"] = ["127.0.0.2"]
        url = f"http://inside.egress.test:{_port_of(internal)}/callback"
        assert post_result(url, RESULT, tries=3, backoff=0.01) is False
        assert internal.attempts == 0
        err = capfd.readouterr().err
        assert "callback refused" in err and "CALLBACK_ALLOWLIST" in err and "127.0.0.2" in err
    finally:
        internal.stop()


class _SlowReceiver:
    """A receiver that answers 200 only after `delay` seconds: later than the callback's 5 s
    timeout, so every POST looks lost to the sender although the receiver got it."""

    def __init__(self, delay: float):
        import http.server
        import threading

        self.got: list[tuple[dict, dict]] = []  # (headers, body) of every POST that arrived
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append((dict(self.headers.items()), json.loads(body)))
                receiver.release.wait(delay)  # busy: the answer comes too late
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up on this attempt already

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_receiver_slower_than_the_timeout_sees_one_id_on_every_retry():
    receiver = _SlowReceiver(delay=6.5)
    try:
        assert post_result(receiver.url, RESULT, tries=2, backoff=0.05) is False  # both attempts timed out
    finally:
        receiver.close()
    assert len(receiver.got) == 2, receiver.got
    ids = {headers["X-Callback-Id"] for headers, _ in receiver.got}
    assert len(ids) == 1 and all(body["CallbackId"] in ids for _, body in receiver.got)
    assert [{k: v for k, v in body.items() if k != "CallbackId"} for _, body in receiver.got] == [RESULT, RESULT]
    # Another result gets another id: the id names one result, not the sender.
    other = _SlowReceiver(delay=0)
    try:
        assert post_result(other.url, RESULT, tries=1)
    finally:
        other.close()
    assert other.got[0][0]["X-Callback-Id"] not in ids
