"""Pushes into the local room, with a subscriber asserting what arrived."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emulator.media import make_clip
from functions.push_stream.index import main_handler
from shared.room import RoomRef

from .conftest import PUSH_CLIP, REPO, new_room, params_for
from .test_params import gateway_event


@pytest.fixture(scope="session")
def clip3_bframes(clip_dir: Path) -> Path:
    """3 s with B-frames: H.264 that cannot be passed through, so it is decoded and re-encoded."""
    return make_clip(clip_dir / "clip3b.mp4", duration=3.0, video="h264-bframes", **PUSH_CLIP)


def _push_in_thread(params: dict, request_id: str) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        out["result"] = main_handler(params, {"request_id": request_id})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_gateway_push_of_a_local_file_arrives_whole(push_env, subscribe, clip3):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    params = params_for(push_env, clip3, str(room), sdkAppId=str(push_env.sdk_app_id))
    response = main_handler(gateway_event(params), {"request_id": "req-gw"})
    assert response["statusCode"] == 200
    result = json.loads(response["body"])
    assert (result["status"], result["reason"], result["path"]) == ("completed", "end_of_source", "passthrough")
    assert result["position"] == pytest.approx(3.0, abs=0.05) and result["duration"] == pytest.approx(3.0)
    assert result["requestId"] == "req-gw" and result["resumedFrom"] is None
    assert result["framesSent"]["video"] == 75 and 149 <= result["framesSent"]["audio"] <= 151

    got = sub.settle()
    assert len(got.video_pts) == 75 and len(got.audio_pts) == result["framesSent"]["audio"]
    assert got.video_pts == [i * 40 for i in range(75)]
    assert got.audio_pts[:3] == [0, 20, 40] and all(b - a == 20 for a, b in zip(got.audio_pts, got.audio_pts[1:]))
    assert got.video_keys[0] is True
    assert got.audio_pts[-1] == pytest.approx(3000, abs=25)


def test_b_frames_are_transcoded_and_arrive(push_env, subscribe, clip3_bframes):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, clip3_bframes, room), {"request_id": "req-b"})
    assert (result["status"], result["path"]) == ("completed", "transcode")
    got = sub.settle()
    assert len(got.video_pts) == 75 and got.video_pts == sorted(got.video_pts)
    assert got.video_pts[0] == 0 and got.video_pts[-1] == pytest.approx(2960, abs=40)


def test_real_time_pacing_spreads_the_clip_over_its_duration(push_env, subscribe, clip3, monkeypatch):
    monkeypatch.setenv("PACING_SPEED", "1")
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    t0 = time.monotonic()
    result = main_handler(params_for(push_env, clip3, room), {"request_id": "req-rt"})
    took = time.monotonic() - t0
    assert result["status"] == "completed"
    sub.settle()
    # A user watching sees three seconds of media take three seconds, not arrive in a burst.
    assert 2.8 <= took <= 5.0
    assert sub.got.first_media_at - t0 < 1.0


def test_repeat_and_seek_and_max_duration(push_env, subscribe, clip3_bframes):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, clip3_bframes, room, repeatNum=1, seekSecond=2), {})
    assert (result["status"], result["loops"]) == ("completed", 2)
    got = sub.settle()
    # One second from the seek, then the whole clip again, timestamps running on.
    assert got.video_pts[0] == pytest.approx(2000, abs=40)
    assert len(got.video_pts) == 25 + 75
    assert got.video_pts == sorted(got.video_pts) and got.video_pts[-1] == pytest.approx(2000 + 1000 + 2960, abs=60)

    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, clip3_bframes, room, repeatNum=-1, maxDuration=4.5), {})
    assert (result["status"], result["reason"]) == ("completed", "max_duration")
    assert result["pushedSeconds"] == pytest.approx(4.5, abs=0.05)
    got = sub.settle()
    assert got.video_pts[-1] - got.video_pts[0] == pytest.approx(4500, abs=60)


def test_seek_past_the_end_is_refused(push_env, clip3):
    result = main_handler(params_for(push_env, clip3, new_room(), seekSecond=5), {})
    assert result["status"] == "failed" and "seekSecond 5 is past the end" in result["message"]


@pytest.mark.parametrize("action, reason", [("RemoveUser", "removed"), ("DismissRoom", "dismissed")])
def test_room_actions_stop_the_push_with_their_reason(push_env, subscribe, clip10, monkeypatch, action, reason):
    from tencentcloud.trtc.v20190722 import models

    monkeypatch.setenv("PACING_SPEED", "1")
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    thread, out = _push_in_thread(params_for(push_env, clip10, room), f"req-{action}")
    assert sub.wait_for(lambda g: len(g.video_pts) >= 10)
    client = push_env.trtc_client()
    if action == "RemoveUser":
        req = models.RemoveUserRequest()
        req.SdkAppId, req.RoomId, req.UserIds = push_env.sdk_app_id, room, ["pusher"]
        client.RemoveUser(req)
    else:
        req = models.DismissRoomRequest()
        req.SdkAppId, req.RoomId = push_env.sdk_app_id, room
        client.DismissRoom(req)
    thread.join(5)
    assert not thread.is_alive()
    result = out["result"]
    assert (result["status"], result["reason"]) == ("stopped", reason)
    assert 0.3 < result["position"] < 3.0


def test_audio_only_and_video_only_sources(push_env, subscribe, clip_dir):
    audio_only = make_clip(clip_dir / "audio-only.mp4", duration=1.0, video=None, **PUSH_CLIP)
    video_only = make_clip(clip_dir / "video-only.mp4", duration=1.0, audio=None, **PUSH_CLIP)
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, audio_only, room), {})
    assert result["status"] == "completed" and result["framesSent"]["video"] == 0
    assert sub.wait_for(lambda g: len(g.audio_pts) >= 49) and not sub.got.video_pts

    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, video_only, room), {})
    assert result["status"] == "completed" and result["framesSent"] == {"audio": 0, "video": 25}
    assert sub.wait_for(lambda g: len(g.video_pts) == 25) and not sub.got.audio_pts


def test_secrets_never_reach_the_logs(push_env, subscribe, clip3, tmp_path, capfd):
    from emulator.redis import RedisServer

    password = "redis-pw-9f8e7d6c"
    with RedisServer(tmp_path / "redis", password=password) as server:
        params = params_for(push_env, clip3, new_room(), redis=True, redisHost=server.host,
                            redisPort=str(server.port), redisPassword=password)
        sig = params["userSig"]
        result = main_handler(params, {"request_id": "req-secret"})
        assert result["status"] == "completed" and result["checkpoint"] == "cleared"
        bad = main_handler({**params, "redisPassword": password + "-wrong"}, {"request_id": "req-secret2"})
        assert bad["reason"] == "redis_unavailable" and "redisPassword" in bad["message"]
    forged = "eJyrVkrOTy-forged-user-sig-0123456789"
    refused = main_handler({**params, "redis": False, "userSig": forged}, {"request_id": "req-secret3"})
    assert refused["reason"] == "room_error" and "-3320" in refused["message"]
    err = capfd.readouterr().err
    assert '"request_id": "req-secret"' in err and "push finished" in err and "req-secret3" in err
    for secret in (sig, password, forged):
        assert secret not in err
        assert secret not in json.dumps(result) + json.dumps(bad) + json.dumps(refused)


def test_code_root_with_shared_beside_it(push_env, subscribe, clip3, tmp_path):
    """Deployed layout: functions/push_stream is the code root, shared/ copied next to index.py."""
    root = tmp_path / "push_stream"
    shutil.copytree(REPO / "functions" / "push_stream", root)
    shutil.copytree(REPO / "shared", root / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    script = ("import json, sys, index; "
              "print(json.dumps(index.main_handler(json.loads(sys.argv[1]), {'request_id': 'req-root'}))); "
              "print(index.shared.__file__ if hasattr(index, 'shared') else sys.modules['shared'].__file__)")
    env = {**push_env.env, "PACING_SPEED": "8", "PATH": "/usr/bin:/bin", "SOURCE_ALLOWLIST": "127.0.0.0/8",
           "LOCAL_SOURCE_DIRS": str(clip3.parent)}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(params_for(push_env, clip3, room))],
                          cwd=root, env=env, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(lines[0])["status"] == "completed"
    assert lines[1].startswith(str(root / "shared"))
    assert sub.wait_for(lambda g: len(g.video_pts) == 75)


def test_progress_lines_carry_position_fps_bitrate_and_speed(push_env, subscribe, clip10, monkeypatch, capfd):
    import shared.push.pusher

    monkeypatch.setattr(shared.push.pusher, "PROGRESS_EVERY_S", 0.4)  # 5 s in production; shortened here
    monkeypatch.setenv("PACING_SPEED", "4")
    result = main_handler(params_for(push_env, clip10, new_room(), maxDuration=6), {"request_id": "req-prog"})
    assert result["status"] == "completed"
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()
             if line.startswith("{") and '"msg": "progress"' in line]
    assert len(lines) >= 2
    for line in lines:
        assert line["request_id"] == "req-prog" and line["duration"] == pytest.approx(10.0)
        assert line["speed"] == pytest.approx(4.0, rel=0.35)
        assert line["fps"] == pytest.approx(100, rel=0.35)  # 25 fps at 4x
        assert line["bitrateKbps"] > 0  # measured: this clip is passed through
    positions = [line["position"] for line in lines]
    assert positions == sorted(positions) and 0 < positions[0] < positions[-1] <= 6.0
