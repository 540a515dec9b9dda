"""Media in: open a videoSrc with PyAV, turn it into what a room takes, and pace it in real time.

- `source.MediaSource` opens and probes a source and yields `AudioFrame` / `PixelFrame` /
  `H264Frame` (shared.room.base) interleaved by timestamp.
- `convert` holds the audio resampling (48 kHz s16, exact 20 ms frames, volume, downmix) and the
  video reformat / H.264 passthrough steps the source uses.
- `pacing.Pacer` sleeps until each timestamp's wall-clock time.
"""
from shared.media.pacing import Pacer
from shared.media.source import AudioPlan, MediaSource, SourceError, SourceInfo, VideoPlan

__all__ = ["AudioPlan", "MediaSource", "Pacer", "SourceError", "SourceInfo", "VideoPlan"]
