"""The `trtc` backend's own behaviour, on the real liteav module with the fake's clouds
(tests/fakes/liteav_fake.py): what the room contract suite cannot see.

That the fake is the real module but for its network part and guards the real clouds, that the
local backend never loads liteav, how EnterRoomParams are built, how liteav's error codes and
callbacks become RoomErrors and RoomClosed, entering against a server that never answers, and that
received frames are copied out. Nothing here creates a real TRTCCloud.
tests/room/test_trtc_sdk.py has what the real SDK's own types and threads demand of the adapter.
"""
from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

liteav = pytest.importorskip("liteav")

from emulator import media
from shared.room import (
    ERR_BANNED_BY_SERVER,
    ERR_INVALID_OPERATION,
    ERR_INVALID_PARAMETER,
    ERR_INVALID_SDK_APP_ID,
    ERR_INVALID_USER_SIG,
    ERR_NETWORK_UNREACHABLE,
    ERR_REQUEST_SERVER_TIMEOUT,
    LEFT_NORMALLY,
    LEFT_TIMEOUT,
    AudioAvailable,
    AudioFrame,
    BitrateRequested,
    CloseReason,
    EnterParams,
    H264Frame,
    KeyFrameRequested,
    PixelFrame,
    RemoteAudio,
    Role,
    RoomClosed,
    RoomError,
    RoomRef,
    UserEntered,
    UserLeft,
    VideoAvailable,
    VideoFormat,
)
from shared.room.trtc import CALLBACKS, TRTCRoom, enter_room_params
from tests.fakes import liteav_fake as fake
from tests.room.conftest import WAIT_S, drain, wait_for

ROOT = Path(__file__).resolve().parents[2]

_rooms = iter(range(810001, 819999))


# --- the fake is liteav, but for its clouds ---------------------------------------------------


def _public(kind: Any) -> list[str]:
    return sorted(n for n in dir(kind) if not n.startswith("_") and not n.startswith("fake"))


def _real_arity(method: Any) -> int:
    """Parameters after self, from pybind11's signature line (`Name(self: T, a: X, b: Y) -> R`)."""
    line = (method.__doc__ or "").strip().splitlines()[0]
    inner = line[line.index("(") + 1:line.rindex(")")]
    depth, parts, current = 0, [], ""
    for ch in inner:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return len([p for p in parts if p.strip()]) - 1


def test_the_fake_module_is_the_real_liteav_but_for_its_network_part():
    sdk = fake.make_sdk("127.0.0.1", 9)
    replaced = set(fake.NETWORK_NAMES) | set(fake.RECORDED_NAMES)
    for name in _public(liteav):
        if name not in replaced:
            assert getattr(sdk, name) is getattr(liteav, name), name
    # The real delegate base, structs and enums: pybind11's own type checks apply.
    assert sdk.TRTCCloudDelegate is liteav.TRTCCloudDelegate and sdk.AudioFrame is liteav.AudioFrame
    p = sdk.EnterRoomParams()
    with pytest.raises(TypeError):
        p.role = 1  # an enum field refuses a plain int
    with pytest.raises(TypeError):
        p.room.user_id = "alice"  # a TrtcString field refuses a str
    with pytest.raises(TypeError):
        p.room.room_id = 1 << 32
    with pytest.raises(TypeError):
        sdk.AudioFrame().SetData(bytearray(4))


def test_the_fake_cloud_has_the_real_clouds_methods():
    problems = []
    for name in _public(fake.TRTCCloud):
        real = getattr(liteav.TRTCCloud, name, None)
        if real is None:
            problems.append(f"TRTCCloud.{name} is not in liteav")
            continue
        ours = len(inspect.signature(getattr(fake.TRTCCloud, name)).parameters) - 1
        if ours != _real_arity(real):
            problems.append(f"TRTCCloud.{name} takes {ours} arguments, the real one {_real_arity(real)}")
    for name in _public(liteav.TRTCCloud):
        if name not in ("Create", "Destroy") and not hasattr(fake.TRTCCloud, name):
            problems.append(f"the fake lacks TRTCCloud.{name}")
    assert problems == []


