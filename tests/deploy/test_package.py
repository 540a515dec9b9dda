"""The deployable package: built for SCF's Python (3.11 here), within SCF's limits, and working when
unpacked into empty folders and run in an interpreter that sees nothing but the package."""
from __future__ import annotations

import io
import itertools
import json
import os
import zipfile
from pathlib import Path

import av
import pytest

from deploy import package
from shared.record.storage import parse_cos_url
from emulator.media import make_clip

_rooms = itertools.count(4_100_001)


def test_package_holds_the_code_root_and_dependency_layers_within_scf_limits(built):
    manifest, out = built
    with zipfile.ZipFile(manifest.code.zip_path) as zf:
        names = set(zf.namelist())
    assert {"index.py", "functions/push_stream/index.py", "functions/record_stream/index.py",
            "shared/__init__.py", "shared/gateway.py", "shared/room/local.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith(("tests/", "emulator/"))]

    layer_names: set[str] = set()
    for layer in manifest.layers:
        assert layer.zipped_bytes <= package.ZIP_LIMIT
        with zipfile.ZipFile(layer.zip_path) as zf:
            layer_names |= set(zf.namelist())
    tops = {n.split("/", 1)[0] for n in layer_names}
    # The runtime's own dependencies, as manylinux x86_64 builds for CPython 3.11.
    assert {"av", "av.libs", "liteav", "pydantic", "pydantic_core", "redis", "qcloud_cos", "crcmod",
            "tencentcloud", "requests"} <= tops
    so = [n for n in layer_names if n.endswith(".so")]
    assert any(n.startswith("pydantic_core/") and "cpython-311-x86_64-linux-gnu" in n for n in so)
    assert any(n.startswith("av/") for n in so) and any(n.startswith("liteav") for n in so)
    assert not [n for n in layer_names if n.endswith((".pyc", ".pyx", ".pxd")) or "/__pycache__/" in n]
    assert len(manifest.layers) <= package.MAX_LAYERS
    assert manifest.unpacked_total <= package.UNPACKED_LIMIT
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["runtime"] == "Python3.11" and len(saved["layers"]) == len(manifest.layers)
    assert manifest.glibc == "2.28"  # PyAV 18's wheels are manylinux_2_28 only; liteav's 2_27 or 2_28
    # What the .so files ask of the image agrees: glibc 2.28, libstdc++ and zlib, all in the target.
    needs = saved["runtime_needs"]
    assert needs["target"] == package.DEFAULT_TARGET and needs["glibc"] == "2.28"
    assert {"libc.so.6", "libstdc++.so.6", "libz.so.1"} <= set(needs["libraries"])
    assert not [lib for lib in needs["libraries"] if lib.startswith(("libav", "libliteav", "libx264"))]


def test_sizes_are_printed_against_the_limits(built):
    manifest, _ = built
    lines = list(package.report(manifest))
    assert "glibc >= 2.28" in lines[0]
    assert lines[1].startswith("the .so files need from the image: glibc >= 2.28, ") and "GLIBCXX_3.4" in lines[1]
    assert "libstdc++.so.6" in lines[1] and lines[1].endswith(f"(all in {package.DEFAULT_TARGET})")
    assert any(line.startswith("code code") and "MB" in line for line in lines)
    assert sum(line.startswith("layer deps") for line in lines) == len(manifest.layers)
    assert "of 500.0 MB" in lines[-1] and f"{len(manifest.layers)} of 5 layers" in lines[-1]


def test_a_dependency_too_large_for_any_layer_fails_naming_it(tmp_path):
    site = tmp_path / "site"
    (site / "huge").mkdir(parents=True)
    (site / "huge" / "blob.bin").write_bytes(os.urandom(300_000))  # incompressible
    (site / "small.py").write_text("x = 1\n")
    with pytest.raises(package.PackageError, match=r"huge alone takes 0\.\d MB zipped, over SCF's 0\.2 MB"):
        package.plan_layers(site, limit=200_000)


def test_over_the_unpacked_limit_is_reported(built):
    manifest, _ = built
    big = package.Manifest(**{**manifest.__dict__, "layers": [
        package.Artifact("deps9", "layer", "", "", 600 * package.MB, 10 * package.MB)]})
    problems = package.check_limits(big)
    assert len(problems) == 1 and "over SCF's 500.0 MB per function" in problems[0]


def test_a_python_version_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(package.PackageError, match="--python must be a version such as 3.11"):
        package.build(tmp_path, "three")


def test_markers_are_evaluated_for_scf_not_this_machine(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text('av==18.1.0\nliteav==1.0; sys_platform == "linux"\nwinonly==1; sys_platform == "win32"\n'
                   "# a comment\n-r other.txt\n")
    assert package.target_requirements(req, "3.11") == ["av==18.1.0", "liteav==1.0"]


def test_unknown_entry_is_a_clear_configuration_error(deployed):
    outcome = deployed.run("bogus", {"x": 1}, {})
    result = outcome["result"]
    assert result["status"] == "failed" and result["reason"] == "configuration_error"
    assert "ENTRY_FUNCTION='bogus'" in result["message"] and "push_stream, record_stream" in result["message"]


def test_packaged_room_backend_error_at_start(deployed):
    event = {"httpMethod": "POST", "path": "/push_stream", "requestContext": {}, "headers": {},
             "body": json.dumps({"videoSrc": "file:///nowhere.mp4"})}
    outcome = deployed.run("push_stream", event, {"ROOM_BACKEND": "local"})
    response = outcome["result"]
    assert response["statusCode"] == 500
    body = json.loads(response["body"])
    assert body["reason"] == "configuration_error" and "LOCAL_ROOM_ADDRESS" in body["message"]
    assert outcome["foreign_modules"] == []


def test_packaged_functions_push_a_clip_and_record_it_to_cos(deployed, room_service, cos_service,
                                                             callback_receiver, tmp_path):
    """Both handlers from the unpacked package, against the emulator: a recording (Mode 02) of a room,
    a short push into it, RemoveUser, then the callback names an MP4 in COS with audio and video."""
    room = next(_rooms)
    clip = make_clip(tmp_path / "clip.mp4", duration=3.0, width=160, height=120, fps=25)
    cfs = tmp_path / "cfs"
    cfs.mkdir()
    env = {**room_service.env, "COS_ENDPOINT": cos_service.endpoint_url, "CFS_PATH": str(cfs),
           "SOURCE_ALLOWLIST": "127.0.0.0/8,localhost", "CALLBACK_ALLOWLIST": "127.0.0.0/8,localhost",
           "PACING_SPEED": "2"}
    record_event = {
        "SdkAppId": room_service.sdk_app_id, "RoomId": room, "UserId": "recorder",
        "UserSig": room_service.usersig("recorder"),
        "CosConfig": {"SecretId": cos_service.secret_id, "SecretKey": cos_service.secret_key,
                      "Region": cos_service.region, "Bucket": cos_service.bucket, "Path": "/deploy/test"},
        "Callback": callback_receiver.url, "Mode": "02", "MaxIdleTime": 60,
    }
    recorder = deployed.start("record_stream", record_event, env, request_id="req-record")
    try:
        _wait_in_room(room_service, room, "recorder", recorder, timeout=60.0)
        push_event = {"videoSrc": Path(clip).as_uri(), "sdkAppId": str(room_service.sdk_app_id),
                      "roomId": str(room), "userId": "anchor_1", "userSig": room_service.usersig("anchor_1")}
        pushed = deployed.run("push_stream", push_event, env, timeout=90.0)
        assert pushed["result"].get("status") != "failed", pushed["result"]
        assert pushed["foreign_modules"] == []
        _remove_user(room_service, room, "recorder")
        recorded = deployed.finish(recorder, timeout=90.0)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait(timeout=10)
    assert recorded["foreign_modules"] == []
    body = callback_receiver.wait_for(1, timeout=10.0)[0].json
    assert (body["SdkAppId"], body["RoomId"], body["UserId"]) == (room_service.sdk_app_id, room, "recorder")
    files = [f for f in body["Files"] if f["UserId"] == "anchor_1"]
    assert len(files) == 1 and files[0]["Status"] == 1, body
    bucket, _region, key = parse_cos_url(files[0]["RecordFile"])
    assert bucket == cos_service.bucket and key.startswith("deploy/test/") and key.endswith(".mp4")
    with av.open(io.BytesIO(cos_service.get_object_bytes(key))) as container:
        kinds = {s.type for s in container.streams}
        assert kinds == {"audio", "video"}
        video_frames = sum(1 for _ in container.decode(video=0))
    assert video_frames >= 40  # most of the 75 frames of the 3-second clip


def _wait_in_room(rooms, room: int, user_id: str, proc, timeout: float) -> None:
    import time

    end = time.monotonic() + timeout
    while user_id not in rooms.rooms.user_ids(rooms.sdk_app_id, room):
        if proc.poll() is not None:
            log = Path(proc.log_path).read_text("utf-8", errors="replace")
            raise AssertionError(f"the recorder ended before entering the room:\n{log[-3000:]}")
        assert time.monotonic() < end, f"{user_id} did not enter room {room} within {timeout} s"
        time.sleep(0.05)


def _remove_user(rooms, room: int, user_id: str) -> None:
    from tencentcloud.trtc.v20190722 import models

    req = models.RemoveUserRequest()
    req.SdkAppId, req.RoomId, req.UserIds = rooms.sdk_app_id, room, [user_id]
    rooms.trtc_client().RemoveUser(req)


def test_the_layers_native_modules_load_in_a_bare_interpreter(deployed):
    """liteav (ROOM_BACKEND=trtc's SDK), PyAV and pydantic-core load from the unpacked layers alone
    (their bundled .libs resolved); liteav is only imported, no TRTCCloud is created."""
    import subprocess
    import sys

    code = ("import sys, json; sys.path[0:0] = sys.argv[1:]\n"
            "import liteav, av, pydantic_core, crcmod, qcloud_cos, redis\n"
            "print(json.dumps({m.__name__: m.__file__ for m in (liteav, av, pydantic_core, crcmod)}"
            " | {'trtc': hasattr(liteav, 'TRTCCloud'), 'h264': 'h264' in av.codecs_available}))\n")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(deployed.code), str(deployed.opt)],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("liteav", "av", "pydantic_core", "crcmod"):
        assert found[name].startswith(str(deployed.opt) + "/"), (name, found[name])
    assert found["trtc"] is True and found["h264"] is True


def test_layer_plan_does_not_depend_on_where_the_dependencies_were_installed(tmp_path):
    import random
    import shutil

    rng = random.Random(7)
    site = tmp_path / "a"
    for i in range(6):
        pkg = site / f"pkg{i}"
        pkg.mkdir(parents=True)
        (pkg / "data.bin").write_bytes(rng.randbytes(20_000 + 3_000 * i))
        (site / f"pkg{i}-1.0.dist-info").mkdir()
        (site / f"pkg{i}-1.0.dist-info" / "METADATA").write_text(f"Name: pkg{i}\n")
    other = tmp_path / "a-much-longer-folder-name" / "deeper" / "site"
    shutil.copytree(site, other)
    plan = [[p.name for p in layer] for layer in package.plan_layers(site, limit=70_000)]
    assert plan == [[p.name for p in layer] for layer in package.plan_layers(other, limit=70_000)]
    assert len(plan) > 1
    for layer in plan:  # a package and its metadata stay in one layer
        for name in layer:
            if name.endswith(".dist-info"):
                assert name.split("-")[0] in layer
