"""Sources a phone or a broken download hands over: a corrupt stretch mid-file, a rotated picture,
a picture or frame rate beyond what the room takes, and a clip that loops."""
from __future__ import annotations

import array

import pytest

from emulator.media import discontinuities
from shared.media.plan import VideoLimits
from shared.media.source import MediaSource, PassEnd, SourceError, VideoPlan
from shared.room.base import AudioFrame
from tests.media.helpers import damage_slices, decode_checked, decode_h264, pull, strictly_increasing


@pytest.mark.parametrize("plan", [VideoPlan(), VideoPlan(bitrate_kbps=500)], ids=["passthrough", "decoded"])
def test_64k_of_garbage_mid_file_is_skipped_and_the_push_plays_on(clips, plan):
    # 64 KiB in the middle of a 10 s MP4: 0.6 s of media, 26+ AAC frames in a row undecodable.
    with MediaSource(str(clips.get("corrupt_64k.mp4")), video=plan) as src:
        got = pull(src)
        assert src.skipped > 25
    assert got.audio_pts[-1] >= 9900 and got.video_pts[-1] >= 9900
    assert strictly_increasing(got.audio_pts) and strictly_increasing(got.video_pts)
    if not plan.asked:
        # Passed through: only what decodes goes out (video resumes at the next key frame).
        assert len(decode_h264(got.video)) == len(got.video) and len(got.video) > 180
    gap = max(b - a for a, b in zip(got.audio_pts, got.audio_pts[1:]))
    assert 200 < gap < 1500  # the lost stretch is a gap in time, not a shift of what follows


def test_a_source_that_decodes_nothing_for_the_timeout_fails_naming_it(clips):
    path = clips.get("corrupt_64k.mp4")
    with MediaSource(str(path), timeout_s=0.3) as src:  # SOURCE_TIMEOUT_SECONDS, as media time
        with pytest.raises(SourceError) as e:
            pull(src)
    assert str(path) in str(e.value) and "decoded for" in str(e.value) and "corrupt source" in str(e.value)


def test_rotated_phone_video_is_turned_upright(clips, media_log):
    with MediaSource(str(clips.get("rotated90.mp4")), log=media_log) as src:
        assert not src.info.passthrough and src.info.rotation == 90
        assert (src.info.out_width, src.info.out_height) == (120, 160)
        got = pull(src)
    assert "display matrix turns the picture 90 degrees" in media_log.catcher.fields("source opened")[0]["video_path"]
    assert {(f.width, f.height) for f in got.video} == {(120, 160)}
    y = got.video[5].data
    corner = lambda x0, y0: sum(y[(y0 + r) * 120 + x0 + c] for r in range(20) for c in range(20)) / 400  # noqa: E731
    assert corner(100, 0) > 200 and corner(0, 0) < 60 and corner(0, 140) < 60 and corner(100, 140) < 60


def test_a_picture_beyond_the_room_maximum_is_scaled_down(clips, media_log):
    with MediaSource(str(clips.get("big4000.mp4")), log=media_log) as src:
        assert not src.info.passthrough
        got = pull(src)
    sizes = {(f.width, f.height) for f in got.video}
    assert sizes == {(1440, 1440)} and 1440 * 1440 <= 1920 * 1080
    assert "scaled down to 1440x1440" in media_log.catcher.fields("source opened")[0]["video_path"]


def test_a_frame_rate_beyond_the_room_maximum_is_lowered(clips, media_log):
    with MediaSource(str(clips.get("fast60.mp4")), log=media_log) as src:
        assert not src.info.passthrough and src.info.out_fps == 30
        got = pull(src)
    steps = {b - a for a, b in zip(got.video_pts, got.video_pts[1:])}
    assert steps <= {33, 34} and 58 <= len(got.video) <= 61
    assert "60 fps made 30 fps" in media_log.catcher.fields("source opened")[0]["video_path"]


def test_the_maximum_comes_from_the_environment(clips, monkeypatch):
    monkeypatch.setenv("PUSH_MAX_AREA", "80x60")
    with MediaSource(str(clips.get("tone_pattern.mp4"))) as src:  # 160x120, otherwise passed through
        assert not src.info.passthrough
        assert {(f.width, f.height) for f in pull(src).video} == {(80, 60)}
    with MediaSource(str(clips.get("tone_pattern.mp4")), limits=VideoLimits()) as src:
        assert src.info.passthrough


def test_a_loop_is_seamless_to_the_sample(clips):
    """A tone clip made to loop, played three times: one unbroken tone, 20 ms frames end to end,
    video in step (the codec's padding after the clip's end is not played)."""
    with MediaSource(str(clips.get("tone440_loop.mp4"))) as src:
        items = list(src.play(0, passes=3))
    ends = [i for i in items if isinstance(i, PassEnd)]
    audio = [i for i in items if isinstance(i, AudioFrame)]
    video = [i for i in items if not isinstance(i, (AudioFrame, PassEnd))]
    assert [(e.passes, e.offset_ms) for e in ends] == [(1, 3000), (2, 6000)]
    assert [f.pts_ms for f in audio] == [i * 20 for i in range(450)]
    assert [f.pts_ms for f in video] == [i * 40 for i in range(225)]
    pcm = list(array.array("h", b"".join(f.data for f in audio)))
    assert discontinuities(pcm, 440) == []


def test_passed_through_units_with_damaged_slices_are_not_forwarded(clips, tmp_path):
    """A frame whose slice data is damaged demuxes cleanly; decoded as a receiver would, it shows a
    broken macroblock. It is not forwarded, nor is the rest of its GOP (they refer to it); the key
    frame after it is, and each dropped frame is counted."""
    clean = clips.get("long.mp4")  # 6 s at 25 fps, a key frame every 25 frames, no B-frames
    damaged = damage_slices(clean, tmp_path / "corrupt.mp4", frames=[30, 110])
    with MediaSource(str(damaged)) as src:
        assert src.info.passthrough
        got = pull(src)
        skipped = src.skipped
    pictures, broken = decode_checked([f.data for f in got.video])
    assert broken == 0 and pictures == len(got.video) == 150 - 20 - 15
    assert skipped == 20 + 15
    assert [f.pts_ms for f in got.video if f.key] == [0, 1000, 2000, 3000, 4000, 5000]