def test_every_name_the_adapter_uses_exists_in_the_real_liteav():
    source = (ROOT / "shared" / "room" / "trtc.py").read_text()
    missing = []
    for name in set(re.findall(r"\bsdk\.([A-Za-z]\w*)", source)) | set(re.findall(r'"(STREAM_TYPE_\w+)"', source)):
        if not hasattr(liteav, name):
            missing.append(f"liteav.{name}")
    for name in set(re.findall(r"\bcloud\.([A-Za-z]\w*)\(", source)):
        if not hasattr(liteav.TRTCCloud, name):
            missing.append(f"TRTCCloud.{name}")
    for name in CALLBACKS:
        if not hasattr(liteav.TRTCCloudDelegate, name):
            missing.append(f"TRTCCloudDelegate.{name}")
    for scene in ("video_call", "audio_call", "live", "voice_chat", "record"):
        if not hasattr(liteav, f"TRTC_SCENE_{scene.upper()}"):
            missing.append(f"TRTC_SCENE_{scene.upper()}")
    assert missing == []


def test_every_way_to_a_real_cloud_raises_in_tests():
    # Checked by identity first: only then is anything called (the guard's own function).
    assert fake.real_sdk_guarded()

    class Delegate(liteav.TRTCCloudDelegate):
        pass

    for make in (lambda d: liteav.CreateTRTCCloud(d), lambda d: liteav.TRTCCloud(d),
                 lambda d: liteav.TRTCCloud.Create(d)):
        with pytest.raises(fake.RealCloudRefused):
            make(Delegate())
    with pytest.raises(fake.RealCloudRefused):
        TRTCRoom(logger=None).enter(EnterParams(1400000001, RoomRef(1), "alice", "sig", timeout=1))


# --- liteav is loaded only by the trtc backend ------------------------------------------------


