"""The image's entry server against hostile or broken callers (issue 18.8): whatever arrives, an
answer in SCF's error shape, nothing left running, bounded time and a bounded number of workers."""
from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from emulator.media import make_clip
from tests.deploy.entry_server import EntryServer, scf_headers
from tests.waiting import wait_for

_rooms = itertools.count(4_300_001)


def children(pid: int) -> set[int]:
    """The live (not zombie) child processes of `pid`, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def raw_request(server: EntryServer, data: bytes, half_close: bool = False, timeout: float = 20.0) -> bytes:
    """`data` sent as it is on one connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)  # the client is done sending (it went away)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk


def answer_of(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), raw[:200]
    return int(head.split()[1]), json.loads(body)


def post_head(length: int, request_id: str) -> bytes:
    headers = {**scf_headers(request_id), "Content-Length": str(length), "Connection": "close"}
    return ("POST /event-invoke HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n").encode()


def _scf_error(body: dict[str, Any], error_type: str, words: str) -> None:
    assert set(body) <= {"errorType", "errorMessage", "requestId"}, body
    assert body["errorType"] == error_type and words in body["errorMessage"], body


def test_json_nested_5000_deep_is_answered_400_and_the_server_serves_on(entry_servers):
    server = entry_servers("push_stream")
    for body in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 300 + b"]" * 300):
        status, answer = server.request("POST", "/event-invoke", body, scf_headers("req-deep"), timeout=20)
        assert status == 400, answer
        _scf_error(answer, "InvalidInvocation", "nested more than 256 levels deep")
    status, answer = server.invoke({"videoSrc": "x"}, scf_headers("req-after-deep"))
    assert status == 200 and answer["reason"] == "invalid_parameters"
    assert "invocation started" not in server.log().split("req-after-deep")[0]  # none of the deep ones ran


def test_a_lone_surrogate_in_a_direct_event_is_answered_and_its_worker_ends(entry_servers):
    server = entry_servers("push_stream")
    spare = wait_for(lambda: children(server.proc.pid), 30, "the spare worker")
    event = {"videoSrc": "\ud800", "sdkAppId": "1400000001", "roomId": "1", "userId": "u\ud800", "userSig": "s"}
    # json.dumps escapes the surrogate ("\ud800"), as any JSON writer in front of SCF would.
    status, answer = server.invoke(event, scf_headers("req-surrogate"), timeout=60)
    assert status == 200 and answer["status"] == "failed" and answer["reason"] == "invalid_parameters", answer
    assert "videoSrc" in answer["message"]
    # The worker that ran it (the spare) is gone, not waiting on a pipe for ever.
    wait_for(lambda: not (spare & children(server.proc.pid)), 15, "the invocation's worker to exit")
    assert server.proc.poll() is None


def test_a_body_shorter_than_its_content_length_is_never_run(entry_servers):
    server = entry_servers("push_stream")
    event = json.dumps({"videoSrc": "x"}).encode()
    raw = raw_request(server, post_head(len(event) + 100, "req-short") + event, half_close=True)
    status, answer = answer_of(raw)
    assert status == 400
    _scf_error(answer, "InvalidInvocation", f"the body ended after {len(event)} of its {len(event) + 100} bytes")
    assert "invocation started" not in server.log()


def test_a_stalled_request_is_answered_408_within_the_read_timeout_and_idle_ones_are_closed(entry_servers):
    server = entry_servers("push_stream", {"ENTRY_READ_TIMEOUT_SECONDS": "1"})
    t0 = time.monotonic()
    raw = raw_request(server, post_head(500, "req-stall") + b'{"videoSrc": ', timeout=20)
    status, answer = answer_of(raw)
    assert status == 408 and time.monotonic() - t0 < 10
    _scf_error(answer, "RequestTimeout", "stopped coming for 1 s")
    t0 = time.monotonic()
    assert raw_request(server, b"", timeout=20) == b""  # a connection that never sends is closed
    assert time.monotonic() - t0 < 10
    assert "invocation started" not in server.log()


def test_past_entry_max_workers_an_invocation_is_refused_in_scf_shape(entry_servers, room_service, tmp_path):
    room = next(_rooms)
    clip = make_clip(tmp_path / "clip.mp4", duration=20.0, width=160, height=120, fps=25)
    server = entry_servers("push_stream", {**room_service.env, "PACING_SPEED": "1", "ENTRY_MAX_WORKERS": "1",
                                           "LOCAL_SOURCE_DIRS": str(tmp_path)})
    event = {"videoSrc": str(clip), "sdkAppId": room_service.sdk_app_id, "roomId": room, "userId": "pusher",
             "userSig": room_service.usersig("pusher")}
    answers: dict[str, Any] = {}
    call = threading.Thread(target=lambda: answers.update(push=server.invoke(event, scf_headers("req-first"))))
    call.start()
    wait_for(lambda: "pusher" in room_service.rooms.user_ids(room_service.sdk_app_id, room), 60,
             "the first push to enter the room")
    status, answer = server.invoke({**event, "userId": "second", "userSig": room_service.usersig("second")},
                                   scf_headers("req-second"), timeout=20)
    assert status == 429, answer
    _scf_error(answer, "TooManyInvocations", "ENTRY_MAX_WORKERS=1")
    server.terminate()  # the running push ends (terminated) and answers
    call.join(30)
    assert not call.is_alive() and answers["push"][0] == 200 and answers["push"][1]["reason"] == "terminated"
