"""What the real liteav SDK demands of the `trtc` adapter, checked on the SDK's own types.

- every pure virtual callback of liteav.TRTCCloudDelegate is implemented (the SDK calling one that
  is not raises on its thread), and none raises with real arguments;
- a callback that raises anyway is logged once and closes the room, never reaching the SDK;
- frames the adapter cannot use (H.265, another sample rate, a wrong size) are counted and logged
  once per anchor, the other anchors unaffected; media a media thread delivers after its user left
  is not delivered;
- leaving is ExitRoom, OnExitRoom, and letting go of the cloud (DestroyTRTCCloud does nothing);
- the SDK logs under CFS_PATH or /tmp, not to the console, at LITEAV_LOG_LEVEL, set before the
  first cloud; the scene comes from the use (TRTC_PUSH_SCENE / TRTC_RECORD_SCENE override it);
- a member that receives no media (a pusher) unsubscribes from every remote stream.
"""
from __future__ import annotations

import gc
import re
import time
import weakref
from typing import Any

import pytest

from shared.settings import ConfigError

liteav = pytest.importorskip("liteav")

from emulator import media
from shared.room import (
    ERR_FAILED,
    ERR_INVALID_PARAMETER,
    EVERY_STREAM,
    NO_MEDIA,
    AudioAvailable,
    CloseReason,
    EnterParams,
    RemoteAudio,
    RemoteVideo,
    RoomClosed,
    RoomError,
    RoomRef,
    Subscription,
    UserEntered,
    VideoAvailable,
    VideoEncodeConfig,
    backend_from_env,
)
from shared.room.trtc import CALLBACKS, TRTCRoom
from tests.fakes import liteav_fake as fake
from tests.room.conftest import WAIT_S, drain, gather_until, publish_tones_and_pictures, wait_for

_rooms = iter(range(820001, 829999))


