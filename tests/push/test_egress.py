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
