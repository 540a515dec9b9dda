"""Real-time pacing: media time in integer milliseconds against the monotonic clock.

Every deadline is computed afresh from one origin (a wall time and an integer media time), so
rounding never accumulates: after ten hours a frame is due exactly ten hours after the first.
Each stream (audio, video) carries its own integer offset onto a shared timeline. A timestamp jump
that takes a stream far from where the streams are (an HLS seam, a reset, a loop, a broken file)
moves only that stream's offset so that it continues where it was; the other stream follows when
it jumps too. A jump that lands where the other stream already is (a gap in one stream) is kept:
the time really passed, and moving it would put the streams out of sync.
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
        max_jump_ms: int = 1000,
    ):
        if not speed > 0:
            raise ValueError("pacing speed must be > 0")
        self.speed = float(speed)
        self._clock = clock
        self._sleep = sleep or time.sleep
        self.max_jump_ms = int(max_jump_ms)
        self.rebases = 0  # how often the timeline was moved (jumps, falling behind, rebase())
        self._lag_ms = 0.0
        self._reset()

    def _reset(self) -> None:
        self._origin_wall: float | None = None
        self._origin_ms = 0
        self._offset: dict[str, int] = {}  # stream -> integer ms added to its pts
        self._last: dict[str, int] = {}  # stream -> last pts seen (before offset)
        self._step: dict[str, int] = {}  # stream -> last pts step, to continue after a jump
        self._line = 0  # the furthest point of the shared timeline reached so far

    def rebase(self) -> None:
        """Start a new timeline at the next `wait` (e.g. after a loop restart or a pause)."""
        self.rebases += 1
        self._reset()

    @property
    def lag_ms(self) -> float:
        """How far behind real time the last `wait` found us (0 when on time)."""
        return self._lag_ms

    def due(self, pts_ms: int, stream: str) -> float:
        """The clock value at which `pts_ms` of `stream` is due (for callers that poll)."""
        line = pts_ms + self._offset.get(stream, 0)
        return self._origin_wall + (line - self._origin_ms) / (1000.0 * self.speed)

    def wait(self, pts_ms: int, stream: str) -> None:
        pts_ms = int(pts_ms)
        now = self._clock()
        if self._origin_wall is None:
            self._origin_wall, self._origin_ms = now, pts_ms
            self._line = pts_ms
        last = self._last.get(stream)
        offset = self._offset.get(stream, 0)
        jumped = last is not None and not 0 <= pts_ms - last <= self.max_jump_ms
        if last is not None and not jumped:
            self._step[stream] = pts_ms - last
        if (jumped or last is None) and abs(pts_ms + offset - self._line) > self.max_jump_ms:
            # Far from where the streams are: a seam, a reset, a loop, a broken file. Continue this
            # stream one step after its last frame (a new stream: where the others are) instead of
            # sleeping across the gap or bursting until media time catches up. A jump that lands
            # near the others (a gap in one stream only) is real time passing and is kept.
            if last is None:
                self._offset[stream] = self._line - pts_ms
            else:
                step = min(self._step.get(stream, 0), self.max_jump_ms)
                self._offset[stream] = offset + last + step - pts_ms
            self.rebases += 1
        self._last[stream] = pts_ms
        self._line = max(self._line, pts_ms + self._offset.get(stream, 0))
        deadline = self.due(pts_ms, stream)
        if now < deadline:
            self._lag_ms = 0.0
            self._sleep(deadline - now)
            return
        self._lag_ms = (now - deadline) * 1000.0
        if self._lag_ms > self.max_jump_ms:
            # A stalled source or a slow machine: don't burst to catch up, move the timeline
            # so that this frame is due now.
            shift_ms = int(self._lag_ms * self.speed)
            self._origin_ms -= shift_ms
            self.rebases += 1
            self._lag_ms = 0.0
