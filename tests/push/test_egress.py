"""push_stream reaches only what the egress rules allow, through its public handler: another
caller's recording on the shared file system is not a source, and redisHost is an address inside
the VPC like any other (checked, and its failures never tell an open port from a closed one)."""
from __future__ import annotations

import shutil
import socket
import time

import pytest

from functions.push_stream.index import main_handler
from shared.room import RoomRef

from .conftest import new_room, params_for


def test_another_callers_recording_on_the_shared_file_system_is_refused(push_env, subscribe, clip3, tmp_path,
                                                                         monkeypatch):
    # serverless.yml mounts one CFS on both functions; a failed upload leaves files/record_<id>/.
    cfs = tmp_path / "cfs"
    recording = cfs / "record_req-someone-else" / "anchor.mp4"
    recording.parent.mkdir(parents=True)
    shutil.copy(clip3, recording)
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(clip3, media / "mine.mp4")
    monkeypatch.setenv("LOCAL_SOURCE_DIRS", str(media))
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    for src in (str(recording), recording.as_uri(), str(media / ".." / "cfs" / recording.parent.name / "anchor.mp4")):
        result = main_handler(params_for(push_env, src, room), {"request_id": "req-steal"})
        assert (result["status"], result["reason"]) == ("failed", "source_error"), result
        assert "LOCAL_SOURCE_DIRS" in result["message"]
    time.sleep(0.3)  # the window: an entry into the room would be seen in it (nothing to poll for)
    assert sub.got.entered == [] and sub.got.video_pts == []

    ok = main_handler(params_for(push_env, media / "mine.mp4", room), {"request_id": "req-mine"})
    assert (ok["status"], ok["reason"]) == ("completed", "end_of_source"), ok


def _silent_listener(host: str) -> socket.socket:
    """Accepts connections (the kernel does) and never answers."""
    s = socket.socket()
    s.bind((host, 0))
    s.listen(4)
    s.settimeout(0.2)
    return s


def test_a_redis_host_on_a_refused_address_is_never_contacted(push_env, subscribe, clip3, monkeypatch):
    monkeypatch.setenv("REDIS_ALLOWLIST", "127.0.0.1/32")
    listener = _silent_listener("127.0.0.2")
    port = listener.getsockname()[1]
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    try:
        result = main_handler(params_for(push_env, clip3, room, redis=True, redisHost="127.0.0.2", redisPort=port), {})
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing connected
    finally:
        listener.close()
    assert (result["status"], result["reason"]) == ("failed", "redis_unavailable"), result
    assert "127.0.0.2" in result["message"] and "REDIS_ALLOWLIST" in result["message"]
    assert "nothing was pushed" in result["message"]
    time.sleep(0.3)  # the window: an entry into the room would be seen in it (nothing to poll for)
    assert sub.got.entered == []


def test_a_redis_host_name_is_checked_on_the_address_it_resolves_to(push_env, clip3, fake_dns, monkeypatch):
    monkeypatch.setenv("REDIS_ALLOWLIST", "127.0.0.1/32")
    fake_dns["redis.egress.test"] = ["127.0.0.2"]
    result = main_handler(params_for(push_env, clip3, new_room(), redis=True, redisHost="redis.egress.test",
                                     redisPort=6379), {})
    assert (result["status"], result["reason"]) == ("failed", "redis_unavailable"), result
    assert "127.0.0.2" in result["message"] and "REDIS_ALLOWLIST" in result["message"]


def test_redis_errors_do_not_tell_an_open_port_from_a_closed_one(push_env, clip3):
    from emulator.redis.server import free_port

    closed = free_port()
    listener = _silent_listener("127.0.0.1")  # open, but not a Redis that answers
    messages, took = [], []
    try:
        for port in (closed, listener.getsockname()[1]):
            t0 = time.monotonic()
            result = main_handler(params_for(push_env, clip3, new_room(), redis=True, redisHost="127.0.0.1",
                                             redisPort=port), {})
            took.append(time.monotonic() - t0)
            assert (result["status"], result["reason"]) == ("failed", "redis_unavailable"), result
            assert f"Redis at 127.0.0.1:{port} is unreachable" in result["message"]
            messages.append(result["message"].replace(str(port), "PORT"))
    finally:
        listener.close()
    assert messages[0] == messages[1]
    assert abs(took[0] - took[1]) < 0.3


