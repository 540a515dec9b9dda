"""The push's timeline (shared.media.timeline): jumps in source timestamps neither stall nor burst
the pacing after it, audio stays sample-exact through jitter and loops, and streams stay in sync.

The pacing scenarios are the ones the pacer used to absorb itself; timestamps now reach the pacer
through the timeline, as in the push, and what a viewer sees (when each frame goes out) is unchanged.
"""
from __future__ import annotations

from fractions import Fraction

import pytest

from shared.media.pacing import Pacer
from shared.media.timeline import AUDIO_RESYNC_MS, Timeline

from .test_pacing import VirtualClock


class Paced:
    """Source timestamps through a Timeline, then a Pacer on a virtual clock (audio: 20 ms frames)."""

    def __init__(self) -> None:
        self.vc = VirtualClock(jitter_ms=0)
        self.start = self.vc.now
        self.timeline = Timeline(frame_ms=40)
        self.pacer = Pacer(clock=self.vc.clock, sleep=self.vc.sleep)

    def at(self, pts: int, stream: str) -> int:
        if stream == "audio":
            return int(self.timeline.audio(Fraction(pts, 1000), 960, 48000)[0] * 1000)
        at = self.timeline.video(pts)
        assert at is not None
        return at

    def wait(self, pts: int, stream: str) -> int:
        at = self.at(pts, stream)
        self.pacer.wait(at, stream)
        return at

    @property
    def elapsed(self) -> float:
        return self.vc.now - self.start


def test_forward_jump_does_not_stall():
    p = Paced()
    for i in range(26):
        p.wait(i * 40, "video")
    before = p.vc.now
    p.wait(3_600_000, "video")  # an hour ahead (an HLS seam, a broken file)
    assert p.vc.now - before == pytest.approx(0.040, abs=1e-6)
    p.wait(3_600_040, "video")
    assert p.vc.now - before == pytest.approx(0.080, abs=1e-6)


def test_backward_jump_does_not_burst():
    p = Paced()
    for i in range(126):
        p.wait(i * 40, "video")
    marks = []
    for i in range(10):  # back to 0 (a timestamp reset); still one frame per 40 ms
        p.wait(i * 40, "video")
        marks.append(p.vc.now)
    steps = [b - a for a, b in zip(marks, marks[1:])]
    assert steps == pytest.approx([0.040] * 9, abs=1e-6)
    assert p.pacer.lag_ms == 0


def test_jump_on_one_stream_leaves_the_other_alone():
    p = Paced()
    for i in range(50):
        p.wait(i * 20, "audio")
    p.wait(10_000_000, "video")  # video far from audio's timeline joins where audio is
    p.wait(10_000_040, "video")
    assert p.elapsed == pytest.approx(1.020, abs=1e-6)
    for i in range(50, 60):
        p.wait(i * 20, "audio")
    assert p.elapsed == pytest.approx(1.180, abs=1e-6)


def test_gap_in_one_stream_keeps_sync():
    p = Paced()
    # audio runs on; video is missing from 1 s to 4 s (a real gap in the source)
    events = sorted([(i * 20, "audio") for i in range(300)]
                    + [(i * 40, "video") for i in range(150) if not 1000 <= i * 40 < 4000])
    for pts, stream in events:
        assert p.wait(pts, stream) == pts
        assert p.elapsed == pytest.approx(pts / 1000, abs=1e-9)  # video resumes in sync


def test_both_streams_jumping_stay_together():
    p = Paced()
    # 2 s of media, then both streams jump 10 minutes ahead (an HLS discontinuity)
    events = sorted([(i * 20, "audio") for i in range(100)] + [(i * 40, "video") for i in range(50)])
    events += sorted([(600_000 + i * 20, "audio") for i in range(100)]
                     + [(600_000 + i * 40, "video") for i in range(50)])
    last = {}
    for pts, stream in events:
        last[stream] = p.wait(pts, stream)
    assert p.elapsed == pytest.approx(4.0, abs=0.05)  # 4 s of media in 4 s: no stall
    assert last["video"] == pytest.approx(last["audio"] - 20, abs=25)  # still in sync


def test_audio_jitter_keeps_samples_contiguous():
    """1024-sample frames whose timestamps are rounded to ms land exactly after one another."""
    t = Timeline(frame_ms=40)
    ends = []
    at = None
    for i in range(500):
        exact = Fraction(i * 1024, 44100)
        src = Fraction(round(exact * 1000), 1000)  # what a ms container (FLV) says
        at, keep = t.audio(src, 1024, 44100)
        assert keep is None
        ends.append(at)
    assert ends == [Fraction(i * 1024, 44100) for i in range(500)]


def test_audio_gap_restarts_there_and_reset_continues():
    t = Timeline(frame_ms=40)
    for i in range(50):
        t.audio(Fraction(i * 20, 1000), 960, 48000)
    at, _ = t.audio(Fraction(1000 + AUDIO_RESYNC_MS + 300, 1000), 960, 48000)
    assert at == Fraction(1500, 1000)  # a real 500 ms gap is kept
    at, _ = t.audio(Fraction(0), 960, 48000)  # a reset back to 0
    assert at == Fraction(1520, 1000)  # continues right after, sample-exact


def test_duplicate_picture_is_dropped_and_unit_moved():
    t = Timeline(frame_ms=40)
    assert t.video(0) == 0 and t.video(40) == 40
    assert t.video(30, picture=True) is None  # a duplicate picture
    assert t.video(30, picture=False) == 41  # an access unit cannot be dropped: moved on
    assert t.video(None) == 81  # no timestamp: one frame after the last


def test_loop_continues_at_the_exact_end_of_the_audio():
    """8.56 s of AAC at 44.1 kHz (377496 samples, the last frame's codec padding cut), video at
    25 fps: the second pass's audio follows the first to the sample, video in step with it."""
    t = Timeline(frame_ms=40, end_ms=8560)
    first = []
    # what the decoder hands out (padding included) and the pictures, in timestamp order
    events = sorted([(Fraction(n * 1024, 44100), "audio") for n in range(369)]
                    + [(Fraction(i * 40, 1000), "video") for i in range(214)])
    for rnd in range(2):
        for src, kind in events:
            if kind == "audio":
                first.append(t.audio(src, 1024, 44100))
            else:
                t.video(int(src * 1000))
        offset = t.end_pass()
        assert offset == 8560 * (rnd + 1)
    kept = sum(1024 if k is None else k for _, k in first)
    assert kept == 2 * 377496  # the padding past 8.56 s is not handed out
    second_start = [at for at, _ in first][369]
    assert second_start == Fraction(377496, 44100)  # exactly where the first pass's samples end
    assert t.video(0) == 2 * 8560


def test_loop_after_longer_video_keeps_sync():
    """Audio that ends a second before the video: the next pass starts after the video, and the
    audio restarts there (the missing second is silence, not a shift)."""
    t = Timeline(frame_ms=40)
    for i in range(150):
        if i < 100:
            t.audio(Fraction(i * 20, 1000), 960, 48000)  # 2 s of audio
        if i % 2 == 0:
            t.video(i * 20)  # 3 s of video
    assert t.end_pass() == 3000
    at, _ = t.audio(Fraction(0), 960, 48000)
    assert at == 3 and t.video(0) == 3000


def test_streams_apart_in_packet_order_are_left_in_place():
    """A file that stores 1.5 s of audio before its first picture: video still starts at 0."""
    t = Timeline(frame_ms=40)
    for i in range(75):
        t.audio(Fraction(i * 20, 1000), 960, 48000)
    assert t.video(0) == 0 and t.video(40) == 40
