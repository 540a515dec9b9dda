"""Media made with PyAV, for whoever drives the local cloud: the demo's clip, the tests' clips and
frames, the benches' sources; and a look at what a file decodes to. No ffmpeg binary needed.

Files:
- `make_clip(path, ...)`: a short clip in any container/codec mix the project meets (H.264 with or
  without B-frames, odd sizes, variable frame rate, 5.1, 8 kHz mono, audio only...), its pictures
  one of `PICTURES`: FFmpeg's moving test pattern, flat pictures whose brightness steps every frame
  (`step_level(frame)`), flat gray whose level changes every second (`gray_level(second)`, a key
  frame each second: any picture of it, a screenshot included, tells its time), or one flat gray
  level all along (`flat`, `level=`: a clip told from another by any of its pictures). A tone per channel.
- `make_gray_clip`, `make_hls` (an HLS VOD), `truncate`, `corrupt_middle` (damaged copies).
Frames as the rooms carry them:
- `pcm_20ms(i)` / `tone(i)`: the i-th 20 ms of a continuous sine; `grey(...)`: a flat picture;
  `h264_units(n, ...)`: Annex-B access units encoded once (no B-frames, SPS/PPS on key frames).
Reading back:
- `probe(path)`: codecs, streams, what decodes (frames, seconds, the audio level per 100 ms);
  `decode_h264(units)`, `rms(frame)`, `mean_luma(frame)`.
"""
from __future__ import annotations

import array
import fractions
import heapq
import math
import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import av
from av.filter import Graph

from shared.media.frames import AUDIO_SAMPLE_RATE, AudioFrame, H264Frame, PixelFrame

SAMPLES_20MS = AUDIO_SAMPLE_RATE // 50
PICTURES = ("pattern", "steps", "gray", "flat")
GRAY_LEVELS = 12  # a gray clip's level repeats after this many seconds
GRAY_STEP = 16

VIDEO_CODECS = {
    # name: (encoder, options)
    "h264": ("libx264", {"preset": "ultrafast", "profile": "baseline", "tune": "zerolatency"}),
    "h264-bframes": ("libx264", {"preset": "veryfast", "profile": "main",
                                 "x264-params": "bframes=2:b-adapt=0:b-pyramid=none"}),
    "mpeg4": ("mpeg4", {}),
    "vp8": ("libvpx", {"deadline": "realtime", "cpu-used": "8"}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"}),
}
AUDIO_CODECS = {"aac": ("aac", "fltp"), "mp3": ("libmp3lame", "s16p"), "opus": ("libopus", "s16")}


# --- pictures and sound ----------------------------------------------------------------------------


def step_level(frame: int) -> int:
    """The luma (Y) of a "steps" picture: 5 brighter each frame, from 20, wrapping below 220."""
    return (frame * 5) % 200 + 20


def gray_level(second: int) -> int:
    """The luma (Y, limited range) of a gray clip's pictures during its `second`-th second."""
    return 32 + GRAY_STEP * (second % GRAY_LEVELS)


def _pull_all(graph: Graph) -> Iterator[Any]:
    while True:
        try:
            yield graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError, EOFError):
            return


def pattern_frames(width: int, height: int, fps: int, duration: float) -> Iterator[av.VideoFrame]:
    """FFmpeg's testsrc2 (moving pattern with a frame counter), yuv420p, made as they are pulled."""
    g = Graph()
    src = g.add("testsrc2", size=f"{width + width % 2}x{height + height % 2}", rate=str(fps),
                duration=str(duration))
    chain = [src]
    if width % 2 or height % 2:
        chain.append(g.add("scale", w=str(width), h=str(height)))
    chain.append(g.add("format", pix_fmts="yuv420p"))
    chain.append(g.add("buffersink"))
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    g.configure()
    return _pull_all(g)