def _until(condition: Any, timeout: float = WAIT_S, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        time.sleep(0.02)


# --- the delegate's callbacks --------------------------------------------------------------------


def _sample(type_name: str) -> Any:
    """A real value of a callback parameter's type, from pybind11's name for it."""
    type_name = type_name.strip()
    if type_name == "str":
        return "bob"
    if type_name == "bool":
        return True
    if type_name.startswith("typing.SupportsInt") or type_name == "int":
        return 0
    kind = getattr(liteav, type_name.rsplit("::", 1)[-1].rsplit(".", 1)[-1])
    if hasattr(kind, "__members__"):  # an enum: the member a callback would carry most often
        preferred = {"StreamType": "STREAM_TYPE_VIDEO_HIGH", "Error": "ERR_NETWORK_UNREACHABLE"}
        return kind.__members__[preferred.get(kind.__name__, next(iter(kind.__members__)))]
    value = kind()
    if kind is liteav.UserInfo:
        value.user_id = liteav.TrtcString("bob")
    return value


def _arguments(name: str) -> tuple[Any, ...]:
    """Real arguments for callback `name`, read from the binding's signature line."""
    line = getattr(liteav.TRTCCloudDelegate, name).__doc__.strip().splitlines()[0]
    params = re.findall(r"arg\d+: ([^,)]+(?:\|[^,)]+)*)", line)
    return tuple(_sample(p) for p in params)


def _pure_virtuals() -> list[str]:
    """The callbacks the real base class leaves to its subclasses (calling one raises)."""

    class Bare(liteav.TRTCCloudDelegate):
        pass

    bare, pure = Bare(), []
    for name in sorted(n for n in dir(liteav.TRTCCloudDelegate) if n.startswith("On")):
        try:
            getattr(liteav.TRTCCloudDelegate, name)(bare, *_arguments(name))
        except RuntimeError as e:
            assert "pure virtual" in str(e), e
            pure.append(name)
    return pure


def test_the_real_delegate_base_has_18_pure_virtual_callbacks_and_the_adapter_implements_each():
    pure = _pure_virtuals()
    assert len(pure) == 18, pure  # liteav 13.2; a new one must be implemented before upgrading
    assert {"OnLocalAudioChannelDestroyed", "OnLocalVideoChannelDestroyed", "OnRemoteMixedAudioReceived"} <= set(pure)
    assert sorted(set(pure) - set(CALLBACKS)) == []


def test_every_pure_virtual_callback_with_real_arguments_raises_nothing(trtc, log_lines):
    _, lines = log_lines
    room, sdk = trtc("alice", next(_rooms))
    cloud = sdk.fake_clouds[0]
    # Those that end the room come last, so that each of the others runs on an open room.
    last = ("OnError", "OnExitRoom")
    for name in sorted(_pure_virtuals(), key=lambda n: (n in last, last.index(n) if n in last else 0, n)):
        cloud.fake_deliver(name, *_arguments(name))  # through the real base, on an SDK thread
    assert sdk.fake_delegate_errors == []
    assert [line for line in lines.errors() if "callback" in line["msg"]] == []
    assert room.closed is not None and room.closed.reason is CloseReason.ERROR  # OnError(-103) closed it


def test_a_callback_that_raises_is_logged_once_and_closes_the_room(trtc, log_lines, monkeypatch):
    _, lines = log_lines
    room, sdk = trtc("alice", next(_rooms))
    cloud = sdk.fake_clouds[0]

    def broken(user_id: str, frame: Any) -> None:
        raise ZeroDivisionError("a bug in the adapter")

    monkeypatch.setattr(room, "_on_remote_audio", broken)
    for _ in range(3):
        cloud.fake_deliver("OnRemoteAudioReceived", "bob", liteav.AudioFrame())
    assert sdk.fake_delegate_errors == []  # nothing reached the SDK's thread
    closed, _ = wait_for(room, lambda e: isinstance(e, RoomClosed))
    assert (closed.reason, closed.code) == (CloseReason.ERROR, ERR_FAILED)
    assert "OnRemoteAudioReceived" in closed.message and "ZeroDivisionError" in closed.message
    failed = [line for line in lines.errors() if line["msg"].startswith("liteav callback failed")]
    assert [line["callback"] for line in failed] == ["OnRemoteAudioReceived"]
    # The adapter leaves by itself (ExitRoom, then lets go of the cloud), on a thread of its own.
    _until(lambda: cloud.fake_destroyed, what="the cloud being let go")
    with pytest.raises(RoomError):
        room.send_audio(media.tone(0))


# --- bad input from the SDK -----------------------------------------------------------------------


def _audio(rate: int = 48000, channels: int = 1, size: int = 1920, pts: int = 0) -> Any:
    f = liteav.AudioFrame()
    f.SetData(bytes([1, 0]) * (size // 2) + bytes(size % 2))
    f.sample_rate, f.channels, f.pts = rate, channels, pts
    return f


def _h265(pts: int = 0, data: bytes = b"\x00\x00\x00\x01\x40\x01\x0c") -> Any:
    f = liteav.VideoFrame()
    f.SetData(data)
    f.codec, f.pts, f.dts, f.is_key_frame = liteav.VIDEO_CODEC_TYPE_H265, pts, pts, True
    return f


def test_h265_from_the_sdk_is_passed_on_as_hevc(trtc):
    room, sdk = trtc("recorder", next(_rooms))
    high = liteav.STREAM_TYPE_VIDEO_HIGH
    sdk.fake_clouds[0].fake_deliver("OnRemoteVideoFrameReceived", "bob", high, _h265(40))
    event, _ = wait_for(room, lambda e: isinstance(e, RemoteVideo))
    frame = event.frame
    assert (event.user_id, frame.codec, frame.pts_ms, frame.key) == ("bob", "hevc", 40, True)
    assert frame.data == b"\x00\x00\x00\x01\x40\x01\x0c"
    assert room.dropped_frames == {}


def test_frames_we_cannot_use_are_counted_and_logged_once_per_anchor(trtc, log_lines):
    _, lines = log_lines
    room, sdk = trtc("recorder", next(_rooms))
    cloud = sdk.fake_clouds[0]
    high = liteav.STREAM_TYPE_VIDEO_HIGH
    for user, callback, args in (
        ("bob", "OnRemoteVideoFrameReceived", (high, _h265(0, data=b""))),
        ("bob", "OnRemoteVideoFrameReceived", (high, _h265(40, data=b""))),
        ("bob", "OnRemoteAudioReceived", (_audio(rate=44100),)),
        ("bob", "OnRemoteAudioReceived", (_audio(size=7),)),
        ("carol", "OnRemoteVideoFrameReceived", (high, _h265(0, data=b""))),
        ("carol", "OnRemoteAudioReceived", (_audio(pts=20),)),
    ):
        cloud.fake_deliver(callback, user, *args)
    cloud.fake_deliver("OnRemoteMixedAudioReceived", _audio())
    # (Every codec liteav names, H.264 and H.265, is taken: an empty frame stands for the video dropped.)
    assert room.dropped_frames == {("bob", "size"): 3, ("bob", "sample_rate"): 1,
                                   ("carol", "size"): 1, ("", "mixed_audio"): 1}
    dropped = [(w["anchor"], w["problem"]) for w in lines.warnings() if w["msg"].startswith("dropped a frame")]
    assert sorted(dropped) == sorted(room.dropped_frames)  # one line each, the repeat only counted
    assert any("an empty video frame" in w.get("detail", "") for w in lines.warnings())
    # The anchor with good audio is unaffected, and the room stays open.
    event, _ = wait_for(room, lambda e: isinstance(e, RemoteAudio))
    assert (event.user_id, event.frame.pts_ms, len(event.frame.data)) == ("carol", 20, 1920)
    assert room.closed is None and sdk.fake_delegate_errors == []


def test_media_a_media_thread_delivers_after_its_user_left_is_dropped(trtc):
    room, sdk = trtc("recorder", next(_rooms))
    cloud = sdk.fake_clouds[0]
    bob = fake._user_info("bob")
    cloud.fake_deliver("OnRemoteUserEnterRoom", bob)
    cloud.fake_deliver("OnRemoteAudioReceived", "bob", _audio(pts=0))
    cloud.fake_deliver("OnRemoteUserExitRoom", bob, 0)
    # The audio thread is behind the signal thread: this frame would start a new stay in a recorder.
    cloud.fake_deliver("OnRemoteAudioReceived", "bob", _audio(pts=20))
    cloud.fake_deliver("OnRemoteUserEnterRoom", bob)
    cloud.fake_deliver("OnRemoteAudioReceived", "bob", _audio(pts=40))
    got = [(type(e).__name__, getattr(getattr(e, "frame", None), "pts_ms", None)) for e in drain(room)]
    assert got == [("UserEntered", None), ("RemoteAudio", 0), ("UserLeft", None), ("UserEntered", None),
                   ("RemoteAudio", 40)]


def test_callbacks_come_from_more_than_one_sdk_thread(trtc):
    n = next(_rooms)
    receiver, sdk = trtc("receiver", n)
    sender, _ = trtc("sender", n)
    sender.start_audio()
    sender.start_video(VideoEncodeConfig(fps=25))
    for i in range(5):
        sender.send_audio(media.tone(i))
        sender.send_video(media.grey(160, 120, 100, i * 40))
    got: set[str] = set()
    wait_for(receiver, lambda e: got.add(type(e).__name__) or {"RemoteAudio", "RemoteVideo"} <= got)
    threads = sdk.fake_clouds[0].fake_callback_threads
    events, audio, video = (threads[n] for n in ("OnRemoteUserEnterRoom", "OnRemoteAudioReceived",
                                                 "OnRemoteVideoFrameReceived"))
    assert events and audio and video and not (events & audio) and not (events & video) and not (audio & video)


# --- leaving ----------------------------------------------------------------------------------------


def test_exit_lets_go_of_the_cloud_which_destroy_does_not_do(trtc):
    room, sdk = trtc("alice", next(_rooms))
    room.start_audio()
    room.start_video()
    cloud = sdk.fake_clouds[0]
    handle = weakref.ref(room._cloud)
    room.exit()
    gc.collect()
    assert handle() is None, gc.get_referrers(handle())
    assert cloud.fake_destroyed
    assert ("DestroyTRTCCloud",) in sdk.fake_sdk_calls  # called, and does nothing, as in liteav
    # The SDK closed both channels before reporting OnExitRoom.
    assert {"OnLocalAudioChannelDestroyed", "OnLocalVideoChannelDestroyed", "OnExitRoom"} <= set(
        cloud.fake_callback_threads)


def test_a_removed_member_lets_go_of_its_cloud_without_being_told(trtc, room_service):
    from tencentcloud.trtc.v20190722 import models

    n = next(_rooms)
    room, sdk = trtc("alice", n)
    cloud = sdk.fake_clouds[0]
    handle = weakref.ref(room._cloud)
    req = models.RemoveUserRequest()
    req.SdkAppId, req.RoomId, req.UserIds = room_service.sdk_app_id, n, ["alice"]
    room_service.trtc_client().RemoveUser(req)
    closed, _ = wait_for(room, lambda e: isinstance(e, RoomClosed))
    assert closed.reason is CloseReason.REMOVED
    _until(lambda: handle() is None and cloud.fake_destroyed, what="the cloud being let go")


def test_a_cloud_whose_exit_the_sdk_never_confirms_is_dropped_after_a_bounded_wait(trtc, monkeypatch):
    room, sdk = trtc("alice", next(_rooms))
    cloud = sdk.fake_clouds[0]
    monkeypatch.setattr(sdk.TRTCCloud, "ExitRoom", lambda self: 0)  # accepted, never answered
    started = time.monotonic()
    room.exit()
    assert time.monotonic() - started < 4.0
    gc.collect()
    assert cloud.fake_destroyed and room.closed == RoomClosed(CloseReason.EXITED)


# --- configuration: the SDK's log, the scene -------------------------------------------------------


def test_the_sdk_logs_under_cfs_path_not_to_the_console_at_warnings_once_per_process(
        trtc, tmp_path, monkeypatch, room_service, log_lines):
    monkeypatch.setenv("CFS_PATH", str(tmp_path))
    monkeypatch.delenv("LITEAV_LOG_LEVEL", raising=False)
    _, sdk = trtc("alice", next(_rooms))
    assert sdk.fake_sdk_calls[:3] == [("DisableConsoleLog",), ("SetLogLevel", 2),
                                      ("SetLogPath", str(tmp_path / "liteav_log"))]
    assert ("DisableLogFile", True) not in sdk.fake_sdk_calls and (tmp_path / "liteav_log").is_dir()
    # The settings are the SDK's, process-wide: a second room on the same module leaves them be.
    before = len(sdk.fake_sdk_calls)
    second = TRTCRoom(sdk=sdk, logger=log_lines[0])
    second.enter(EnterParams(room_service.sdk_app_id, RoomRef(next(_rooms)), "bob", room_service.usersig("bob"),
                             timeout=WAIT_S))
    second.exit()
    assert [c for c in sdk.fake_sdk_calls[before:] if c[0] != "DestroyTRTCCloud"] == []


def test_the_sdk_log_is_configured_before_the_cloud_exists(room_service, tmp_path, monkeypatch, log_lines):
    monkeypatch.setenv("CFS_PATH", str(tmp_path))
    host, _, port = room_service.address.rpartition(":")
    sdk = fake.make_sdk(host, int(port))
    order: list[str] = []
    real_create = sdk.CreateTRTCCloud
    monkeypatch.setattr(sdk, "CreateTRTCCloud", lambda d: order.append("CreateTRTCCloud") or real_create(d))
    monkeypatch.setattr(sdk, "SetLogPath", lambda path: order.append("SetLogPath") or True)
    room = TRTCRoom(sdk=sdk, logger=log_lines[0])
    try:
        room.enter(EnterParams(room_service.sdk_app_id, RoomRef(next(_rooms)), "alice",
                               room_service.usersig("alice"), timeout=WAIT_S))
    finally:
        room.exit()
    assert order == ["SetLogPath", "CreateTRTCCloud"]


@pytest.mark.parametrize("value, level, log_file", [("none", 5, False), ("debug", 0, True), ("3", 3, True)])
def test_the_log_level_comes_from_liteav_log_level(trtc, tmp_path, monkeypatch, value, level, log_file):
    monkeypatch.setenv("CFS_PATH", str(tmp_path))
    monkeypatch.setenv("LITEAV_LOG_LEVEL", value)
    _, sdk = trtc("alice", next(_rooms))
    assert ("SetLogLevel", level) in sdk.fake_sdk_calls
    assert (("DisableLogFile", True) not in sdk.fake_sdk_calls) is log_file
    assert any(c[0] == "SetLogPath" for c in sdk.fake_sdk_calls) is log_file


def test_without_a_writable_log_directory_the_sdk_keeps_no_log_file(trtc, monkeypatch, log_lines):
    _, lines = log_lines
    monkeypatch.setenv("CFS_PATH", "/dev/null/cfs")  # nothing can be created under a character device
    room, sdk = trtc("alice", next(_rooms))
    assert ("DisableLogFile", True) in sdk.fake_sdk_calls
    assert not any(c[0] == "SetLogPath" for c in sdk.fake_sdk_calls)
    assert any(w["msg"] == "cannot keep the SDK's log" for w in lines.warnings())
    assert room.closed is None


@pytest.mark.parametrize("variable, value", [("LITEAV_LOG_LEVEL", "loud"), ("TRTC_PUSH_SCENE", "concert"),
                                             ("TRTC_RECORD_SCENE", "tape")])
def test_a_bad_setting_is_refused_naming_the_variable(variable, value, log_lines, monkeypatch):
    monkeypatch.setenv("ROOM_BACKEND", "trtc")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        backend_from_env()
    room = TRTCRoom(sdk=fake.make_sdk("127.0.0.1", 9), logger=log_lines[0])
    with pytest.raises(RoomError) as e:
        room.enter(EnterParams(1400000001, RoomRef(1), "alice", "sig", receive=NO_MEDIA if variable == "TRTC_PUSH_SCENE" else EVERY_STREAM))
    assert e.value.code == ERR_INVALID_PARAMETER and variable in str(e.value)


def test_a_recorder_enters_with_the_record_scene_and_a_pusher_with_the_live_one(trtc, monkeypatch):
    n = next(_rooms)
    _, recorder = trtc("recorder", n)
    _, pusher = trtc("pusher", n, receive=NO_MEDIA)
    assert recorder.fake_clouds[0].fake_scene == liteav.TRTC_SCENE_RECORD
    assert pusher.fake_clouds[0].fake_scene == liteav.TRTC_SCENE_LIVE
    monkeypatch.setenv("TRTC_RECORD_SCENE", "TRTC_SCENE_VIDEO_CALL")
    monkeypatch.setenv("TRTC_PUSH_SCENE", "voice_chat")
    _, recorder = trtc("recorder2", n)
    _, pusher = trtc("pusher2", n, receive=NO_MEDIA)
    assert recorder.fake_clouds[0].fake_scene == liteav.TRTC_SCENE_VIDEO_CALL
    assert pusher.fake_clouds[0].fake_scene == liteav.TRTC_SCENE_VOICE_CHAT


def test_outside_the_record_scene_no_per_user_audio_arrives(trtc, monkeypatch):
    """What the scene is for: the fake, like the server SDK's headers, gives per-user PCM in
    TRTC_SCENE_RECORD only; with another recording scene the recorder would hear nothing."""
    monkeypatch.setenv("TRTC_RECORD_SCENE", "live")
    n = next(_rooms)
    recorder, sdk = trtc("recorder", n)
    anchor, _ = trtc("anchor", n, receive=NO_MEDIA)
    anchor.start_audio()
    for i in range(5):
        anchor.send_audio(media.tone(i))
    wait_for(recorder, lambda e: e == AudioAvailable("anchor", True))
    assert not [e for e in drain(recorder, quiet=0.5) if isinstance(e, RemoteAudio)]
    assert any("TRTC_SCENE_RECORD" in r for r in sdk.fake_clouds[0].fake_refusals)


# --- a pusher receives nothing ---------------------------------------------------------------------


def test_a_member_that_receives_no_media_unsubscribes_from_every_remote_stream(trtc, monkeypatch):
    # The record scene for the pusher too, so that subscribed audio would reach it: only
    # unsubscribing keeps it out.
    monkeypatch.setenv("TRTC_PUSH_SCENE", "record")
    n = next(_rooms)
    pusher, pusher_sdk = trtc("pusher", n, receive=NO_MEDIA)
    recorder, recorder_sdk = trtc("recorder", n)
    anchor, _ = trtc("anchor", n)
    wait_for(pusher, lambda e: e == UserEntered("anchor"))
    anchor.start_audio()
    anchor.start_video(VideoEncodeConfig(fps=25))
    for i in range(10):
        anchor.send_audio(media.tone(i))
        anchor.send_video(media.grey(160, 120, 90, i * 40))
    wait_for(pusher, lambda e: e == VideoAvailable("anchor", True))
    # The recorder in the same room gets the media: it flows, and the pusher is spared it.
    got: set[str] = set()
    wait_for(recorder, lambda e: got.add(type(e).__name__) or {"RemoteAudio", "RemoteVideo"} <= got)
    seen = drain(pusher, quiet=0.5)
    assert not [e for e in seen if isinstance(e, (RemoteAudio, RemoteVideo))]
    cloud = pusher_sdk.fake_clouds[0]
    assert cloud.fake_frames_delivered == {}  # not even to the delegate: the SDK decodes nothing for it
    assert {("anchor", int(liteav.STREAM_TYPE_AUDIO)), ("anchor", int(liteav.STREAM_TYPE_VIDEO_HIGH))} \
        <= cloud.fake_unsubscribed
    assert recorder_sdk.fake_clouds[0].fake_unsubscribed == set()


def test_a_listener_unsubscribes_from_pictures_and_from_the_voices_it_does_not_recognise(trtc, monkeypatch):
    n = next(_rooms)
    listener, listener_sdk = trtc("listener", n, receive=Subscription(video=False, audio_from=frozenset({"student"})))
    publish_tones_and_pictures(trtc("teacher", n)[0], trtc("student", n)[0])
    seen = gather_until(listener, lambda seen: VideoAvailable("teacher", True) in seen and any(
        isinstance(x, RemoteAudio) and x.user_id == "student" for x in seen))
    assert not [e for e in seen if isinstance(e, RemoteVideo) or (isinstance(e, RemoteAudio) and e.user_id != "student")]
    unsubscribed = listener_sdk.fake_clouds[0].fake_unsubscribed
    high, audio = int(liteav.STREAM_TYPE_VIDEO_HIGH), int(liteav.STREAM_TYPE_AUDIO)
    assert {("teacher", audio), ("teacher", high), ("student", high)} <= unsubscribed
    assert ("student", audio) not in unsubscribed
