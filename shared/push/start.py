"""Where a push starts: the one decision, and the frames that follow from it.

- A live source starts at its live edge: a checkpoint and seekSecond are ignored (and logged).
- Otherwise a Redis checkpoint wins over seekSecond, unless it lies at the end of the source (the
  push then starts over, from seekSecond). A start at or past the end is refused.
- The first frame sent is within one frame of the start, audio and video alike. A transcoded push
  gets that from the source (it seeks to the key frame at or before the start and drops what is
  decoded before it, audio to the sample). Passed-through H.264 can only begin at a key frame, so a
  passthrough push that starts after 0 is bridged (shared.push.bridge): the source starts audio at
  the start (not at that key frame), and the GOP from the key frame is re-encoded without the
  pictures before the start, until the source's next key frame takes over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from shared.contracts.push import PushParams
from shared.failures import Failure
from shared.media.source import Frame, MediaSource, PassEnd, SourceInfo
from shared.push.bridge import KeyFrameBridge
from shared.push.checkpoint import Record
from shared.runtime import RunLogger


@dataclass(frozen=True)
class Start:
    position_s: float  # source time of the first frame sent
    resumed_from: Optional[float]  # the checkpoint's position when the push resumes one
    bridged: bool  # passthrough between key frames: re-encoded up to the next key frame

    @property
    def position_ms(self) -> int:
        return int(round(self.position_s * 1000))


def decide_start(params: PushParams, record: Optional[Record], info: SourceInfo, log: RunLogger) -> Start:
    """Resume, seekSecond or the live edge; raises Failure for a start past the end."""
    start = params.seekSecond or 0.0
    resumed_from: Optional[float] = None
    if info.is_live:
        if record:
            log.info("a live source cannot be resumed; pushing from its live edge", position=record.position)
        if params.seekSecond:
            log.info("seekSecond ignored for a live source", seekSecond=params.seekSecond)
        start = 0.0
    elif record is not None:
        if info.duration_s and record.position >= info.duration_s:
            log.info("checkpoint is at the end of the source; starting over", position=record.position)
        else:
            start = resumed_from = record.position
    if not info.is_live and info.duration_s and start >= info.duration_s:
        raise Failure(f"seekSecond {params.seekSecond:g} is past the end of the source "
                        f"({info.duration_s:.3f} s)", "invalid_parameters")
    return Start(start, resumed_from, bridged=bool(info.passthrough and start > 0 and not info.is_live))


def frames_from(start: Start, source: MediaSource, passes: Optional[int], log: RunLogger) -> Iterator[Frame | PassEnd]:
    """The push's frames: `passes` passes (None: until stopped) from the start, on one timeline."""
    frames = source.play(start.position_s, passes=passes, audio_from_key=not start.bridged)
    if start.bridged:
        return KeyFrameBridge(start.position_ms, source.info.fps, log).apply(frames)
    return frames
