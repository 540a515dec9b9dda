"""Reading what a MediaSource yields, the way a room would see it."""
from __future__ import annotations

import array
import math
from dataclasses import dataclass, field

from emulator.media import decode_h264  # noqa: F401  (the source tests import it from here)
from shared.media.source import MediaSource
from shared.room.base import AudioFrame, H264Frame, PixelFrame


@dataclass
class Pulled:
    audio: list[AudioFrame] = field(default_factory=list)
    video: list[PixelFrame | H264Frame] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # pts in the order yielded

    @property
    def audio_pts(self) -> list[int]:
        return [f.pts_ms for f in self.audio]

    @property
    def video_pts(self) -> list[int]:
        return [f.pts_ms for f in self.video]


def pull(src: MediaSource, start_s: float = 0.0, limit: int | None = None) -> Pulled:
    out = Pulled()
    for f in src.frames(start_s):
        (out.audio if isinstance(f, AudioFrame) else out.video).append(f)
        out.order.append(f.pts_ms)
        if limit is not None and len(out.order) >= limit:
            break
    return out


def strictly_increasing(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def channel_samples(frames: list[AudioFrame], channel: int = 0) -> list[int]:
    pcm = array.array("h", b"".join(f.data for f in frames))
    ch = frames[0].channels
    return list(pcm[channel::ch])


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def dominant_hz(samples: list[int], rate: int = 48000) -> float:
    """Frequency from zero crossings (the fixtures' tones are pure sines)."""
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)


def nal_types(data: bytes) -> list[int]:
    types = []
    i = 0
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0 or j + 3 >= len(data):
            return types
        types.append(data[j + 3] & 0x1F)
        i = j + 3
