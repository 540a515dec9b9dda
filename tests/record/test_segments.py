"""The segmenter on its own: where segments are cut, what each one is, and that init + segments
is the one MP4 a player expects."""
from __future__ import annotations

import pytest

from emulator.media import h264_units, probe
from shared.record.segments import Segmenter, check_segment_duration

from .segmented import FPS, feed


@pytest.fixture(scope="module")
def units_gop1() -> list:
    return h264_units(12 * FPS, gop=FPS)  # 12 s, a key frame each second


def _join(segments, into):
    into.write_bytes(b"".join(s.path.read_bytes() for s in segments))
    return into


def test_mode02_segments_start_at_key_frames_past_the_duration(tmp_path, units_gop1):
    handed: list[tuple[int, int]] = []  # (segment index, 20 ms step at which it was handed over)
    step = [0]
    seg = Segmenter(tmp_path / "s", "02", video_size=(160, 120), segment_s=3,
                    on_segment=lambda info: handed.append((info.index, step[0])))
    feed(seg, 12, units_gop1, between=lambda i: step.__setitem__(0, i))
    segments = seg.close()
    assert [s.index for s in segments] == [0, 1, 2, 3, 4]
    assert segments[0].is_init and segments[0].duration_ms == 0
    # Cut at the key frames at 3, 6, 9 s (as media time says), the last one at the end.
    assert [round(s.duration_ms / 1000) for s in segments[1:]] == [3, 3, 3, 3]
    assert all(abs(b.start_ms - (a.start_ms + a.duration_ms)) < 1 for a, b in zip(segments[1:], segments[2:]))
    # Handed over while the recording went on (segment 1 when media reached ~3 s), not at the end.
    assert dict(handed)[1] < 4 * 50
    assert [s.bytes for s in segments] == [s.path.stat().st_size for s in segments]

    whole = probe(_join(segments, tmp_path / "whole.mp4"))
    assert whole.video_frames == 12 * FPS
    assert abs(whole.audio_s - 12) <= 0.1 and abs(whole.duration_s - 12) <= 0.1
    for s in segments[1:]:  # init + any one segment plays by itself, from a key frame
        alone = probe(_join([segments[0], s], tmp_path / f"alone{s.index}.mp4"))
        assert alone.first_key is True and alone.video_frames == 3 * FPS


def test_mode01_waits_for_the_next_key_frame(tmp_path):
    units = h264_units(10 * FPS, gop=2 * FPS)  # key frames at 0, 2, 4, ... s
    seg = Segmenter(tmp_path / "s", "01", video_size=(160, 120), segment_s=3)
    feed(seg, 10, units)
    segments = seg.close()
    assert [round(s.duration_ms / 1000) for s in segments[1:]] == [4, 4, 2]
    assert probe(_join(segments, tmp_path / "w.mp4")).video_frames == 10 * FPS


def test_a_long_gop_asks_for_a_key_frame(tmp_path):
    units = h264_units(6 * FPS, gop=10 * FPS)  # one key frame only
    seg = Segmenter(tmp_path / "s", "01", video_size=(160, 120), segment_s=2)
    asked_at = []
    feed(seg, 6, units, between=lambda i: asked_at.append(i) if seg.wants_key_frame else None)
    assert asked_at and abs(asked_at[0] * 20 - 2000) <= 60
    seg.close()


def test_audio_only_mp4_is_cut_by_duration(tmp_path):
    seg = Segmenter(tmp_path / "s", "02", video_size=None, segment_s=2)
    feed(seg, 7, [])
    segments = seg.close()
    assert [round(s.duration_ms / 1000, 1) for s in segments[1:]] == [2.0, 2.0, 2.0, 1.0]
    assert abs(probe(_join(segments, tmp_path / "a.mp4")).audio_s - 7) <= 0.1


def test_mode00_segments_are_frame_aligned_without_drift(tmp_path):
    seg = Segmenter(tmp_path / "s", "00", segment_s=2)
    feed(seg, 9, [])
    segments = seg.close()
    ends = [s.start_ms + s.duration_ms for s in segments]
    # Each cut is at the first 24 ms frame boundary at or past 2, 4, 6, 8 s: never more than a frame off.
    assert all(0 <= end - 2000 * (n + 1) < 24 for n, end in enumerate(ends[:-1])), ends
    assert all(s.path.suffix == ".mp3" for s in segments)


@pytest.mark.parametrize("value", [1, 1.9, 61, 0])
def test_segment_duration_out_of_range_names_the_field(tmp_path, value):
    with pytest.raises(ValueError, match="SegmentDuration must be 2..60"):
        check_segment_duration(value)
    with pytest.raises(ValueError, match="SegmentDuration"):
        Segmenter(tmp_path / "s", "00", segment_s=value)
