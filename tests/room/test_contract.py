"""The room contract: what every room backend does, checked against the running emulator.

Each test runs once per backend (`local`, `trtc`); see conftest.py.
"""
from __future__ import annotations

import pytest
from tencentcloud.trtc.v20190722 import models as trtc_models

from emulator import media
from shared.room import (
    ERR_BANNED_BY_SERVER,
    ERR_INVALID_SDK_APP_ID,
    ERR_INVALID_USER_SIG,
    LEFT_KICKED,
    LEFT_NORMALLY,
    NO_MEDIA,
    AudioAvailable,
    CloseReason,
    EnterParams,
    H264Frame,
    KeyFrameRequested,
    PixelFrame,
    RemoteAudio,
    RemoteVideo,
    Role,
    RoomClosed,
    RoomError,
    RoomRef,
    Subscription,
    UserEntered,
    UserLeft,
    VideoAvailable,
    VideoEncodeConfig,
    VideoFormat,
)

from .conftest import WAIT_S, describe, drain, gather_until, publish_tones_and_pictures, room_factory, wait_for


def _request(cls, **fields):
    req = cls()
    req._deserialize(fields)
    return req


def _media_from(room, user_id: str, audio: int, video: int, timeout: float = WAIT_S):
    """Collect `audio` RemoteAudio and `video` RemoteVideo events from user_id."""
    got_a: list = []
    got_v: list = []

    def enough(e) -> bool:
        if isinstance(e, RemoteAudio) and e.user_id == user_id:
            got_a.append(e.frame)
        elif isinstance(e, RemoteVideo) and e.user_id == user_id:
            got_v.append(e.frame)
        return len(got_a) >= audio and len(got_v) >= video

    if audio or video:
        wait_for(room, enough, timeout)
    return got_a, got_v


# --- entering ----------------------------------------------------------------------------------


def test_entering_shows_each_anchor_to_the_others(join, room_service, room_id):
    rid = room_id()
    b = join("b", rid)
    a = join("a", rid)
    wait_for(b, lambda e: e == UserEntered("a"))
    assert room_service.rooms.user_ids(room_service.sdk_app_id, rid) == ["a", "b"]
    # A newcomer learns about the anchor already there.
    wait_for(a, lambda e: e == UserEntered("b"))


def test_bad_usersig_is_refused_with_its_code(new_room, room_service, room_id):
    rid = room_id()
    room = new_room()
    forged = room_service.usersig("mallory")  # a valid UserSig, but for another user
    with pytest.raises(RoomError) as err:
        room.enter(EnterParams(room_service.sdk_app_id, RoomRef(rid), "alice", forged, timeout=WAIT_S))
    assert err.value.code == ERR_INVALID_USER_SIG
    assert room_service.rooms.user_ids(room_service.sdk_app_id, rid) == []


def test_unknown_sdk_app_id_is_refused_with_its_code(new_room, room_service, room_id):
    room = new_room()
    with pytest.raises(RoomError) as err:
        room.enter(EnterParams(1400000999, RoomRef(room_id()), "alice", room_service.usersig("alice"), timeout=WAIT_S))
    assert err.value.code == ERR_INVALID_SDK_APP_ID


# --- media -------------------------------------------------------------------------------------


