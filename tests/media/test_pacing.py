"""Pacer against a virtual clock: no drift over hours, falling behind, speed. (Timestamp jumps are the
timeline's: tests/media/test_timeline.py paces them through it.)"""
from __future__ import annotations

import time

import pytest

from shared.media.pacing import Pacer


class VirtualClock:
    """time.monotonic and time.sleep for a pacer; each sleep oversleeps by 0..2 ms like a real OS."""

    def __init__(self, jitter_ms: int = 2):
        self.now = 1000.0
        self.jitter_ms = jitter_ms
        self._n = 0
        self.slept = 0.0
        self.last_extra = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self._n = (self._n * 1103515245 + 12345) % 2**31
        extra = (self._n % 1000) / 1000 * self.jitter_ms / 1000
        self.now += seconds + extra
        self.slept += seconds
        self.last_extra = extra


def test_ten_hours_without_drift():
    vc = VirtualClock()
    pacer = Pacer(clock=vc.clock, sleep=vc.sleep)
    start = vc.now
    worst = 0.0
    frame = 0
    hours = 10
    # 25 fps video for 10 hours (900,000 frames), every deadline checked
    for frame in range(hours * 3600 * 25 + 1):
        pts = frame * 40
        pacer.wait(pts, "video")
        # how far this frame is from its ideal wall time, beyond the OS's last oversleep
        worst = max(worst, abs(vc.now - vc.last_extra - (start + pts / 1000)))
    assert frame * 40 == hours * 3_600_000
    assert worst < 0.001  # oversleeps (900,000 of them, 0-2 ms each) never accumulate
    assert vc.now - (start + hours * 3600) < 0.003


def test_interleaved_streams_share_one_timeline():
    vc = VirtualClock(jitter_ms=0)
    pacer = Pacer(clock=vc.clock, sleep=vc.sleep)
    start = vc.now
    events = sorted([(i * 20, "audio") for i in range(500)] + [(i * 40, "video") for i in range(250)])
    for pts, stream in events:
        pacer.wait(pts, stream)
        assert vc.now == pytest.approx(start + pts / 1000, abs=1e-9)


def test_speed_runs_faster_than_real_time():
    vc = VirtualClock(jitter_ms=0)
    pacer = Pacer(speed=4, clock=vc.clock, sleep=vc.sleep)
    start = vc.now
    for i in range(501):
        pacer.wait(i * 20, "audio")
    assert vc.now - start == pytest.approx(2.5, abs=1e-6)  # 10 s of media in 2.5 s


def test_falling_behind_rebases_instead_of_bursting():
    vc = VirtualClock(jitter_ms=0)
    pacer = Pacer(clock=vc.clock, sleep=vc.sleep)
    for i in range(25):
        pacer.wait(i * 40, "video")
    vc.now += 5.0  # the source stalled for 5 s
    pacer.wait(1000, "video")
    assert pacer.lag_ms == 0
    marks = []
    for i in range(1, 6):
        pacer.wait(1000 + i * 40, "video")
        marks.append(vc.now)
    assert [b - a for a, b in zip(marks, marks[1:])] == pytest.approx([0.040] * 4, abs=1e-6)


def test_small_lag_is_reported_and_caught_up():
    vc = VirtualClock(jitter_ms=0)
    pacer = Pacer(clock=vc.clock, sleep=vc.sleep)
    pacer.wait(0, "video")
    vc.now += 0.3  # a slow decode
    pacer.wait(40, "video")
    assert pacer.lag_ms == pytest.approx(260, abs=1e-6)
    pacer.wait(400, "video")  # no sleep needed until media time catches up
    assert vc.now == pytest.approx(1000.4, abs=1e-6)


def test_rebase_restarts_timeline_now():
    vc = VirtualClock(jitter_ms=0)
    pacer = Pacer(clock=vc.clock, sleep=vc.sleep)
    for i in range(10):
        pacer.wait(i * 40, "video")
    pacer.rebase()
    before = vc.now
    pacer.wait(0, "video")
    assert vc.now == before
    pacer.wait(40, "video")
    assert vc.now == pytest.approx(before + 0.040, abs=1e-9)


def test_real_clock_sleeps():
    pacer = Pacer(speed=10)
    t0 = time.monotonic()
    for i in range(26):
        pacer.wait(i * 20, "audio")
    assert time.monotonic() - t0 >= 0.049  # 500 ms of media at 10x is at least 50 ms


def test_rejects_bad_speed():
    with pytest.raises(ValueError):
        Pacer(speed=0)
