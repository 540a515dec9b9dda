"""MediaSource on local files: what comes out of each kind of clip, seeking, and bad files."""
from __future__ import annotations

import pytest

from shared.media.source import AudioPlan, MediaSource, SourceError, VideoPlan
from shared.room.base import H264Frame, PixelFrame
from tests.media.helpers import (
    channel_samples,
    decode_h264,
    dominant_hz,
    nal_types,
    pull,
    rms,
    strictly_increasing,
)

# name: (passthrough, output channels, picture size or None when passthrough / no video)
KINDS = {
    "tone_pattern.mp4": (True, 2, None),
    "bframes.mp4": (False, 2, (160, 120)),
    "stereo44k.mp4": (True, 2, None),
    "mono8k.mp4": (True, 1, None),
    "surround51.mp4": (True, 2, None),
    "odd_size.mp4": (False, 2, (320, 240)),
    "moov_at_end.mp4": (True, 2, None),
    "clip.flv": (True, 2, None),
    "clip.mkv": (True, 2, None),
    "clip.webm": (False, 2, (160, 120)),
    "clip.mov": (True, 2, None),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_yields_whole_clip_in_room_format(clips, media_log, name):
    passthrough, channels, size = KINDS[name]
    with MediaSource(str(clips.get(name)), log=media_log) as src:
        assert src.info.passthrough is passthrough
        assert not src.info.is_live and src.info.duration_s == pytest.approx(2.0, abs=0.1)
        got = pull(src)
    # 2 s: 100 audio frames of exactly 20 ms, 50 pictures at 25 fps
    assert 98 <= len(got.audio) <= 103
    assert 49 <= len(got.video) <= 51
    assert {len(f.data) for f in got.audio} == {960 * 2 * channels}
    assert {(f.channels, f.sample_rate) for f in got.audio} == {(channels, 48000)}
    assert strictly_increasing(got.audio_pts) and strictly_increasing(got.video_pts)
    assert all(b - a == 20 for a, b in zip(got.audio_pts, got.audio_pts[1:]))
    assert got.audio_pts[0] < 60 and got.video_pts[0] < 60
    assert got.order == sorted(got.order), "audio and video are interleaved by pts"
    if passthrough:
        assert all(isinstance(f, H264Frame) for f in got.video)
        assert got.video[0].key
        assert len(decode_h264(got.video)) == len(got.video)
    else:
        assert all(isinstance(f, PixelFrame) for f in got.video)
        assert {(f.width, f.height) for f in got.video} == {size}
        assert {len(f.data) for f in got.video} == {size[0] * size[1] * 3 // 2}
    opened = media_log.catcher.fields("source opened")[0]
    assert opened["video_path"].startswith("H.264 passthrough" if passthrough else "decode to yuv420p")


def test_passthrough_key_frames_carry_sps_pps(clips):
    with MediaSource(str(clips.get("long.mp4"))) as src:
        video = pull(src).video
    keys = [f for f in video if f.key]
    assert len(keys) == 6  # a key frame every second
    for f in video:
        types = nal_types(f.data)
        assert f.data.startswith(b"\x00\x00\x00\x01") or f.data.startswith(b"\x00\x00\x01")
        assert (5 in types) == f.key
        if f.key:
            assert 7 in types and 8 in types


def test_bframes_are_decoded_and_logged(clips, media_log):
    with MediaSource(str(clips.get("bframes.mp4")), log=media_log) as src:
        assert not src.info.passthrough
        got = pull(src)
    assert "B-frames" in media_log.catcher.fields("source opened")[0]["video_path"]
    assert strictly_increasing(got.video_pts)
    assert all(b - a == 40 for a, b in zip(got.video_pts, got.video_pts[1:]))


def test_audio_is_resampled_without_pitch_change(clips):
    for name, channel, hz in (("mono8k.mp4", 0, 440), ("stereo44k.mp4", 0, 440), ("stereo44k.mp4", 1, 550)):
        with MediaSource(str(clips.get(name))) as src:
            audio = pull(src).audio
        assert dominant_hz(channel_samples(audio[5:-5], channel)) == pytest.approx(hz, rel=0.02)


def test_surround_is_downmixed_to_stereo_or_mono(clips):
    with MediaSource(str(clips.get("surround51.mp4"))) as src:
        assert src.info.audio_channels == 6
        stereo = pull(src).audio
    with MediaSource(str(clips.get("surround51.mp4")), audio=AudioPlan(channels=1)) as src:
        mono = pull(src).audio
    assert {f.channels for f in stereo} == {2} and {f.channels for f in mono} == {1}
    assert {len(f.data) for f in mono} == {1920}
    assert rms(channel_samples(stereo[10:-10], 0)) > 1000 and rms(channel_samples(mono[10:-10])) > 1000


def test_volume_scales_pcm(clips):
    levels = {}
    for volume in (100, 50, 0):
        with MediaSource(str(clips.get("tone_pattern.mp4")), audio=AudioPlan(volume=volume)) as src:
            levels[volume] = rms(channel_samples(pull(src).audio[10:-10]))
    assert levels[100] > 5000
    assert levels[50] / levels[100] == pytest.approx(0.5, abs=0.03)
    assert levels[0] == 0


def test_last_audio_frame_is_padded_not_short(clips):
    with MediaSource(str(clips.get("stereo44k.mp4"))) as src:
        audio = pull(src).audio
    assert len(audio[-1].data) == 3840


@pytest.mark.parametrize("name, kinds", [
    ("audio_only.mp3", {"audio"}), ("audio_only.m4a", {"audio"}), ("video_only.mp4", {"video"}),
])
def test_single_stream_sources(clips, name, kinds):
    with MediaSource(str(clips.get(name))) as src:
        assert {k for k in ("audio", "video") if getattr(src.info, f"has_{k}")} == kinds
        got = pull(src)
    if "audio" in kinds:
        assert 98 <= len(got.audio) <= 102 and not got.video
    else:
        assert 49 <= len(got.video) <= 51 and not got.audio


def test_video_plan_scales_and_converts_frame_rate(clips):
    with MediaSource(str(clips.get("tone_pattern.mp4")), video=VideoPlan(width=80)) as src:
        assert not src.info.passthrough
        got = pull(src)
    assert {(f.width, f.height) for f in got.video} == {(80, 60)}
    with MediaSource(str(clips.get("tone_pattern.mp4")), video=VideoPlan(fps=10, width=64, height=48)) as src:
        got = pull(src)
    assert 19 <= len(got.video) <= 21
    assert all(b - a == 100 for a, b in zip(got.video_pts, got.video_pts[1:]))
    assert {(f.width, f.height) for f in got.video} == {(64, 48)}
    with MediaSource(str(clips.get("tone_pattern.mp4")), video=VideoPlan(bitrate_kbps=500)) as src:
        assert not src.info.passthrough
        assert {(f.width, f.height) for f in pull(src).video} == {(160, 120)}


def test_variable_frame_rate(clips):
    with MediaSource(str(clips.get("vfr.mkv"))) as src:
        assert src.info.passthrough
        steps = {b - a for a, b in zip(*(lambda p: (p, p[1:]))(pull(src).video_pts))}
    assert steps == {20, 40, 60, 80}
    with MediaSource(str(clips.get("vfr.mkv")), video=VideoPlan(fps=25)) as src:
        pts = pull(src).video_pts
    assert all(b - a == 40 for a, b in zip(pts, pts[1:]))
    assert 48 <= len(pts) <= 51


@pytest.mark.parametrize("plan", [VideoPlan(bitrate_kbps=800), VideoPlan()], ids=["decoded", "passthrough"])
def test_seek(clips, plan):
    with MediaSource(str(clips.get("long.mp4")), video=plan) as src:
        got = pull(src, start_s=2.3)
        again = pull(src)  # a second pass (a loop) starts from the beginning again
    if plan.bitrate_kbps:
        # decoded: the first frame of each stream is within one frame of 2.3 s
        assert 2300 <= got.video_pts[0] < 2340
        assert got.audio_pts[0] == 2300
    else:
        # passthrough: from the key frame at or before 2.3 s (one a second), audio from there too
        assert got.video_pts[0] == 2000 and got.video[0].key
        assert 2000 <= got.audio_pts[0] < 2020
    assert got.order == sorted(got.order)
    assert got.video_pts[-1] >= 5900 and got.audio_pts[-1] >= 5960
    assert again.video_pts[0] == 0 and len(again.video) == 150


def test_seek_audio_only(clips):
    with MediaSource(str(clips.get("audio_only.m4a"))) as src:
        got = pull(src, start_s=1.25)
    assert got.audio_pts[0] == 1250 and 36 <= len(got.audio) <= 38


def test_corrupt_frames_are_skipped_and_counted(clips):
    with MediaSource(str(clips.get("corrupt_frames.mp4")), video=VideoPlan(bitrate_kbps=500)) as src:
        got = pull(src)
        assert src.skipped > 0
    assert got.video_pts[-1] >= 5800 and len(got.video) >= 130


@pytest.mark.parametrize("name, reason", [
    ("not_media.mp4", "not a media file"),
    ("subtitles_only.srt", "has no audio or video stream"),
    ("unknown_codec.mp4", "unsupported video codec"),
    ("truncated_moov_at_end.mp4", "not a media file, or its data is corrupt"),
    ("missing.mp4", "file not found"),
])
def test_bad_files_fail_at_open_naming_source_and_reason(clips, tmp_path, name, reason):
    path = tmp_path / name if name == "missing.mp4" else clips.get(name)
    with pytest.raises(SourceError) as e:
        MediaSource(str(path))
    assert str(path) in str(e.value) and reason in str(e.value)


def test_truncated_file_fails_after_what_it_has(clips):
    path = clips.get("truncated.mp4")
    src = MediaSource(str(path))
    frames = []
    with pytest.raises(SourceError) as e:
        for f in src.frames():
            frames.append(f)
    src.close()
    assert str(path) in str(e.value) and "truncated" in str(e.value)
    assert 40 <= len(frames) <= 110  # about the first second arrived


def test_unusable_urls(tmp_path, monkeypatch):
    with pytest.raises(SourceError, match="unsupported scheme 'ftp'"):
        MediaSource("ftp://example.com/a.mp4")
    with pytest.raises(SourceError, match="is a directory"):
        MediaSource(str(tmp_path))
    with pytest.raises(SourceError, match="empty"):
        MediaSource("  ")
    monkeypatch.setenv("SOURCE_ALLOWLIST", "")
    with pytest.raises(SourceError, match=r"videoSrc http://127.0.0.1:9/a.mp4: host 127.0.0.1 is a loopback address, refused"):
        MediaSource("http://127.0.0.1:9/a.mp4?sig=abc")
    with pytest.raises(SourceError, match="metadata"):
        MediaSource("http://169.254.169.254/latest")


def test_file_url(clips):
    with MediaSource("file://" + str(clips.get("clip.mkv"))) as src:
        assert len(pull(src).video) == 50


def test_too_many_undecodable_frames_in_a_row(clips):
    path = clips.get("garbage.mp4")
    for plan in (VideoPlan(), VideoPlan(bitrate_kbps=300)):
        src = MediaSource(str(path), video=plan)
        with pytest.raises(SourceError) as e:
            pull(src)
        src.close()
        assert str(path) in str(e.value) and "undecodable video frames in a row" in str(e.value)


def test_timestamps_that_jump_back_stay_monotonic(clips):
    # 3 s of media twice over, timestamps restarting halfway: 6 s of frames, pts always rising
    with MediaSource(str(clips.get("reset.ts"))) as src:
        got = pull(src)
    assert strictly_increasing(got.video_pts) and strictly_increasing(got.audio_pts)
    assert 148 <= len(got.video) <= 151 and 295 <= len(got.audio) <= 305
    assert got.video_pts[-1] == pytest.approx(6000, abs=200)
    assert got.audio_pts[-1] == pytest.approx(6000, abs=200)


@pytest.mark.parametrize("kwargs, reason", [
    ({"video": VideoPlan(width=0)}, "video width must be a positive integer"),
    ({"video": VideoPlan(fps=-5)}, "video fps must be a positive integer"),
    ({"audio": AudioPlan(volume=101)}, "volume 101 is out of range"),
    ({"audio": AudioPlan(channels=6)}, "audio channels 6 not supported"),
])
def test_bad_plans(clips, kwargs, reason):
    with pytest.raises(SourceError, match=reason):
        MediaSource(str(clips.get("tone_pattern.mp4")), **kwargs)


def test_abandoned_iteration_then_seek(clips):
    with MediaSource(str(clips.get("long.mp4")), video=VideoPlan(bitrate_kbps=500)) as src:
        first = pull(src, limit=10)
        later = pull(src, start_s=1.0)
        at_end = pull(src, start_s=6.5)  # past the end: nothing left, and no error
    assert first.order[0] == 0 and len(first.order) == 10
    assert 1000 <= later.video_pts[0] < 1040 and later.audio_pts[0] == 1000
    assert not at_end.video and not at_end.audio


def test_file_url_with_escaped_characters(clips, tmp_path):
    import shutil

    path = tmp_path / "a clip.mkv"
    shutil.copy(clips.get("clip.mkv"), path)
    with MediaSource("file://" + str(path).replace(" ", "%20")) as src:
        assert len(pull(src).video) == 50
