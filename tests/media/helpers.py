"""Reading what a MediaSource yields, the way a room would see it."""
from __future__ import annotations

import array
import math
from dataclasses import dataclass, field
from pathlib import Path

import av

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


def damage_slices(src: Path, dst: Path, frames: list[int]) -> Path:
    """The MP4 with the slice data of some video frames (by decode order) overwritten mid-NAL: the
    framing stays sound (the demuxer sees nothing wrong), the pictures decode with broken
    macroblocks, as a download damaged in transit does."""
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    for i in frames:
        pos, _ = packets[i]
        length = int.from_bytes(data[pos:pos + 4], "big")  # the first NAL unit (avcC: length-prefixed)
        middle = pos + 4 + length // 2
        data[middle:middle + 16] = bytes((k * 97 + 5) % 256 for k in range(16))
    dst.write_bytes(bytes(data))
    return dst


def decode_checked(units: list[bytes]) -> tuple[int, int]:
    """(pictures decoded, pictures the decoder had to conceal errors in) for access units decoded in
    order with a fresh decoder, as a viewer does; a unit that fails to decode counts as damaged."""
    ctx = av.CodecContext.create("h264", "r")
    ctx.thread_count = 1
    pictures = damaged = 0
    for unit in [*units, None]:
        try:
            out = ctx.decode(None if unit is None else av.Packet(unit))
        except av.FFmpegError:
            damaged += 1
            continue
        pictures += len(out)
        damaged += sum(1 for p in out if p.is_corrupt)
    return pictures, damaged
