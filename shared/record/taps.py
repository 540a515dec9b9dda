"""What a recording file's media looks like to the outputs made beside it (issue 21: audio slices,
snapshots, the trimmed copy): a `MediaTap` the writer hands each piece of media as it places it in
the file, in the file's own time.

    writer._Part --audio(pcm, first sample)--> MediaTap  (slices.py, snapshots.py, trim.py)
                 --video(unit, pts, duration, key, codec)-->
                 --close(end ms)-->

A tap runs on the recording loop: it only looks and keeps what it needs (PCM of one slice, the
access units since the last key frame, a level per 20 ms); encoding, decoding and uploads happen
on a worker (slices.SliceDelivery), never on the loop.
"""
from __future__ import annotations

from typing import Protocol


class MediaTap(Protocol):
    def audio(self, pcm: bytes, first_sample: int, channels: int) -> None:
        """Interleaved s16 PCM at 48 kHz; `first_sample` is its place in the file (silence included)."""

    def video(self, data: bytes, pts_ms: int, duration_ms: int, key: bool, codec: str) -> None:
        """One access unit as the file has it (Annex-B), `pts_ms` from the file's start."""

    def close(self, end_ms: int) -> None:
        """The file ended (`end_ms` long); whatever is still open is finished."""


class Taps:
    """Several taps seen as one (a file with slices, snapshots and a trimmed copy)."""

    def __init__(self, taps: list[MediaTap]):
        self.taps = taps

    def audio(self, pcm: bytes, first_sample: int, channels: int) -> None:
        for t in self.taps:
            t.audio(pcm, first_sample, channels)

    def video(self, data: bytes, pts_ms: int, duration_ms: int, key: bool, codec: str) -> None:
        for t in self.taps:
            t.video(data, pts_ms, duration_ms, key, codec)

    def close(self, end_ms: int) -> None:
        for t in self.taps:
            t.close(end_ms)
