"""Real-time pacing: media time in integer milliseconds against the monotonic clock.

Every deadline is computed afresh from one origin (a wall time and an integer media time), so
rounding never accumulates: after ten hours a frame is due exactly ten hours after the first.

The pacer only paces. Timestamps reach it already on one timeline (shared.media.timeline absorbs
resets, seams, loops and broken files); the one thing it moves is its own origin, when the push
falls behind (a stalled source, a slow machine): it neither bursts to catch up nor stays late.
"""
from __future__ import annotations

import time
from typing import Callable


class Pacer:
    """`wait(pts_ms, stream)` sleeps until the wall time at which `pts_ms` is due."""

    def __init__(
        self,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        max_lag_ms: int = 1000,
    ):
        if not speed > 0:
            raise ValueError("pacing speed must be > 0")
        self.speed = float(speed)
        self._clock = clock
        self._sleep = sleep or time.sleep
        self.max_lag_ms = int(max_lag_ms)
        self.rebases = 0  # how often the origin was moved (falling behind, rebase())
        self._lag_ms = 0.0
        self._origin_wall: float | None = None
        self._origin_ms = 0

    def rebase(self) -> None:
        """Start a new origin at the next `wait` (e.g. after a pause)."""
        self.rebases += 1
        self._origin_wall = None

    @property
    def lag_ms(self) -> float:
        """How far behind real time the last `wait` found us (0 when on time)."""
        return self._lag_ms

    def due(self, pts_ms: int, stream: str = "") -> float:
        """The clock value at which `pts_ms` is due (for callers that poll)."""
        assert self._origin_wall is not None, "due() before the first wait()"
        return self._origin_wall + (int(pts_ms) - self._origin_ms) / (1000.0 * self.speed)

    def wait(self, pts_ms: int, stream: str = "") -> None:
        """`stream` names what is paced (audio, video); all streams share one origin."""
        pts_ms = int(pts_ms)
        now = self._clock()
        if self._origin_wall is None:
            self._origin_wall, self._origin_ms = now, pts_ms
        deadline = self.due(pts_ms)
        if now < deadline:
            self._lag_ms = 0.0
            self._sleep(deadline - now)
            return
        self._lag_ms = (now - deadline) * 1000.0
        if self._lag_ms > self.max_lag_ms:
            # Behind by more than a moment: move the origin so that this frame is due now.
            self._origin_ms -= int(self._lag_ms * self.speed)
            self.rebases += 1
            self._lag_ms = 0.0