def test_the_local_backend_never_imports_liteav(room_service):
    script = textwrap.dedent("""
        import os, sys
        from shared.room import EnterParams, RoomRef, open_room
        import shared.room.trtc  # the backend module itself imports liteav only when a room needs it
        os.environ.update({"ROOM_BACKEND": "local", "LOCAL_ROOM_ADDRESS": sys.argv[1]})
        room = open_room()
        room.enter(EnterParams(int(sys.argv[2]), RoomRef(sys.argv[3]), "local-user", sys.argv[4], timeout=5))
        room.exit()
        print("after local room:", "liteav" in sys.modules)
        os.environ["ROOM_BACKEND"] = "trtc"
        open_room()  # only imports the SDK: no cloud exists before enter()
        print("after trtc room:", "liteav" in sys.modules)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, room_service.address, str(room_service.sdk_app_id), "no-liteav-room",
         room_service.usersig("local-user")],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["after local room: False", "after trtc room: True"]


# --- EnterRoomParams ---------------------------------------------------------------------------


def _params(room: int | str, role: Role = Role.ANCHOR, **kw: Any) -> EnterParams:
    return EnterParams(1400000001, RoomRef(room), "alice", "sig-of-alice", role=role, **kw)


def test_enter_room_params_for_an_integer_room_and_an_anchor():
    erp = enter_room_params(liteav, _params(123), "live")
    assert isinstance(erp, liteav.EnterRoomParams)
    assert (erp.room.sdk_app_id, erp.room.room_id, erp.room.str_room_id.GetValue()) == (1400000001, 123, "")
    assert (erp.room.user_id.GetValue(), erp.room.user_sig.GetValue()) == ("alice", "sig-of-alice")
    assert erp.role == liteav.TRTC_ROLE_ANCHOR and erp.scene == liteav.TRTC_SCENE_LIVE
    # Defaults: YUV in (the SDK encodes), H.264 out (recorded as sent), mono 48 kHz 20 ms per user.
    assert (erp.use_pixel_frame_input, erp.use_pixel_frame_output) == (True, False)
    obtain = erp.audio_obtain_params
    assert obtain.audio_obtain_method == liteav.AUDIO_OBTAIN_METHOD_CALLBACK
    assert obtain.enable_remote_audio_mix is False
    assert (obtain.output_sample_rate, obtain.output_channels, obtain.output_frame_length_ms) == (48000, 1, 20)
    assert obtain.output_audio_codec_type == liteav.AUDIO_CODEC_TYPE_PCM


def test_enter_room_params_for_a_string_room_and_an_audience():
    erp = enter_room_params(liteav, _params("123", Role.AUDIENCE, video_input=VideoFormat.H264,
                                            video_output=VideoFormat.YUV420P, audio_output_channels=2), "record")
    # room_id 0 makes the SDK use str_room_id: "123" is not integer room 123.
    assert (erp.room.room_id, erp.room.str_room_id.GetValue()) == (0, "123")
    assert erp.role == liteav.TRTC_ROLE_AUDIENCE and erp.scene == liteav.TRTC_SCENE_RECORD
    assert (erp.use_pixel_frame_input, erp.use_pixel_frame_output) == (False, True)
    assert erp.audio_obtain_params.output_channels == 2


def test_the_sdk_is_asked_for_the_room_the_caller_named(trtc):
    n = next(_rooms)
    _, int_sdk = trtc("alice", n)
    _, str_sdk = trtc("bob", str(n), role=Role.AUDIENCE)
    assert int_sdk.fake_clouds[0].fake_entered_with.room == RoomRef(n)
    assert str_sdk.fake_clouds[0].fake_entered_with.room == RoomRef(str(n))
    assert str_sdk.fake_clouds[0].fake_entered_with.role is Role.AUDIENCE


# --- errors ------------------------------------------------------------------------------------


def test_a_bad_usersig_fails_with_its_code_and_leaves_nothing_running(room_service, log_lines):
    host, _, port = room_service.address.rpartition(":")
    sdk = fake.make_sdk(host, int(port))
    room = TRTCRoom(sdk=sdk, logger=log_lines[0])
    with pytest.raises(RoomError) as e:
        room.enter(EnterParams(room_service.sdk_app_id, RoomRef(next(_rooms)), "alice", room_service.usersig("bob"),
                               timeout=WAIT_S))
    assert e.value.code == ERR_INVALID_USER_SIG
    assert "UserSig" in str(e.value)
    assert not sdk.fake_clouds[0].fake_alive


def test_bad_enter_parameters_are_refused_before_any_cloud_exists(log_lines):
    sdk = fake.make_sdk("127.0.0.1", 9)
    for params, code, word in (
        (EnterParams(0, RoomRef(1), "alice", "sig"), ERR_INVALID_SDK_APP_ID, "sdkAppId"),
        (EnterParams(1400000001, RoomRef(1), "alice", ""), ERR_INVALID_USER_SIG, "userSig"),
        (EnterParams(1400000001, RoomRef(1), "alice", "sig", audio_output_channels=3), ERR_INVALID_PARAMETER,
         "audio_output_channels"),
    ):
        with pytest.raises(RoomError) as e:
            TRTCRoom(sdk=sdk, logger=log_lines[0]).enter(params)
        assert e.value.code == code and word in str(e.value)
    assert sdk.fake_clouds == []


def test_enter_times_out_when_the_server_never_answers(room_service, log_lines):
    host, _, port = room_service.address.rpartition(":")
    sdk = fake.make_sdk(host, int(port))
    sdk.fake_never_answer_enter = True
    room = TRTCRoom(sdk=sdk, logger=log_lines[0])
    with pytest.raises(RoomError) as e:
        room.enter(EnterParams(room_service.sdk_app_id, RoomRef(next(_rooms)), "alice", room_service.usersig("alice"),
                               timeout=0.3))
    assert e.value.code == ERR_REQUEST_SERVER_TIMEOUT
    assert "no answer from TRTC within 0.3 s" in str(e.value)
    assert not sdk.fake_clouds[0].fake_alive  # the half-entered cloud was dropped
    with pytest.raises(RoomError):
        room.enter(EnterParams(room_service.sdk_app_id, RoomRef(1), "alice", room_service.usersig("alice")))


def test_removal_becomes_room_closed_removed_and_nothing_follows_it(trtc):
    room, sdk = trtc("alice", next(_rooms))
    cloud = sdk.fake_clouds[0]
    # What the SDK says when RemoveUser hits us: OnError(-205), then OnExitRoom.
    cloud.fake_deliver("OnError", liteav.ERR_BANNED_BY_SERVER)
    cloud.fake_deliver("OnExitRoom")
    cloud.fake_deliver("OnRemoteUserEnterRoom", fake._user_info("late"))
    assert drain(room) == [RoomClosed(CloseReason.REMOVED, ERR_BANNED_BY_SERVER, room.closed.message)]
    assert room.closed.reason is CloseReason.REMOVED
    with pytest.raises(RoomError) as e:
        room.send_audio(media.tone(0))
    assert e.value.code == ERR_BANNED_BY_SERVER


def test_an_unrequested_exit_claims_only_that_the_server_ended_it(trtc):
    room, sdk = trtc("alice", next(_rooms))
    sdk.fake_clouds[0].fake_deliver("OnExitRoom")
    closed, _ = wait_for(room, lambda e: isinstance(e, RoomClosed))
    assert closed.reason is CloseReason.ENDED_BY_SERVER and closed.result_reason == "ended_by_server"


def test_other_errors_in_the_room_close_it_with_their_code(trtc):
    room, sdk = trtc("alice", next(_rooms))
    sdk.fake_clouds[0].fake_deliver("OnError", liteav.ERR_NETWORK_UNREACHABLE)
    closed, _ = wait_for(room, lambda e: isinstance(e, RoomClosed))
    assert (closed.reason, closed.code) == (CloseReason.ERROR, ERR_NETWORK_UNREACHABLE)


def test_our_own_exit_is_exited_and_drops_the_cloud(trtc, room_service):
    n = next(_rooms)
    watcher, _ = trtc("watcher", n)
    room, sdk = trtc("alice", n)
    wait_for(watcher, lambda e: e == UserEntered("alice"))
    room.exit()
    room.exit()
    assert room.closed == RoomClosed(CloseReason.EXITED)
    assert not sdk.fake_clouds[0].fake_alive
    wait_for(watcher, lambda e: e == UserLeft("alice", LEFT_NORMALLY))
    assert room_service.rooms.user_ids(room_service.sdk_app_id, n) == ["watcher"]


def test_sdk_return_codes_become_room_errors(trtc, monkeypatch):
    room, sdk = trtc("alice", next(_rooms))
    with pytest.raises(RoomError) as e:
        room.send_audio(media.tone(0))
    assert e.value.code == ERR_INVALID_OPERATION and "start_audio" in str(e.value)
    room.start_audio()
    monkeypatch.setattr(sdk.TRTCCloud, "SendAudioFrame", lambda self, frame: sdk.ERR_NOT_SUPPORTED)
    with pytest.raises(RoomError) as e:
        room.send_audio(media.tone(0))
    assert e.value.code == int(sdk.ERR_NOT_SUPPORTED) and "SendAudioFrame" in str(e.value)


def test_malformed_media_is_refused_with_what_is_wrong(trtc):
    room, _ = trtc("alice", next(_rooms))
    room.start_audio()
    room.start_video()
    for send, frame, words in (
        (room.send_audio, AudioFrame(b"\0" * 100, 0), "100 bytes"),
        (room.send_audio, AudioFrame(b"\0" * 1920, -20), "pts_ms"),
        (room.send_video, PixelFrame(b"\0" * 10, 160, 120, 0), "160x120"),
        (room.send_video, H264Frame(b"\0\0\0\1", 0, True), "video_input=yuv420p"),
    ):
        with pytest.raises(RoomError) as e:
            send(frame)
        assert e.value.code in (ERR_INVALID_PARAMETER, ERR_INVALID_OPERATION) and words in str(e.value), str(e.value)


def test_an_audience_member_cannot_publish(trtc):
    room, _ = trtc("viewer", next(_rooms), role=Role.AUDIENCE)
    with pytest.raises(RoomError) as e:
        room.start_audio()
    assert e.value.code == ERR_INVALID_OPERATION and "audience" in str(e.value)


def test_video_encode_settings_reach_the_sdk_within_its_ranges(trtc):
    from shared.room import VideoEncodeConfig

    room, sdk = trtc("alice", next(_rooms))
    room.start_video(VideoEncodeConfig(fps=5, bitrate_bps=800_000, gop_seconds=30))
    p = sdk.fake_clouds[0].fake_video_encode_params
    assert (p.frame_rate, p.bitrate_bps, p.gop_in_seconds) == (10, 800_000, 10)
    with pytest.raises(RoomError) as e:
        room.set_video_encode(VideoEncodeConfig(bitrate_bps=30_000_000))
    assert e.value.code == ERR_INVALID_PARAMETER


def test_callbacks_become_events_for_the_main_video_stream_only(trtc):
    room, sdk = trtc("alice", next(_rooms))
    cloud = sdk.fake_clouds[0]
    high, aux, low = sdk.STREAM_TYPE_VIDEO_HIGH, sdk.STREAM_TYPE_VIDEO_AUX, sdk.STREAM_TYPE_VIDEO_LOW
    info = sdk.UserInfo()
    info.user_id = sdk.TrtcString("bob")
    for callback, *args in (
        ("OnRemoteUserEnterRoom", info),
        ("OnRemoteVideoAvailable", "bob", True, aux),  # screen share: not what we record
        ("OnRemoteVideoAvailable", "bob", True, high),
        ("OnRemoteAudioAvailable", "bob", True),
        ("OnRequestKeyFrame", low),
        ("OnRequestKeyFrame", high),
        ("OnRequestChangeVideoEncodeBitrate", low, 100_000),
        ("OnRequestChangeVideoEncodeBitrate", high, 600_000),
        ("OnRemoteUserExitRoom", info, LEFT_TIMEOUT),
    ):
        cloud.fake_deliver(callback, *args)
    assert drain(room) == [UserEntered("bob"), VideoAvailable("bob", True), AudioAvailable("bob", True),
                           KeyFrameRequested(), BitrateRequested(600_000), UserLeft("bob", LEFT_TIMEOUT)]


def test_a_channel_the_sdk_never_confirms_times_out(trtc, monkeypatch):
    room, sdk = trtc("alice", next(_rooms), timeout=0.5)
    monkeypatch.setattr(sdk.TRTCCloud, "CreateLocalAudioChannel", lambda self, params: 0)
    with pytest.raises(RoomError) as e:
        room.start_audio()
    assert e.value.code == ERR_REQUEST_SERVER_TIMEOUT and "OnLocalAudioChannelCreated" in str(e.value)


def test_received_frames_are_copied_out_before_the_sdk_reuses_them(trtc):
    n = next(_rooms)
    receiver, _ = trtc("receiver", n)
    sender, _ = trtc("sender", n, video_input=VideoFormat.H264)
    sender.start_video()
    units = media.h264_units(3)
    for unit in units:
        sender.send_video(unit)
    got = []
    while len(got) < len(units):
        event, _ = wait_for(receiver, lambda e: getattr(e, "user_id", None) == "sender" and hasattr(e, "frame"))
        got.append(event.frame)
    # The fake overwrites each SDK frame once its callback returns; what we kept is intact.
    assert [(f.data, f.pts_ms, f.key) for f in got] == [(u.data, u.pts_ms, u.key) for u in units]


def test_a_raising_delegate_stops_the_run_loudly(room_service):
    """By default the fake does what the real SDK does to the process: it stops the test run."""
    # SIGINT as an interactive shell leaves it: a job started in the background inherits it ignored,
    # and then the fake's interrupt_main() does nothing.
    script = textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from shared.room import EnterParams, RoomRef
        from shared.room.trtc import enter_room_params
        from tests.fakes import liteav_fake as fake
        host, _, port = sys.argv[1].rpartition(":")
        sdk = fake.make_sdk(host, int(port))
        class Raising(sdk.TRTCCloudDelegate):
            def OnConnectionStateChanged(self, old, new):
                pass
            def OnEnterRoom(self):
                raise RuntimeError("boom from the delegate")
        cloud = sdk.CreateTRTCCloud(Raising())
        cloud.EnterRoom(enter_room_params(sdk, EnterParams(int(sys.argv[2]), RoomRef(sys.argv[3]), "alice",
                                                           sys.argv[4]), "live"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.05)
        print("still running")
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, room_service.address, str(room_service.sdk_app_id), "raising-room",
         room_service.usersig("alice")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "still running" not in out.stdout
    assert "delegate callback OnEnterRoom raised" in out.stderr and "boom from the delegate" in out.stderr
    assert "KeyboardInterrupt" in out.stderr


def test_media_from_a_trtc_member_reaches_a_local_member(trtc, room_service):
    """Both backends meet in the same emulator room: what the adapter sends is what TRTC would carry."""
    from shared.room.local import LocalRoom

    n = next(_rooms)
    host, _, port = room_service.address.rpartition(":")
    local = LocalRoom(host, int(port))
    local.enter(EnterParams(room_service.sdk_app_id, RoomRef(n), "local", room_service.usersig("local"),
                            timeout=WAIT_S))
    try:
        room, _ = trtc("alice", n, audio_output_channels=1)
        room.start_audio()
        for i in range(5):
            room.send_audio(media.tone(i))
        pts = []
        while len(pts) < 5:
            event, _ = wait_for(local, lambda e: isinstance(e, RemoteAudio))
            assert event.user_id == "alice" and media.rms(event.frame) > 1000
            pts.append(event.frame.pts_ms)
        assert pts == [0, 20, 40, 60, 80]
    finally:
        local.exit()
