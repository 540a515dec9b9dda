"""From decoded PyAV frames and demuxed packets to what a room takes.

Audio: any rate, format and layout -> 48 kHz s16 interleaved, mono or stereo (more channels are
downmixed by libswresample's standard matrix), `volume` applied, cut into exact 20 ms frames with
integer timestamps. Video: decoded pictures -> tightly packed YUV420p at an even size, turned
upright as their display matrix says, within the room's maximum size (optionally a fixed frame
rate); or H.264 packets -> Annex-B access units with SPS/PPS on every key frame.

Where things go in time is decided before they get here (shared.media.timeline): the converters
place what they are told and never repair a timestamp themselves.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import av
import av.bitstream
from av.filter import Graph
from av.video.reformatter import Interpolation, VideoReformatter

from shared.media.frames import AUDIO_FRAME_MS, AUDIO_SAMPLE_RATE, AudioFrame, PixelFrame
from shared.media.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type, split_nals
from shared.media.pixels import to_pixel_frame

SAMPLES_PER_MS = AUDIO_SAMPLE_RATE // 1000
FRAME_SAMPLES = AUDIO_SAMPLE_RATE * AUDIO_FRAME_MS // 1000  # 960
# Converted audio this close to where the samples so far end is in the same place: the
# resampler's own delay and rounding, not a move the timeline asked for.
RESAMPLER_SLACK_SAMPLES = 2 * SAMPLES_PER_MS


def to_ms(ts: int, time_base: Fraction) -> int:
    """A timestamp in `time_base` units as integer milliseconds (exact rational arithmetic)."""
    return round(ts * time_base * 1000)


def head(frame: av.AudioFrame, samples: int) -> av.AudioFrame:
    """The first `samples` of a decoded audio frame, as a frame of its own."""
    out = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=samples)
    size = samples * frame.format.bytes * (1 if frame.format.is_planar else frame.layout.nb_channels)
    for src, dst in zip(frame.planes, out.planes):
        dst.update(bytes(src)[:size])
    out.sample_rate = frame.sample_rate
    out.pts = frame.pts
    out.time_base = frame.time_base
    return out


# --- audio -------------------------------------------------------------------------------------


class AudioConverter:
    """Decoded audio frames in, 20 ms `AudioFrame`s out.

    A byte FIFO rather than av.AudioFifo: seeking needs sample-exact trimming at the start
    position, and the end needs padding with silence, both simple on bytes.
    """

    def __init__(self, channels: int, volume: int = 100):
        if channels not in (1, 2):
            raise ValueError("room audio is mono or stereo")
        if not 0 <= volume <= 100:
            raise ValueError("volume must be in 0..100")
        self.channels = channels
        self.volume = volume
        self._bytes_per_sample = 2 * channels
        self._graph: Graph | None = None
        self._graph_key: tuple | None = None
        self._fifo = bytearray()
        self._pos: int | None = None  # 48 kHz sample index of the fifo's first sample
        self.drop_before_ms: int | None = None

    def reset(self, drop_before_ms: int | None = None) -> None:
        """Forget buffered audio (after a seek); drop everything before `drop_before_ms`."""
        self._graph = None
        self._graph_key = None
        self._fifo.clear()
        self._pos = None
        self.drop_before_ms = drop_before_ms

    def _build(self, frame: av.AudioFrame) -> Graph:
        graph = Graph()
        src = graph.add(
            "abuffer",
            sample_rate=str(frame.sample_rate),
            sample_fmt=frame.format.name,
            channel_layout=frame.layout.name,
            time_base=str(frame.time_base or Fraction(1, frame.sample_rate)),
        )
        chain = [src]
        if self.volume != 100:
            chain.append(graph.add("volume", volume=f"{self.volume / 100:.4f}"))
        chain.append(graph.add(
            "aformat",
            sample_fmts="s16",
            sample_rates=str(AUDIO_SAMPLE_RATE),
            channel_layouts="mono" if self.channels == 1 else "stereo",
        ))
        chain.append(graph.add("abuffersink"))
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        self._graph = graph
        return graph

    def push(self, frame: av.AudioFrame, at: Fraction | None, keep: int | None = None) -> list[AudioFrame]:
        """Convert one decoded frame whose first sample goes at `at` seconds (None: right after the
        last one); only its first `keep` samples when given (0: none)."""
        if keep is not None:
            if keep <= 0:
                return []
            if keep < frame.samples:
                frame = head(frame, keep)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        graph = self._graph
        if graph is None or key != self._graph_key:
            # A source may change layout or rate midway (HLS renditions); rebuild for it.
            out = self._drain_graph(graph) if graph is not None else []
            graph = self._build(frame)
            self._graph_key = key
        else:
            out = []
        if at is not None:
            if not frame.time_base:
                frame.time_base = Fraction(1, frame.sample_rate)
            frame.pts = round(at / frame.time_base)
        graph.push(frame)
        out += self._pull(graph)
        return out

    def _pull(self, graph: Graph) -> list[AudioFrame]:
        out: list[AudioFrame] = []
        while True:
            try:
                f = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            except av.FFmpegError as e:
                if getattr(e, "errno", None) in (11, 35):  # EAGAIN
                    break
                raise
            assert isinstance(f, av.AudioFrame)  # an audio graph (abuffersink)
            out += self._append(f)
        return out

    def _drain_graph(self, graph: Graph) -> list[AudioFrame]:
        try:
            graph.push(None)
        except av.FFmpegError:
            return []
        return self._pull(graph)

    def _append(self, f: av.AudioFrame) -> list[AudioFrame]:
        data = bytes(f.planes[0])[: f.samples * self._bytes_per_sample]
        n = f.samples
        start = None
        if f.pts is not None and f.time_base is not None:
            start = round(f.pts * f.time_base * AUDIO_SAMPLE_RATE)
        out: list[AudioFrame] = []
        if self._pos is None:
            self._pos = start if start is not None else 0
        elif start is not None:
            expected = self._pos + len(self._fifo) // self._bytes_per_sample
            if abs(start - expected) > RESAMPLER_SLACK_SAMPLES:
                # The timeline moved audio on (a real gap): finish the frame in progress there.
                out += self._pad_out()
                self._fifo.clear()
                self._pos = start
        if self.drop_before_ms is not None:
            # Sample-exact start after a seek: cut what lies before the start position.
            first = self._pos + len(self._fifo) // self._bytes_per_sample
            cut = self.drop_before_ms * SAMPLES_PER_MS - first
            if cut >= n:
                if not self._fifo:
                    self._pos = first + n
                return out
            if cut > 0:
                data = data[cut * self._bytes_per_sample:]
                if not self._fifo:
                    self._pos = first + cut
            self.drop_before_ms = None
        self._fifo += data
        out += self._cut(partial=False)
        return out

    def _cut(self, partial: bool) -> list[AudioFrame]:
        size = FRAME_SAMPLES * self._bytes_per_sample
        out: list[AudioFrame] = []
        while len(self._fifo) >= size or (partial and self._fifo):
            assert self._pos is not None  # set whenever the fifo is filled
            chunk = bytes(self._fifo[:size])
            del self._fifo[:size]
            if len(chunk) < size:
                chunk += bytes(size - len(chunk))  # the last frame is padded with silence
            out.append(AudioFrame(chunk, self._pos // SAMPLES_PER_MS, AUDIO_SAMPLE_RATE, self.channels))
            self._pos += FRAME_SAMPLES
        return out

    def _pad_out(self) -> list[AudioFrame]:
        return self._cut(partial=True)

    def flush(self) -> list[AudioFrame]:
        """End of stream: what the resampler still holds, the last frame padded to 20 ms."""
        out = self._drain_graph(self._graph) if self._graph is not None else []
        out += self._pad_out()
        self._graph = None
        self._graph_key = None
        return out


# --- video: decoded pictures ---------------------------------------------------------------------


def even_size(width: int, height: int) -> tuple[int, int]:
    """YUV420p needs even dimensions: odd ones lose their last row/column (at least 2)."""
    return max(2, width - width % 2), max(2, height - height % 2)


def plan_size(src_w: int, src_h: int, width: int | None, height: int | None,
              max_area: int | None = None) -> tuple[int, int]:
    """The output size: the asked one, or one side asked and the other keeping the aspect; then
    scaled down (keeping the aspect) to at most `max_area` pixels."""
    if width and height:
        w, h = width, height
    elif width:
        w, h = width, max(2, round(src_h * width / src_w))
    elif height:
        w, h = max(2, round(src_w * height / src_h)), height
    else:
        w, h = src_w, src_h
    if max_area and w * h > max_area:
        scale = math.sqrt(max_area / (w * h))
        w, h = max(2, math.floor(w * scale)), max(2, math.floor(h * scale))
    return even_size(w, h)


def display_rotation(frame: av.VideoFrame) -> int:
    """How far to turn a decoded picture clockwise (0, 90, 180, 270) to show it upright.

    PyAV gives the display matrix's rotation counter-clockwise; a phone's portrait video is
    stored landscape with -90 there (FFmpeg's CLI turns it with transpose=clock)."""
    try:
        degrees = -float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return int(round(degrees / 90)) % 4 * 90


# Filters that turn a picture clockwise by the key's degrees.
_TURN = {90: [("transpose", "clock")], 180: [("hflip", ""), ("vflip", "")], 270: [("transpose", "cclock")]}


class _Turner:
    """Turns decoded pictures upright with FFmpeg's transpose/flip filters (a graph per input kind)."""

    def __init__(self) -> None:
        self._graph: Graph | None = None
        self._key: tuple | None = None

    def turn(self, frame: av.VideoFrame, degrees: int) -> av.VideoFrame:
        key = (frame.width, frame.height, frame.format.name, degrees)
        if key != self._key:
            g = Graph()
            chain = [g.add("buffer", width=str(frame.width), height=str(frame.height),
                           pix_fmt=frame.format.name, time_base="1/1000", sar="1/1")]
            chain += [g.add(name, args) if args else g.add(name) for name, args in _TURN[degrees]]
            chain.append(g.add("buffersink"))
            for a, b in zip(chain, chain[1:]):
                a.link_to(b)
            g.configure()
            self._graph, self._key = g, key
        assert self._graph is not None
        frame.pts = 0  # the graph keeps no time; the caller keeps the timestamp
        self._graph.push(frame)
        out = self._graph.pull()
        assert isinstance(out, av.VideoFrame)
        return out


class VideoConverter:
    """Decoded pictures -> upright PixelFrame at an even size within `max_area` pixels,
    optionally at a fixed frame rate."""

    def __init__(self, width: int | None = None, height: int | None = None, fps: int | None = None,
                 max_area: int | None = None):
        self.width = width
        self.height = height
        self.fps = fps
        self.max_area = max_area
        self._reformatter = VideoReformatter()
        self._turner: _Turner | None = None
        self._size: tuple[int, int] | None = None
        self._src: tuple[int, int] | None = None
        self._next_slot: int | None = None
        self._held: PixelFrame | None = None
        self.rotation = 0  # the last picture's turn, degrees clockwise

    def reset(self) -> None:
        self._next_slot = None
        self._held = None

    def output_size(self, src_w: int, src_h: int) -> tuple[int, int]:
        """For an upright source picture of src_w x src_h."""
        return plan_size(src_w, src_h, self.width, self.height, self.max_area)

    def push(self, frame: av.VideoFrame, pts_ms: int) -> list[PixelFrame]:
        degrees = display_rotation(frame)
        self.rotation = degrees
        if degrees:
            self._turner = self._turner or _Turner()
            frame = self._turner.turn(frame, degrees)
        if self._src != (frame.width, frame.height):
            self._src = (frame.width, frame.height)
            self._size = self.output_size(frame.width, frame.height)
        assert self._size is not None
        w, h = self._size
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != (w, h):
            frame = self._reformatter.reformat(
                frame, width=w, height=h, format="yuv420p", interpolation=Interpolation.BILINEAR)
        pic = to_pixel_frame(frame, pts_ms)
        if not self.fps:
            return [pic]
        return self._resample(pic, self.fps)

    def _resample(self, pic: PixelFrame, fps: int) -> list[PixelFrame]:
        # Each output slot k (at k*1000/fps ms) shows the newest picture at or before it: a
        # picture landing on an already filled slot is dropped, a gap repeats the held picture.
        slot = pic.pts_ms * fps // 1000
        if self._next_slot is None:
            self._next_slot = slot
        out: list[PixelFrame] = []
        if slot < self._next_slot:
            self._held = pic
            return out
        if self._held is not None:
            for k in range(self._next_slot, slot):
                out.append(dataclasses.replace(self._held, pts_ms=k * 1000 // fps))
        out.append(dataclasses.replace(pic, pts_ms=slot * 1000 // fps))
        self._next_slot = slot + 1
        self._held = pic
        return out


# --- video: H.264 passthrough ----------------------------------------------------------------------

class H264Passthrough:
    """H.264 packets -> Annex-B access units; key frames (IDR) always carry SPS and PPS."""

    def __init__(self, stream: av.video.stream.VideoStream):
        extradata = bytes(stream.codec_context.extradata or b"")
        self._bsf = None
        if extradata[:1] == b"\x01":
            # avcC (mp4, mov, flv, mkv): length-prefixed NAL units; the filter rewrites them as
            # Annex-B and puts SPS/PPS in front of IDR pictures.
            self._bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        if extradata and extradata[:1] != b"\x01":
            self._remember(split_nals(extradata))

    def _remember(self, nals: list[bytes]) -> None:
        for u in nals:
            t = nal_type(u)
            if t == NAL_SPS:
                self._sps = u
            elif t == NAL_PPS:
                self._pps = u

    def reset(self) -> None:
        if self._bsf is not None:
            self._bsf.flush()

    def push(self, packet: av.Packet) -> list[tuple[bytes, bool, av.Packet]]:
        """(Annex-B bytes, is IDR, the packet it came from) for each access unit."""
        packets = self._bsf.filter(packet) if self._bsf is not None else [packet]
        out = []
        for p in packets:
            data = bytes(p)
            nals = split_nals(data)
            types = {nal_type(u) for u in nals}
            self._remember(nals)
            key = NAL_IDR in types
            if key and not (NAL_SPS in types and NAL_PPS in types) and self._sps and self._pps:
                data = b"\x00\x00\x00\x01" + self._sps + b"\x00\x00\x00\x01" + self._pps + data
            out.append((data, key, p))
        return out


class AccessUnitCheck:
    """Each H.264 access unit about to be passed through, decoded as a receiver will decode it: a
    unit that fails to decode, or whose picture the decoder had to patch up (error concealment:
    the broken macroblock a viewer would see), is damaged. The demuxer cannot tell: slice data
    damaged inside its NAL unit frames and demuxes as well as sound data does.

    One picture out per unit in (no B-frames in passthrough, low delay, no frame threads), so the
    verdict is about the unit just given. Deblocking is skipped: it finds no errors, and costs."""

    def __init__(self) -> None:
        ctx = av.CodecContext.create("h264", "r")
        ctx.flags |= av.codec.context.Flags.low_delay
        ctx.thread_count = 1
        ctx.options = {"skip_loop_filter": "all"}
        self._ctx = ctx

    def damaged(self, data: bytes) -> str | None:
        """Why the unit is damaged, or None when it decodes cleanly (or yields no picture yet)."""
        try:
            pictures = self._ctx.decode(av.Packet(data))
        except av.FFmpegError as e:
            return f"does not decode: {getattr(e, 'strerror', None) or e}"
        if any(p.is_corrupt for p in pictures):
            return "decodes only with errors concealed (damaged slice data)"
        return None