# --- push_control and the push's registration go through the same door (issue 18.2) -------------

def _control(body: dict) -> tuple[int, dict]:
    import json

    from functions.push_control.index import main_handler as control_handler

    event = {"httpMethod": "POST", "path": "/push_control", "headers": {"content-type": "application/json"},
             "requestContext": {"stage": "release"}, "queryString": {}, "body": json.dumps(body)}
    response = control_handler(event, {"request_id": "req-egress"})
    return response["statusCode"], json.loads(response["body"])


CONTROL = {"requestId": "req-someone", "action": "status", "controlToken": "a-token-of-16-chars+"}


def test_push_control_never_contacts_a_redis_host_the_allowlist_does_not_open(monkeypatch):
    monkeypatch.setenv("REDIS_ALLOWLIST", "127.0.0.2/32")
    listener = _silent_listener("127.0.0.1")  # an internal service push_control must not reach
    port = listener.getsockname()[1]
    try:
        status, body = _control({**CONTROL, "redisHost": "127.0.0.1", "redisPort": port})
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing connected
    finally:
        listener.close()
    assert status == 400 and body["reason"] == "invalid_parameters", body
    assert "redisHost" in body["message"] and "REDIS_ALLOWLIST" in body["message"]


def test_push_control_refuses_an_unlisted_redis_that_is_there(redis_server, monkeypatch):
    monkeypatch.setenv("REDIS_ALLOWLIST", "10.0.0.0/8")
    status, body = _control({**CONTROL, "redisHost": redis_server.host, "redisPort": redis_server.port})
    assert status == 400 and "redisHost" in body["message"] and "REDIS_ALLOWLIST" in body["message"], body


def test_push_control_echoes_nothing_a_service_sent_and_reads_it_as_a_closed_port():
    import threading

    from emulator.redis.server import free_port

    banner = b"SSH-2.0-OpenSSH_9.6 internal-build-host-7\r\n"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(5)

    def serve() -> None:
        try:
            conn, _ = server.accept()
            conn.sendall(banner)
            conn.recv(1024)
            conn.sendall(b"-ERR banner-text-from-the-far-side\r\n" + banner)
            conn.close()
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    messages, took = [], []
    try:
        for port in (server.getsockname()[1], free_port()):
            t0 = time.monotonic()
            status, body = _control({**CONTROL, "redisHost": "127.0.0.1", "redisPort": port})
            took.append(time.monotonic() - t0)
            assert status == 503 and body["reason"] == "redis_unavailable", body
            assert b"SSH" not in json_bytes(body) and b"far-side" not in json_bytes(body)
            messages.append(body["message"].replace(str(port), "PORT"))
    finally:
        server.close()
    assert messages[0] == messages[1]
    assert abs(took[0] - took[1]) < 0.3


def json_bytes(body: dict) -> bytes:
    import json

    return json.dumps(body).encode()


def test_a_push_without_redis_never_registers_in_an_unlisted_callers_redis(push_env, clip3, fresh_redis,
                                                                            monkeypatch):
    import redis

    # The function has a REDIS_URL (so a push registers for push_control); the caller names its own
    # host, which the allowlist does not open.
    monkeypatch.setenv("REDIS_URL", "redis://10.1.2.3:6379")
    monkeypatch.setenv("REDIS_ALLOWLIST", "10.0.0.0/8")
    result = main_handler(params_for(push_env, clip3, new_room(), redis=False, redisHost=fresh_redis.host,
                                     redisPort=fresh_redis.port), {"request_id": "req-unlisted"})
    assert (result["status"], result["reason"]) == ("completed", "end_of_source"), result
    client = redis.Redis(host=fresh_redis.host, port=fresh_redis.port, decode_responses=True)
    assert client.keys("trtc-push:*") == []  # nothing written into the internal Redis
