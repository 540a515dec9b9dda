"""Small media for the room tests, made here (no files): a sine tone, flat grey pictures, and H.264
access units encoded once with PyAV."""
from __future__ import annotations

import array
import fractions
import math

import av

from shared.room import AUDIO_SAMPLE_RATE, AudioFrame, H264Frame, PixelFrame

SAMPLES_20MS = AUDIO_SAMPLE_RATE // 50


def tone(index: int, channels: int = 1, hz: float = 440.0, amplitude: int = 12000) -> AudioFrame:
    """The index-th 20 ms frame of a continuous sine tone."""
    start = index * SAMPLES_20MS
    samples = array.array("h")
    for n in range(start, start + SAMPLES_20MS):
        v = int(amplitude * math.sin(2 * math.pi * hz * n / AUDIO_SAMPLE_RATE))
        samples.extend([v] * channels)
    return AudioFrame(samples.tobytes(), index * 20, AUDIO_SAMPLE_RATE, channels)


def rms(frame: AudioFrame) -> float:
    samples = array.array("h")
    samples.frombytes(frame.data)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def grey(width: int, height: int, level: int, pts_ms: int) -> PixelFrame:
    """A flat picture: Y = level, neutral chroma."""
    y = bytes([level]) * (width * height)
    c = bytes([128]) * ((width // 2) * (height // 2))
    return PixelFrame(y + c + c, width, height, pts_ms)


def mean_luma(frame: PixelFrame) -> float:
    y = frame.data[:frame.width * frame.height]
    return sum(y) / len(y)


def h264_units(count: int, width: int = 160, height: int = 120, fps: int = 25, gop: int = 25) -> list[H264Frame]:
    """`count` access units of a changing grey picture, Annex-B, no B-frames, SPS/PPS on key frames."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 1000)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}
    units: list[H264Frame] = []
    for i in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        for n, plane in enumerate(frame.planes):
            plane.update(bytes([(i * 7) % 200 + 20 if n == 0 else 128]) * plane.buffer_size)
        frame.pts = i * 1000 // fps
        for packet in ctx.encode(frame):
            units.append(H264Frame(bytes(packet), int(packet.pts), bool(packet.is_keyframe), int(packet.dts)))
    for packet in ctx.encode(None):
        units.append(H264Frame(bytes(packet), int(packet.pts), bool(packet.is_keyframe), int(packet.dts)))
    return units