def flat_frame(width: int, height: int, level: int) -> av.VideoFrame:
    """A yuv420p picture of one luma level, neutral chroma."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, (level, 128, 128)):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


def picture_frames(kind: str, width: int, height: int, fps: int,
                   duration: float, level: int = 128) -> Iterator[tuple[av.VideoFrame, bool]]:
    """(picture, must be a key frame) for `duration` seconds of one of PICTURES (`level`: flat's luma)."""
    if kind == "pattern":
        yield from ((f, False) for f in pattern_frames(width, height, fps, duration))
        return
    if kind not in PICTURES:
        raise ValueError(f"pictures must be one of {', '.join(PICTURES)} (got {kind!r})")
    for i in range(int(duration * fps)):
        if kind == "steps":
            yield flat_frame(width, height, step_level(i)), False
        elif kind == "flat":
            yield flat_frame(width, height, level), i % fps == 0
        else:  # a level starts on a clean picture
            yield flat_frame(width, height, gray_level(i // fps)), i % fps == 0


def tone_frames(rate: int, layout: str, duration: float, fmt: str = "fltp", hz: int = 440) -> Iterator[av.AudioFrame]:
    """A different sine per channel (`hz`, `hz` + 110, ...) so a downmix is audible."""
    n = av.AudioLayout(layout).nb_channels
    exprs = "|".join(f"0.5*sin({hz + 110 * i}*2*PI*t)" for i in range(n))
    g = Graph()
    src = g.add("aevalsrc", exprs=exprs, sample_rate=str(rate), channel_layout=layout,
                duration=str(duration), nb_samples="1024")
    fm = g.add("aformat", sample_fmts=fmt)
    sink = g.add("abuffersink")
    src.link_to(fm)
    fm.link_to(sink)
    g.configure()
    return _pull_all(g)


# --- files -----------------------------------------------------------------------------------------


def make_clip(
    path: str | os.PathLike[str],
    *,
    duration: float = 2.0,
    video: str | None = "h264",
    width: int = 160,
    height: int = 120,
    fps: int = 25,
    gop: int = 25,
    pictures: str = "pattern",
    audio: str | None = "aac",
    rate: int = 48000,
    layout: str = "stereo",
    fmt: str | None = None,
    faststart: bool = True,
    vfr: bool = False,
    options: dict[str, str] | None = None,
    tone_hz: int = 440,
    level: int = 128,
) -> Path:
    """Write a clip (pictures + tone); the container comes from the suffix unless `fmt` is given.

    video / audio: a VIDEO_CODECS / AUDIO_CODECS name, or None for none. pictures: one of PICTURES.
    vfr: frame intervals cycle through 20, 40, 60, 80 ms (timestamps in ms). tone_hz: the first channel's tone.
    level: the luma of `flat` pictures.
    faststart: moov at the front for mp4/mov/m4a (False leaves it at the end, FFmpeg's default).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = dict(options or {})
    if faststart and path.suffix in (".mp4", ".mov", ".m4a"):
        opts.setdefault("movflags", "+faststart")
    out = av.open(str(path), "w", format=fmt, options=opts)
    vs: Any = None  # PyAV's stubs type a stream by the union of kinds
    as_: Any = None
    video_items: Iterator[Any] = iter(())
    audio_items: Iterator[Any] = iter(())
    if video:
        enc, vopts = VIDEO_CODECS[video]
        vs = out.add_stream(enc, rate=fps, options=dict(vopts))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.gop_size = gop
        if vfr:
            vs.codec_context.time_base = Fraction(1, 1000)
            vs.time_base = Fraction(1, 1000)

        def video_gen() -> Iterator[Any]:
            t_ms = 0
            for i, (f, key) in enumerate(picture_frames(pictures, width, height, fps, duration, level)):
                f.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
                if vfr:
                    if t_ms >= duration * 1000:
                        return
                    f.pts, f.time_base = t_ms, Fraction(1, 1000)
                    yield t_ms / 1000, 1, f
                    t_ms += (20, 40, 60, 80)[i % 4]
                else:
                    f.pts, f.time_base = i, Fraction(1, fps)
                    yield i / fps, 1, f

        video_items = video_gen()
    if audio:
        enc, sfmt = AUDIO_CODECS[audio]
        as_ = out.add_stream(enc, rate=rate)
        as_.layout = layout
        as_.format = sfmt

        def audio_gen() -> Iterator[Any]:
            t = 0
            for f in tone_frames(rate, layout, duration, sfmt, tone_hz):
                f.pts, f.time_base = t, Fraction(1, rate)
                yield t / rate, 0, f
                t += f.samples

        audio_items = audio_gen()
    # Frames are made and encoded in time order, one at a time (a 1080p clip stays cheap).
    for _, kind, f in heapq.merge(video_items, audio_items, key=lambda x: (x[0], x[1])):
        out.mux((vs if kind == 1 else as_).encode(f))
    for s in (vs, as_):
        if s is not None:
            out.mux(s.encode(None))
    out.close()
    return path


def make_gray_clip(path: str | os.PathLike[str], *, duration: float = 12.0, width: int = 320, height: int = 240,
                   fps: int = 25, audio: bool = True) -> Path:
    """An H.264 (baseline, no B-frames, a key frame every second) + AAC mono tone MP4 of flat gray
    pictures, the level changing every second (`gray_level`)."""
    return make_clip(path, duration=duration, width=width, height=height, fps=fps, gop=fps, pictures="gray",
                     audio="aac" if audio else None, layout="mono")


def make_hls(directory: str | os.PathLike[str], *, duration: float = 6.0, segment_s: int = 1, **clip: Any) -> Path:
    """An HLS VOD (index.m3u8 + seg_N.ts), H.264 + AAC, key frames on segment boundaries."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fps = clip.get("fps", 25)
    return make_clip(
        directory / "index.m3u8", duration=duration, fmt="hls", gop=fps * segment_s, faststart=False,
        options={"hls_time": str(segment_s), "hls_playlist_type": "vod", "hls_list_size": "0",
                 "hls_segment_filename": str(directory / "seg_%d.ts")},
        **clip)


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def corrupt_middle(src: Path, dst: Path, spans: int = 6, span: int = 300) -> Path:
    """Overwrite a few short spans in the middle of the media data with garbage."""
    data = bytearray(src.read_bytes())
    start = data.find(b"mdat")
    start = start if start > 0 else len(data) // 4
    end = len(data) if start > len(data) // 2 else len(data)
    for i in range(spans):
        at = start + (end - start) * (35 + 5 * i) // 100
        data[at:at + span] = bytes((i * 37 + j * 101) % 251 for j in range(span))
    dst.write_bytes(bytes(data))
    return dst


# --- frames as the rooms carry them ------------------------------------------------------------------


def pcm_20ms(index: int, channels: int = 1, hz: float = 440.0, amplitude: int = 9000) -> bytes:
    """The index-th 20 ms of a continuous sine, s16 interleaved at 48 kHz."""
    start = index * SAMPLES_20MS
    values = array.array("h")
    for n in range(start, start + SAMPLES_20MS):
        values.extend([int(amplitude * math.sin(2 * math.pi * hz * n / AUDIO_SAMPLE_RATE))] * channels)
    return values.tobytes()


def tone(index: int, channels: int = 1, hz: float = 440.0, amplitude: int = 9000) -> AudioFrame:
    """`pcm_20ms` as a room's audio frame, pts from 0."""
    return AudioFrame(pcm_20ms(index, channels, hz, amplitude), index * 20, AUDIO_SAMPLE_RATE, channels)


def grey(width: int, height: int, level: int, pts_ms: int) -> PixelFrame:
    """A flat picture: Y = level, neutral chroma."""
    y = bytes([level]) * (width * height)
    c = bytes([128]) * ((width // 2) * (height // 2))
    return PixelFrame(y + c + c, width, height, pts_ms)


def h264_units(count: int, width: int = 160, height: int = 120, fps: int = 25, gop: int = 25, *,
               pictures: str = "steps", bitrate: int | None = None) -> list[H264Frame]:
    """`count` access units of `pictures` (PICTURES), Annex-B, no B-frames, SPS/PPS on key frames."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 1000)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    if bitrate:
        ctx.bit_rate = bitrate
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}
    units: list[H264Frame] = []
    for i, (frame, _) in enumerate(picture_frames(pictures, width, height, fps, (count + 1) / fps)):
        if i >= count:
            break
        frame.pts, frame.time_base = i * 1000 // fps, fractions.Fraction(1, 1000)
        units.extend(_h264_unit(packet) for packet in ctx.encode(frame))
    units.extend(_h264_unit(packet) for packet in ctx.encode(None))
    return units


def _h264_unit(packet: av.Packet) -> H264Frame:
    # An encoder's packets always carry both timestamps.
    assert packet.pts is not None and packet.dts is not None
    return H264Frame(bytes(packet), packet.pts, bool(packet.is_keyframe), packet.dts)


# --- reading back ------------------------------------------------------------------------------------


def decode_h264(units: Iterable[bytes | H264Frame]) -> list[av.VideoFrame]:
    """Decode access units with a fresh decoder, as a viewer would; raises on a broken stream."""
    ctx = av.CodecContext.create("h264", "r")
    decoded: list[av.VideoFrame] = []
    for unit in units:
        decoded += ctx.decode(av.Packet(unit.data if isinstance(unit, H264Frame) else unit))
    decoded += ctx.decode(None)
    return decoded


def rms(frame: AudioFrame) -> float:
    samples = array.array("h")
    samples.frombytes(frame.data)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def mean_luma(frame: PixelFrame) -> float:
    y = frame.data[:frame.width * frame.height]
    return sum(y) / len(y)


@dataclass
class Probe:
    """What PyAV finds in a media file: its streams and what decodes (seconds, frames)."""

    codecs: list[str]
    streams: list[dict[str, Any]] = field(default_factory=list)  # type, codec, width/height or rate/channels
    duration_s: float = 0.0  # as the container says
    audio_s: float = 0.0  # decoded samples / 48 kHz
    video_s: float = 0.0  # first to last decoded picture, plus one frame
    audio_frames: int = 0
    video_frames: int = 0
    first_key: bool = False  # the first decoded picture is a key frame
    audio_rms: list[float] = field(default_factory=list)  # per 100 ms of decoded audio, mono s16

    @property
    def duration(self) -> float:
        return max(self.audio_s, self.video_s)


def probe(path: str | os.PathLike[str], fps: int = 25) -> Probe:
    """Decode every audio and video frame of `path` (`fps`: the frame time added to the video's span)."""
    with av.open(str(path)) as c:
        out = Probe([s.codec_context.name for s in c.streams], duration_s=(c.duration or 0) / 1_000_000)
        for s in c.streams:
            ctx: Any = s.codec_context
            if s.type == "video":
                out.streams.append({"type": "video", "codec": ctx.name, "width": ctx.width, "height": ctx.height})
            elif s.type == "audio":
                out.streams.append({"type": "audio", "codec": ctx.name, "rate": ctx.sample_rate,
                                    "channels": ctx.channels})
    with av.open(str(path)) as c:
        if c.streams.audio:
            samples = 0
            acc: list[float] = []
            to_s16 = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
            for frame in c.decode(audio=0):
                samples += frame.samples
                out.audio_frames += 1
                for pcm in to_s16.resample(frame):
                    values = array.array("h")
                    values.frombytes(bytes(pcm.planes[0])[:pcm.samples * 2])
                    acc.extend(values)
                while len(acc) >= AUDIO_SAMPLE_RATE // 10:
                    chunk, acc = acc[:AUDIO_SAMPLE_RATE // 10], acc[AUDIO_SAMPLE_RATE // 10:]
                    out.audio_rms.append(math.sqrt(sum(v * v for v in chunk) / len(chunk)))
            out.audio_s = samples / AUDIO_SAMPLE_RATE
    with av.open(str(path)) as c:
        if c.streams.video:
            first = last = None
            for picture in c.decode(video=0):
                t = float(picture.pts * picture.time_base)  # type: ignore[operator]  # decoded pictures carry both; the stub allows None
                if first is None:
                    first, out.first_key = t, bool(picture.key_frame)
                last = t
                out.video_frames += 1
            if first is not None and last is not None:
                out.video_s = last - first + 1 / fps
    return out


# --- torture files and what a listener hears (tests/media/test_source_robustness.py, tests/record/test_continuity.py)


def corrupt_span(src: Path, dst: Path, size: int = 64 * 1024, at: float = 0.5) -> Path:
    """Overwrite `size` bytes at fraction `at` of the file with garbage (a damaged download)."""
    data = bytearray(src.read_bytes())
    start = int(len(data) * at)
    data[start:start + size] = bytes((i * 7919 + 13) % 251 for i in range(size))
    dst.write_bytes(bytes(data))
    return dst


def rotate_mp4(src: Path, dst: Path, degrees: int = 90) -> Path:
    """The MP4 with its video track's display matrix turning the picture `degrees` clockwise, as
    a phone writes a portrait video (stored landscape). Written into the tkhd box directly: PyAV
    has no way to set stream side data, and FFmpeg reads the matrix from there."""
    data = bytearray(src.read_bytes())
    one = 1 << 16
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees % 360]
    matrix = struct.pack(">9i", cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    at = 0
    while True:
        at = data.find(b"tkhd", at + 1)
        if at < 0:
            raise ValueError(f"{src} has no video track header")
        version = data[at + 4]
        m = at + 8 + (20 if version == 0 else 32) + 8 + 8  # times, ids, duration, layer, volume
        width = struct.unpack(">I", data[m + 36:m + 40])[0]
        if width:  # an audio track's tkhd has no width
            data[m:m + 36] = matrix
            break
    dst.write_bytes(bytes(data))
    return dst


def corner_clip(path: Path, width: int = 160, height: int = 120, seconds: float = 1.0, fps: int = 25) -> Path:
    """H.264 (no B-frames) in MP4: black pictures with a white block in the top-left corner."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "tune": "zerolatency"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.max_b_frames = 0
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame(width, height, "yuv420p")
            y = bytearray(bytes([16]) * (frame.planes[0].line_size * height))
            for row in range(height // 4):
                line = row * frame.planes[0].line_size
                y[line:line + width // 4] = bytes([235]) * (width // 4)
            frame.planes[0].update(bytes(y))
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
    return path


def discontinuities(samples: list[int], hz: float, rate: int = 48000, edge: int = 1920) -> list[tuple[float, str, float]]:
    """Where a steady tone of `hz` is broken, as a listener would hear it: (seconds, "click" or
    "dropout", size relative to the tone's amplitude). `edge` samples at each end (a codec's
    ramp-in, the padded last frame) are not looked at.

    A click: a sample the sine does not predict. A sine keeps x[n] = 2 cos(w) x[n-1] - x[n-2]; a
    codec leaves about 1 % of the amplitude there, a jump in the timeline of even one sample about w
    (6 % at 440 Hz), so more than 3 % is a click. A dropout: 10 ms whose level is below 70 % of the
    tone's (a stretch of silence or a codec's fade, which has no sharp edge to click)."""
    window, hop = rate // 100, rate // 400
    starts = range(edge, len(samples) - edge - window, hop)
    levels = [math.sqrt(sum(v * v for v in samples[i:i + window]) / window) for i in starts]
    if not levels:
        return []
    level = sorted(levels)[len(levels) // 2]  # the tone's own level (RMS), whatever breaks it
    amplitude = level * math.sqrt(2) or 1
    c = 2 * math.cos(2 * math.pi * hz / rate)
    out: list[tuple[float, str, float]] = []
    for n in range(edge + 2, len(samples) - edge):
        err = abs(samples[n] - c * samples[n - 1] + samples[n - 2]) / amplitude
        if err > 0.03:
            out.append((round(n / rate, 4), "click", round(err, 3)))
    for i, rms in zip(starts, levels):
        if rms < 0.7 * level:
            out.append((round(i / rate, 4), "dropout", round(rms / level, 3)))
    return out