def test_anchor_audio_and_video_reach_the_other_member_in_order(join, room_id):
    rid = room_id()
    b = join("b", rid, role=Role.AUDIENCE)
    a = join("a", rid)
    a.start_audio()
    a.start_video(VideoEncodeConfig(fps=25, gop_seconds=2))
    wait_for(b, lambda e: e == AudioAvailable("a", True))
    sent_audio = [media.tone(i) for i in range(50)]
    sent_video = [media.grey(160, 120, 40 + 3 * i, i * 40) for i in range(25)]
    for i in range(50):
        a.send_audio(sent_audio[i])
        if i % 2 == 0:
            a.send_video(sent_video[i // 2])
    audio, video = _media_from(b, "a", audio=50, video=25)

    assert [f.pts_ms for f in audio] == [f.pts_ms for f in sent_audio]
    assert all(f.sample_rate == 48000 and f.channels == 1 and f.samples == 960 for f in audio)
    # Opus is lossy, but a loud tone comes out loud (after the codec's start-up).
    assert min(media.rms(f) for f in audio[5:]) > 3000

    assert all(isinstance(f, H264Frame) for f in video)
    for got, sent in zip(video, sent_video):
        assert abs(got.pts_ms - sent.pts_ms) <= 40
    assert [f.pts_ms for f in video] == sorted(f.pts_ms for f in video)
    assert video[0].key and video[0].data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01"))


def test_h264_access_units_arrive_as_sent(join, room_id):
    rid = room_id()
    units = media.h264_units(30, gop=10)
    b = join("b", rid)
    a = join("a", rid, video_input=VideoFormat.H264)
    a.start_video(VideoEncodeConfig(fps=25))
    wait_for(b, lambda e: e == VideoAvailable("a", True))
    for unit in units:
        a.send_video(unit)
    _, video = _media_from(b, "a", audio=0, video=len(units))
    assert [(f.data, f.pts_ms, f.key) for f in video] == [(u.data, u.pts_ms, u.key) for u in units]


def test_video_decoded_on_request_and_stereo_audio(join, room_id):
    rid = room_id()
    b = join("b", rid, video_output=VideoFormat.YUV420P, audio_output_channels=2)
    a = join("a", rid)
    a.start_audio(channels=2)
    a.start_video(VideoEncodeConfig(fps=25))
    for i in range(10):
        a.send_audio(media.tone(i, channels=2))
        a.send_video(media.grey(160, 120, 200, i * 40))
    audio, video = _media_from(b, "a", audio=10, video=10)
    assert all(isinstance(f, PixelFrame) and (f.width, f.height) == (160, 120) for f in video)
    assert [f.pts_ms for f in video] == [i * 40 for i in range(10)]
    assert abs(media.mean_luma(video[-1]) - 200) < 10
    assert all(f.channels == 2 and len(f.data) == 960 * 2 * 2 for f in audio)
    assert media.rms(audio[-1]) > 3000


def test_member_that_does_not_receive_media_gets_events_only(join, room_id):
    rid = room_id()
    pusher = join("pusher", rid, receive=NO_MEDIA)
    a = join("a", rid)
    a.start_audio()
    for i in range(10):
        a.send_audio(media.tone(i))
    wait_for(pusher, lambda e: e == AudioAvailable("a", True))
    later = drain(pusher, quiet=0.5)
    assert not [e for e in later if isinstance(e, (RemoteAudio, RemoteVideo))]


def test_a_listener_gets_the_audio_of_the_anchors_it_names_and_no_pictures(join, room_id):
    rid = room_id()
    listener = join("listener", rid, receive=Subscription(video=False, audio_from=frozenset({"a"})))
    publish_tones_and_pictures(join("a", rid), join("b", rid))
    seen = gather_until(listener, lambda seen: VideoAvailable("b", True) in seen and any(
        isinstance(x, RemoteAudio) for x in seen))
    media_events = [e for e in seen if isinstance(e, (RemoteAudio, RemoteVideo))]
    assert media_events and {(type(e).__name__, e.user_id) for e in media_events} == {("RemoteAudio", "a")}


def test_key_frame_request_reaches_the_publisher(join, room_id):
    # TRTC's server SDK cannot ask for key frames (the service does it by itself), so the request
    # comes from a local member; what is checked is the publishing side of the backend under test.
    rid = room_id()
    b = join("b", rid, via="local")
    a = join("a", rid)
    a.start_video(VideoEncodeConfig(fps=10, gop_seconds=10))
    for i in range(5):
        a.send_video(media.grey(160, 120, 60 + i, i * 100))
    _, first = _media_from(b, "a", audio=0, video=5)
    assert [f.key for f in first] == [True, False, False, False, False]
    b.request_key_frame("a")
    wait_for(a, lambda e: isinstance(e, KeyFrameRequested))
    a.send_video(media.grey(160, 120, 70, 500))
    _, after = _media_from(b, "a", audio=0, video=1)
    assert after[0].pts_ms == 500 and after[0].key


# --- leaving, removal, dismissal -------------------------------------------------------------


def test_others_learn_when_an_anchor_leaves_and_why(join, room_id):
    rid = room_id()
    b = join("b", rid)
    a = join("a", rid)
    wait_for(b, lambda e: e == UserEntered("a"))
    a.exit()
    a.exit()  # idempotent
    assert a.closed is not None and a.closed.reason is CloseReason.EXITED
    wait_for(b, lambda e: e == UserLeft("a", LEFT_NORMALLY))
    with pytest.raises(RoomError):
        a.send_audio(media.tone(0))


def test_remove_user_through_the_cloud_api(join, room_service, room_id):
    rid = room_id()
    a, b, c = join("a", rid), join("b", rid), join("c", rid)
    wait_for(a, lambda e: e == UserEntered("c"))
    room_service.trtc_client().RemoveUser(_request(
        trtc_models.RemoveUserRequest, SdkAppId=room_service.sdk_app_id, RoomId=rid, UserIds=["b"]))
    closed, _ = wait_for(b, lambda e: isinstance(e, RoomClosed))
    assert closed.reason is CloseReason.REMOVED and closed.code == ERR_BANNED_BY_SERVER
    for other in (a, c):
        wait_for(other, lambda e: e == UserLeft("b", LEFT_KICKED))
    assert room_service.rooms.user_ids(room_service.sdk_app_id, rid) == ["a", "c"]
    with pytest.raises(RoomError):
        b.send_audio(media.tone(0))


def test_remove_user_by_string_room_id(join, room_service, room_id):
    rid = f"str-{room_id()}"
    a, b = join("a", rid), join("b", rid)
    wait_for(a, lambda e: e == UserEntered("b"))
    room_service.trtc_client().RemoveUserByStrRoomId(_request(
        trtc_models.RemoveUserByStrRoomIdRequest, SdkAppId=room_service.sdk_app_id, RoomId=rid, UserIds=["b"]))
    closed, _ = wait_for(b, lambda e: isinstance(e, RoomClosed))
    assert (closed.reason, closed.code) == (CloseReason.REMOVED, ERR_BANNED_BY_SERVER)
    wait_for(a, lambda e: e == UserLeft("b", LEFT_KICKED))


# How a dismissal reaches each backend: the local room server says so; liteav's OnExitRoom() names
# no reason, so the trtc backend claims no more than that the server ended the stay.
DISMISSAL = {"local": CloseReason.DISMISSED, "trtc": CloseReason.ENDED_BY_SERVER}


@pytest.mark.parametrize("string_room", [False, True], ids=["DismissRoom", "DismissRoomByStrRoomId"])
def test_dismiss_room_tells_everyone(backend, join, room_service, room_id, string_room):
    rid = f"str-{room_id()}" if string_room else room_id()
    a, b = join("a", rid), join("b", rid, role=Role.AUDIENCE)
    client = room_service.trtc_client()
    if string_room:
        client.DismissRoomByStrRoomId(_request(trtc_models.DismissRoomByStrRoomIdRequest,
                                               SdkAppId=room_service.sdk_app_id, RoomId=rid))
    else:
        client.DismissRoom(_request(trtc_models.DismissRoomRequest, SdkAppId=room_service.sdk_app_id, RoomId=rid))
    for member in (a, b):
        closed, _ = wait_for(member, lambda e: isinstance(e, RoomClosed))
        assert closed.reason is DISMISSAL[backend]
    assert room_service.rooms.get(room_service.sdk_app_id, rid) is None


def test_same_user_id_twice_pushes_the_first_out(join, room_id):
    rid = room_id()
    watcher = join("watcher", rid)
    first = join("dup", rid)
    wait_for(watcher, lambda e: e == UserEntered("dup"))
    second = join("dup", rid)
    closed, _ = wait_for(first, lambda e: isinstance(e, RoomClosed))
    assert closed.code == ERR_BANNED_BY_SERVER
    assert closed.reason in (CloseReason.REPLACED, CloseReason.REMOVED)
    _, seen = wait_for(watcher, lambda e: e == UserEntered("dup"))
    assert UserLeft("dup", LEFT_KICKED) in seen
    # The second client is the one in the room now.
    second.start_audio()
    second.send_audio(media.tone(0))
    audio, _ = _media_from(watcher, "dup", audio=1, video=0)
    assert audio[0].pts_ms == 0


def test_integer_room_and_string_room_with_the_same_digits_are_different(join, room_service):
    app = room_service.sdk_app_id
    a = join("a", 123)
    b = join("b", 123)
    c = join("c", "123")
    wait_for(b, lambda e: e == UserEntered("a"))
    a.start_audio()
    for i in range(5):
        a.send_audio(media.tone(i))
    _media_from(b, "a", audio=5, video=0)
    seen_by_c = drain(c, quiet=0.5)
    assert not [e for e in seen_by_c if getattr(e, "user_id", None) in ("a", "b")], describe(seen_by_c)
    assert room_service.rooms.user_ids(app, 123) == ["a", "b"]
    assert room_service.rooms.user_ids(app, "123") == ["c"]


def test_audience_cannot_publish_and_is_not_announced(join, room_id):
    rid = room_id()
    b = join("b", rid)
    viewer = join("viewer", rid, role=Role.AUDIENCE)
    with pytest.raises(RoomError):
        viewer.start_audio()
        viewer.send_audio(media.tone(0))
    with pytest.raises(RoomError):
        viewer.start_video()
        viewer.send_video(media.grey(160, 120, 10, 0))
    seen = drain(b, quiet=0.5)
    assert not [e for e in seen if getattr(e, "user_id", None) == "viewer"], describe(seen)


def test_room_without_an_anchor_is_dismissed_after_the_idle_time(backend, make_room_service):
    service = make_room_service(dismiss_after=1.0)
    rooms = []
    try:
        for user, role in (("viewer", Role.AUDIENCE), ("a", Role.ANCHOR)):
            room = room_factory(backend, service.address)()
            rooms.append(room)
            room.enter(EnterParams(service.sdk_app_id, RoomRef(42), user, service.usersig(user), role=role,
                                   timeout=WAIT_S))
        viewer, a = rooms
        a.start_audio()
        a.send_audio(media.tone(0))
        # While the anchor is there the room stays (longer than the idle time).
        _media_from(viewer, "a", audio=1, video=0)
        drain(viewer, quiet=1.5, limit=1.5)
        assert viewer.closed is None
        a.exit()
        wait_for(viewer, lambda e: e == UserLeft("a", LEFT_NORMALLY))
        closed, _ = wait_for(viewer, lambda e: isinstance(e, RoomClosed), timeout=5)
        assert closed.reason is DISMISSAL[backend]
        assert service.rooms.get(service.sdk_app_id, 42) is None
    finally:
        for room in rooms:
            room.exit()


def test_an_anchor_publishing_h265_reaches_members_as_hevc(join, room_service, room_id):
    """A local anchor asked for H.265 (libx265) publishes it; members get the units marked hevc,
    or decoded pictures when they asked for YUV."""
    import av

    from shared.room.local import LocalRoom

    rid = room_id()
    units_to = join("b", rid, role=Role.AUDIENCE)
    pictures_to = join("c", rid, role=Role.AUDIENCE, video_output=VideoFormat.YUV420P)
    host, _, port = room_service.address.rpartition(":")
    a = LocalRoom(host, int(port), video_codec="hevc")
    try:
        a.enter(EnterParams(room_service.sdk_app_id, RoomRef(rid), "a", room_service.usersig("a"), timeout=WAIT_S))
        a.start_video(VideoEncodeConfig(fps=25))
        wait_for(units_to, lambda e: e == VideoAvailable("a", True))
        for i in range(10):
            a.send_video(media.grey(160, 120, 200, i * 40))
        _, units = _media_from(units_to, "a", audio=0, video=10)
        _, pictures = _media_from(pictures_to, "a", audio=0, video=10)
    finally:
        a.exit()
    assert all(isinstance(f, H264Frame) and f.codec == "hevc" for f in units)
    assert units[0].key
    decoder = av.CodecContext.create("hevc", "r")
    decoded = [f for u in units for f in decoder.decode(av.Packet(u.data))]
    assert decoded and (decoded[0].width, decoded[0].height) == (160, 120)
    assert all(isinstance(f, PixelFrame) and (f.width, f.height) == (160, 120) for f in pictures)
    assert abs(media.mean_luma(pictures[-1]) - 200) < 10
