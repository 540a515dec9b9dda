"""Media in: open a videoSrc with PyAV, turn it into what a room takes, and pace it in real time.

- `source.MediaSource` opens and probes a source; `play()` / `frames()` yield `AudioFrame` /
  `PixelFrame` / `H264Frame` (shared.media.frames) interleaved by timestamp.
- `plan` holds what a push asks for, the room's maximum size and rate, and the one decision
  passthrough vs transcode.
- `decode` (every stream decoded) and `demux` (H.264 passed through) are the two reading loops;
  `reading` what they share: packets, undecodable-packet accounting, the interleaving buffer.
- `timeline.Timeline` is the one place push-side timestamps are decided (origin, jumps, loops).
- `convert` holds the audio resampling (48 kHz s16, exact 20 ms frames, volume, downmix) and the
  video reformat (size, upright turn) / H.264 passthrough steps.
- `pacing.Pacer` sleeps until each timestamp's wall-clock time.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.media.pacing import Pacer
    from shared.media.source import AudioPlan, MediaSource, PassEnd, SourceError, SourceInfo, VideoPlan

# Imported when first named, not with the package: `shared.media.frames` (the frame types every
# part shares, push_control and the recorder included) must not pull in PyAV and the readers.
_LAZY = {"Pacer": "shared.media.pacing", **{name: "shared.media.source" for name in (
    "AudioPlan", "MediaSource", "PassEnd", "SourceError", "SourceInfo", "VideoPlan")}}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["AudioPlan", "MediaSource", "Pacer", "PassEnd", "SourceError", "SourceInfo", "VideoPlan"]
