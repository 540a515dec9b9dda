"""Hard sources pushed into the room, asserted on what a viewer in the room gets: a corrupt stretch,
a phone's rotated video, a picture and a frame rate beyond TRTC's ingest, and a looped tone that
must stay one unbroken tone (a click is what a listener would hear)."""
from __future__ import annotations

import array

import pytest

from emulator.media import discontinuities
from functions.push_stream.index import main_handler
from shared.room import RoomRef
from tests.media.helpers import damage_slices, decode_checked

from .conftest import decode_h264, new_room, params_for


def _push(push_env, subscribe, src, **extra):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, src, room, **extra), {"request_id": f"req-{room}"})
    return result, sub.settle()


def test_a_corrupt_stretch_is_skipped_and_the_push_plays_on(push_env, subscribe, clips):
    result, got = _push(push_env, subscribe, clips.get("corrupt_64k.mp4"))
    assert (result["status"], result["reason"], result["path"]) == ("completed", "end_of_source", "passthrough")
    assert result["framesSkipped"] > 25 and result["position"] == pytest.approx(10.0, abs=0.1)
    assert got.audio_pts[-1] >= 9900 and got.video_pts[-1] >= 9900
    # Every access unit that arrived decodes: the push resumed at a key frame after the damage.
    assert len(decode_h264(got.video_data)) == len(got.video_data) > 180


def test_a_damaged_frame_never_reaches_the_room_in_passthrough(push_env, subscribe, clips, tmp_path):
    """Two frames with damaged slice data (they demux cleanly): what the room gets decodes without a
    single concealed macroblock; each damaged frame's GOP resumes at its next key frame, and what
    was held back is counted in framesSkipped."""
    corrupt = damage_slices(clips.get("long.mp4"), tmp_path / "corrupt.mp4", frames=[30, 110])
    result, got = _push(push_env, subscribe, corrupt)
    assert (result["status"], result["reason"], result["path"]) == ("completed", "end_of_source", "passthrough")
    pictures, broken = decode_checked(got.video_data)
    assert broken == 0 and pictures == len(got.video_data) == result["framesSent"]["video"] == 150 - 20 - 15
    assert result["framesSkipped"] == 20 + 15
    assert got.audio_pts[-1] >= 5900  # audio plays on through the damaged stretches


def test_a_rotated_phone_video_arrives_upright(push_env, subscribe, clips):
    result, got = _push(push_env, subscribe, clips.get("rotated90.mp4"))
    assert (result["status"], result["path"]) == ("completed", "transcode")
    pictures = decode_h264(got.video_data)
    assert len(pictures) == 25 and {(p.width, p.height) for p in pictures} == {(120, 160)}
    y = pictures[10].planes[0]
    rows = [bytes(y)[r * y.line_size:r * y.line_size + 120] for r in range(160)]
    corner = lambda x0, y0: sum(sum(rows[y0 + r][x0:x0 + 20]) for r in range(20)) / 400  # noqa: E731
    # The white block of the stored picture's top-left corner is top-right once turned clockwise.
    assert corner(100, 0) > 200 and corner(0, 0) < 60 and corner(0, 140) < 60


def test_a_4000x4000_source_is_scaled_to_the_room_maximum(push_env, subscribe, clips):
    result, got = _push(push_env, subscribe, clips.get("big4000.mp4"))
    assert (result["status"], result["path"]) == ("completed", "transcode")
    pictures = decode_h264(got.video_data)
    assert len(pictures) == 4 and all(p.width * p.height <= 1920 * 1080 for p in pictures)


def test_a_60fps_source_arrives_at_30fps(push_env, subscribe, clips):
    result, got = _push(push_env, subscribe, clips.get("fast60.mp4"))
    assert (result["status"], result["path"]) == ("completed", "transcode")
    steps = [b - a for a, b in zip(got.video_pts, got.video_pts[1:])]
    assert min(steps) >= 33 and 58 <= len(got.video_pts) <= 61


def test_a_looped_tone_arrives_as_one_unbroken_tone(push_env, subscribe, clips):
    """repeatNum 2 of a clip made to loop: what the room decodes is a continuous 440 Hz tone, and
    its audio timeline runs on in 20 ms steps across both loop points."""
    result, got = _push(push_env, subscribe, clips.get("tone440_loop.mp4"), repeatNum=2)
    assert (result["status"], result["loops"]) == ("completed", 3)
    assert result["position"] == pytest.approx(3.0, abs=0.03)  # a position in the clip, not in the loops
    assert got.audio_pts == [i * 20 for i in range(450)]
    pcm = list(array.array("h", b"".join(got.audio_data)))
    assert discontinuities(pcm, 440) == []
