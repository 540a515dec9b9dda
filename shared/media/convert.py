"""From decoded PyAV frames and demuxed packets to what a room takes.

Audio: any rate, format and layout -> 48 kHz s16 interleaved, mono or stereo (more channels are
downmixed by libswresample's standard matrix), `volume` applied, cut into exact 20 ms frames with
integer timestamps. Video: decoded pictures -> tightly packed YUV420p at an even size (optionally
a fixed frame rate); or H.264 packets -> Annex-B access units with SPS/PPS on every key frame.
"""
from __future__ import annotations

import dataclasses
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
# An audio timestamp this far from where the samples so far put it is a discontinuity (a seam,
# a gap in the source): the frame in progress is padded out and the timeline restarts there.
AUDIO_RESYNC_MS = 200


def to_ms(ts: int, time_base: Fraction) -> int:
    """A timestamp in `time_base` units as integer milliseconds (exact rational arithmetic)."""
    return round(ts * time_base * 1000)


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

    def _build(self, frame: av.AudioFrame) -> None:
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

    def push(self, frame: av.AudioFrame, pts_ms: int | None) -> list[AudioFrame]:
        """Convert one decoded frame whose first sample is at `pts_ms` (None: continues the last)."""
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._graph_key:
            # A source may change layout or rate midway (HLS renditions); rebuild for it.
            out = self._drain_graph() if self._graph is not None else []
            self._build(frame)
            self._graph_key = key
        else:
            out = []
        if pts_ms is not None:
            frame.pts = round(Fraction(pts_ms, 1000) / frame.time_base) if frame.time_base else None
        self._graph.push(frame)
        out += self._pull()
        return out

    def _pull(self) -> list[AudioFrame]:
        out: list[AudioFrame] = []
        while True:
            try:
                f = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            except av.FFmpegError as e:
                if getattr(e, "errno", None) in (11, 35):  # EAGAIN
                    break
                raise
            out += self._append(f)
        return out

    def _drain_graph(self) -> list[AudioFrame]:
        try:
            self._graph.push(None)
        except av.FFmpegError:
            return []
        return self._pull()

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
            if abs(start - expected) > AUDIO_RESYNC_MS * SAMPLES_PER_MS:
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
        out = []
        while len(self._fifo) >= size or (partial and self._fifo):
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
        out = self._drain_graph() if self._graph is not None else []
        out += self._pad_out()
        self._graph = None
        self._graph_key = None
        return out


# --- video: decoded pictures ---------------------------------------------------------------------


def even_size(width: int, height: int) -> tuple[int, int]:
    """YUV420p needs even dimensions: odd ones lose their last row/column (at least 2)."""
    return max(2, width - width % 2), max(2, height - height % 2)


def plan_size(src_w: int, src_h: int, width: int | None, height: int | None) -> tuple[int, int]:
    """The output size: the asked one, or one side asked and the other keeping the aspect."""
    if width and height:
        return even_size(width, height)
    if width:
        return even_size(width, max(2, round(src_h * width / src_w)))
    if height:
        return even_size(max(2, round(src_w * height / src_h)), height)
    return even_size(src_w, src_h)


class VideoConverter:
    """Decoded pictures -> PixelFrame at an even size, optionally at a fixed frame rate."""

    def __init__(self, width: int | None = None, height: int | None = None, fps: int | None = None):
        self.width = width
        self.height = height
        self.fps = fps
        self._reformatter = VideoReformatter()
        self._size: tuple[int, int] | None = None
        self._src: tuple[int, int] | None = None
        self._next_slot: int | None = None
        self._held: PixelFrame | None = None

    def reset(self) -> None:
        self._next_slot = None
        self._held = None

    def output_size(self, src_w: int, src_h: int) -> tuple[int, int]:
        return plan_size(src_w, src_h, self.width, self.height)

    def push(self, frame: av.VideoFrame, pts_ms: int) -> list[PixelFrame]:
        if self._src != (frame.width, frame.height):
            self._src = (frame.width, frame.height)
            self._size = self.output_size(frame.width, frame.height)
        w, h = self._size
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != (w, h):
            frame = self._reformatter.reformat(
                frame, width=w, height=h, format="yuv420p", interpolation=Interpolation.BILINEAR)
        pic = to_pixel_frame(frame, pts_ms)
        if not self.fps:
            return [pic]
        return self._resample(pic)

    def _slot_ms(self, slot: int) -> int:
        return slot * 1000 // self.fps

    def _resample(self, pic: PixelFrame) -> list[PixelFrame]:
        # Each output slot k (at k*1000/fps ms) shows the newest picture at or before it: a
        # picture landing on an already filled slot is dropped, a gap repeats the held picture.
        slot = pic.pts_ms * self.fps // 1000
        if self._next_slot is None:
            self._next_slot = slot
        out = []
        if slot < self._next_slot:
            self._held = pic
            return out
        if self._held is not None:
            for k in range(self._next_slot, slot):
                out.append(dataclasses.replace(self._held, pts_ms=self._slot_ms(k)))
        out.append(dataclasses.replace(pic, pts_ms=self._slot_ms(slot)))
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
