"""The media vocabulary: what a source produces, a room carries and a writer stores.

Timestamps are integer milliseconds, as TRTC carries them. Audio moves as 48 kHz PCM s16 in 20 ms
frames; video as packed YUV420p pictures (`PixelFrame`) or coded access units (`H264Frame`: H.264,
or H.265 when its `codec` says so; the name stays from when H.264 was all a room carried).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

AUDIO_SAMPLE_RATE = 48000
AUDIO_FRAME_MS = 20

# The codecs an access unit can be in, by FFmpeg's names (what a muxer or decoder is asked for).
CODEC_H264 = "h264"
CODEC_HEVC = "hevc"
VIDEO_CODECS = (CODEC_H264, CODEC_HEVC)


@dataclass(slots=True)
class AudioFrame:
    """PCM s16 interleaved; 20 ms at `sample_rate` when sent to or received from a room."""

    data: bytes
    pts_ms: int
    sample_rate: int = AUDIO_SAMPLE_RATE
    channels: int = 1

    @property
    def samples(self) -> int:
        return len(self.data) // (2 * self.channels)


@dataclass(slots=True)
class PixelFrame:
    """One YUV420p picture: the Y plane, then U, then V, no padding."""

    data: bytes
    width: int
    height: int
    pts_ms: int
    # The decoded picture `data` was packed from (an av.VideoFrame), when there is one: a backend
    # that encodes with PyAV uses it instead of unpacking `data` (see shared/media/pixels.py).
    picture: Any = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class H264Frame:
    """One coded access unit in Annex-B; no B-frames; key frames carry their parameter sets
    (SPS and PPS; for H.265 also the VPS). `codec` is CODEC_H264 or CODEC_HEVC."""

    data: bytes
    pts_ms: int
    key: bool
    dts_ms: int | None = None
    codec: str = CODEC_H264


VideoFrame = Union[PixelFrame, H264Frame]
# What a source yields: audio, or video decoded or passed through.
Frame = Union[AudioFrame, PixelFrame, H264Frame]


def yuv420p_size(width: int, height: int) -> int:
    """Bytes in a packed YUV420p picture (chroma planes round odd sizes up)."""
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)
