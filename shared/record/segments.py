"""One recording file written as a run of segments, each closed every SegmentDuration of media.

Modes 01/02 are fragmented MP4: one PyAV mp4 muxer per file writes ftyp+moov once (the init
segment) and then one moof+mdat fragment per segment (`movflags=frag_keyframe+delay_moov+
default_base_moof+skip_trailer`, `min_frag_duration=SegmentDuration`: a fragment starts at the
first video key frame past SegmentDuration). `delay_moov` writes the moov when the first fragment
is cut, so that it carries the edit list trimming AAC's priming (with `empty_moov` the muxer moves
every track instead and stretches the first video frame by ~21 ms). The muxer writes into `_BoxSink`, which cuts its
output at top-level box boundaries into `init.mp4` and `NNNNN.m4s` files. So:
  - init + the segments, concatenated, are byte for byte the one fragmented MP4 the muxer made (a
    valid MP4: moof offsets are relative to each moof, and no trailer points into the file), and
  - init + each segment is the CMAF-style pair HLS plays (#EXT-X-MAP + .m4s).
Mode 00 is MP3 (lameenc): each segment is a run of whole frames, after an ID3 timestamp tag for HLS
(`media_offset` bytes, skipped when the segments are joined into the final MP3).

H.264 goes in an `avc1` track, H.265 in an `hvc1` one (what Apple's players need; FFmpeg's default
`hev1` is not played there), whose hvcC is made from the parameter sets of the file's first key
frame. Either way the access units are copied, never re-encoded.

A closed segment is handed to `on_segment(SegmentInfo)` from the thread that feeds the segmenter,
after the muxer call that closed it returns (never from inside PyAV's write callback).
"""
from __future__ import annotations

import fractions
import io
import re
import shutil
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable, cast

import av

from shared.media.frames import AUDIO_SAMPLE_RATE, CODEC_H264, CODEC_HEVC, VIDEO_CODECS
from shared.rules.record import (  # the writer and the tests name these here too
    DEFAULT_SEGMENT_S,
    INIT_INDEX,
    MODE_MP3,
    MODE_MP4_AV,
    MODE_MP4_VIDEO,
    check_segment_duration,
    segment_name,
)

from . import mp3

# A segment of a video file ends at a key frame; if none comes (a camera that stopped, a very long
# GOP) it ends anyway after this many SegmentDurations, so that the media at risk stays bounded.
MAX_SEGMENT_FACTOR = 3

_MS = fractions.Fraction(1, 1000)
_SAMPLE = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
_LAYOUTS = {1: "mono", 2: "stereo"}


@dataclass(frozen=True)
class SegmentInfo:
    """One closed segment file. `index` 0 is an fMP4 file's init segment (no media)."""

    index: int
    path: Path
    start_ms: float  # media time of its first sample, from the file's origin
    duration_ms: float
    bytes: int
    media_offset: int = 0  # bytes before the media (the HLS ID3 tag of an MP3 segment)
    frames: int = 0  # MP3 frames in it (for the final file's Info header)
    tail: bool = False  # closed by Segmenter.close(): the end of the file

    @property
    def is_init(self) -> bool:
        return self.index == INIT_INDEX


_NAME = re.compile(r"^(?:init\.mp4|(\d{5,})\.(m4s|mp3))$")


def local_segments(directory: Path, name_prefix: str = "") -> list[tuple[int, Path]]:
    """(index, path) of the segment files of one recording file in `directory`, init first."""
    found = []
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError:
        return []
    for name in names:
        if name.startswith(name_prefix):
            m = _NAME.match(name[len(name_prefix):])
            if m:
                found.append((INIT_INDEX if m.group(1) is None else int(m.group(1)), directory / name))
    return sorted(found)


def join(paths: list[Path], into: Path, *, channels: int = 1, samples: int | None = None) -> int:
    """Write the one file that segments make (in index order, init first) to `into`; its size.

    fMP4: the bytes as they are. MP3: the Info frame, then each segment without its ID3 tag.
    A partly written last segment (the disk filled) is taken as far as it goes."""
    is_mp3 = any(p.suffix == ".mp3" for p in paths)
    offsets = [_id3_size(p) if is_mp3 else 0 for p in paths]
    with open(into, "wb") as out:
        if is_mp3:
            audio = sum(max(0, p.stat().st_size - o) for p, o in zip(paths, offsets))
            frame = 144 * mp3.BITRATE_PER_CHANNEL_KBPS * channels * 1000 // mp3.SAMPLE_RATE
            out.write(mp3.final_header(audio // frame, audio, channels, samples))
        for path, offset in zip(paths, offsets):
            with open(path, "rb") as f:
                f.seek(offset)
                shutil.copyfileobj(f, out, 1 << 20)
        return out.tell()


def _id3_size(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(10)
    if len(head) == 10 and head[:3] == b"ID3":
        return 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F))
    return 0


# --- reading the boxes the muxer writes ---------------------------------------------------------------


def iter_boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, content_start, box_end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
            header = 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            return
        yield kind.decode("latin-1"), offset + header, offset + size
        offset += size


def _child(data: bytes, start: int, end: int, kind: str) -> tuple[int, int] | None:
    for k, s, e in iter_boxes(data, start, end):
        if k == kind:
            return s, e
    return None


@dataclass
class Track:
    track_id: int
    timescale: int
    handler: str  # "vide" or "soun"
    default_duration: int = 0  # from trex


def parse_init(moov: bytes) -> dict[int, Track]:
    """Tracks (by id) of an init segment (ftyp+moov or the moov alone)."""
    tracks: dict[int, Track] = {}
    where = _child(moov, 0, len(moov), "moov")
    if where is None:
        return tracks
    ms, me = where
    for kind, s, e in iter_boxes(moov, ms, me):
        if kind == "trak":
            tkhd = _child(moov, s, e, "tkhd")
            mdia = _child(moov, s, e, "mdia")
            if tkhd is None or mdia is None:
                continue
            version = moov[tkhd[0]]
            track_id = struct.unpack(">I", moov[tkhd[0] + (20 if version == 1 else 12):][:4])[0]
            mdhd = _child(moov, mdia[0], mdia[1], "mdhd")
            hdlr = _child(moov, mdia[0], mdia[1], "hdlr")
            if mdhd is None or hdlr is None:
                continue
            v = moov[mdhd[0]]
            timescale = struct.unpack(">I", moov[mdhd[0] + (20 if v == 1 else 12):][:4])[0]
            handler = moov[hdlr[0] + 8:hdlr[0] + 12].decode("latin-1")
            tracks[track_id] = Track(track_id, timescale, handler)
        elif kind == "mvex":
            for k, ts, _te in iter_boxes(moov, s, e):
                if k == "trex":
                    track_id, _, default_duration = struct.unpack(">III", moov[ts + 4:ts + 16])
                    if track_id in tracks:
                        tracks[track_id].default_duration = default_duration
    return tracks


def fragment_times(moof: bytes, tracks: dict[int, Track]) -> dict[str, tuple[float, float]]:
    """{handler: (start_ms, duration_ms)} of one moof, from tfdt and the trun sample durations."""
    out: dict[str, tuple[float, float]] = {}
    where = _child(moof, 0, len(moof), "moof")
    if where is None:
        return out
    for kind, s, e in iter_boxes(moof, *where):
        if kind != "traf":
            continue
        tfhd = _child(moof, s, e, "tfhd")
        if tfhd is None:
            continue
        flags = struct.unpack(">I", moof[tfhd[0]:tfhd[0] + 4])[0] & 0xFFFFFF
        track_id = struct.unpack(">I", moof[tfhd[0] + 4:tfhd[0] + 8])[0]
        track = tracks.get(track_id)
        if track is None:
            continue
        pos = tfhd[0] + 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
        default = struct.unpack(">I", moof[pos:pos + 4])[0] if flags & 0x08 else track.default_duration
        base = 0
        tfdt = _child(moof, s, e, "tfdt")
        if tfdt is not None:
            base = (struct.unpack(">Q", moof[tfdt[0] + 4:tfdt[0] + 12])[0] if moof[tfdt[0]] == 1
                    else struct.unpack(">I", moof[tfdt[0] + 4:tfdt[0] + 8])[0])
        total = 0
        for k, ts, _te in iter_boxes(moof, s, e):
            if k != "trun":
                continue
            tflags = struct.unpack(">I", moof[ts:ts + 4])[0] & 0xFFFFFF
            count = struct.unpack(">I", moof[ts + 4:ts + 8])[0]
            pos = ts + 8 + (4 if tflags & 0x01 else 0) + (4 if tflags & 0x04 else 0)
            per = 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if tflags & bit)
            if tflags & 0x100:
                total += sum(struct.unpack(">I", moof[pos + i * per:pos + i * per + 4])[0] for i in range(count))
            else:
                total += default * count
        scale = 1000.0 / track.timescale
        out[track.handler] = (base * scale, total * scale)
    return out


class _BoxSink:
    """The muxer's output, cut at top-level boxes: everything before the first moof is the init
    segment; each moof and the mdat after it are one media segment, closed when the mdat ends."""

    def __init__(self, directory: Path, ext: str, prefix: str = ""):
        self.directory = directory
        self.ext = ext
        self.prefix = prefix
        self.closed: list[SegmentInfo] = []  # closed since the owner last took them
        self.tracks: dict[int, Track] = {}
        self._index = INIT_INDEX
        self._file: BinaryIO | None = None
        self._bytes = 0
        self._head = b""  # a box header being collected
        self._remaining = 0  # bytes left of the current box
        self._kind = ""
        self._keep: bytearray | None = None  # moov / moof bytes, kept to read the timing
        self._moov = bytearray()
        self._moof = b""
        self._open(INIT_INDEX)

    # PyAV's file protocol
    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            if self._remaining == 0:
                need = 16 if len(self._head) >= 8 and struct.unpack(">I", self._head[:4])[0] == 1 else 8
                take = min(need - len(self._head), len(view))
                self._head += bytes(view[:take])
                view = view[take:]
                if len(self._head) < need:
                    continue
                if need == 8 and struct.unpack(">I", self._head[:4])[0] == 1:
                    continue  # a 64-bit size follows
                self._start_box()
                continue
            take = min(self._remaining, len(view))
            self._put(view[:take])
            view = view[take:]
            self._remaining -= take
            if self._remaining == 0:
                self._end_box()
        return len(data)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _start_box(self) -> None:
        head, self._head = self._head, b""
        size = struct.unpack(">I", head[:4])[0]
        if size == 1:
            size = struct.unpack(">Q", head[8:16])[0]
        self._kind = head[4:8].decode("latin-1")
        if self._kind == "moof":
            if self._index == INIT_INDEX:
                self._close(0.0, 0.0)
            self._open(self._index + 1)
        self._keep = bytearray() if self._kind in ("moov", "moof") else None
        self._put(head)
        self._remaining = max(0, size - len(head))
        if self._remaining == 0:
            self._end_box()

    def _put(self, data: bytes | memoryview) -> None:
        if self._keep is not None:
            self._keep += data
        assert self._file is not None
        self._file.write(data)
        self._bytes += len(data)

    def _end_box(self) -> None:
        if self._kind == "moov" and self._keep is not None:
            self._moov = self._keep
            self.tracks = parse_init(bytes(self._keep))
        elif self._kind == "moof" and self._keep is not None:
            self._moof = bytes(self._keep)
        elif self._kind == "mdat" and self._index != INIT_INDEX:
            times = fragment_times(self._moof, self.tracks)
            start, duration = times.get("vide") or times.get("soun") or (0.0, 0.0)
            self._close(start, duration)
            self._file = None
        self._keep = None

    def _open(self, index: int) -> None:
        self._index = index
        self._bytes = 0
        self._file = open(self.directory / (self.prefix + segment_name(index, self.ext)), "wb")

    def _close(self, start_ms: float, duration_ms: float) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        f.close()
        self.closed.append(SegmentInfo(self._index, Path(f.name), start_ms, duration_ms, self._bytes))

    def abandon(self) -> None:
        """Close a partly written file (a muxer that failed): it is not a segment."""
        if self._file is not None:
            self._file.close()
            Path(self._file.name).unlink(missing_ok=True)
            self._file = None


# --- the segmenter ------------------------------------------------------------------------------------


def _hevc_stream(container: av.container.OutputContainer, key_frame: bytes) -> av.video.stream.VideoStream:
    """An `hvc1` track for copied H.265. PyAV sets a codec tag only through a codec context, so
    the stream is made from one parsed out of the key frame (VPS/SPS/PPS become its extradata,
    which the muxer turns into hvcC); the context is never opened: nothing is decoded or encoded."""
    with av.open(io.BytesIO(key_frame), "r", format="hevc") as probe:
        template = probe.streams.video[0]
        if not template.codec_context.extradata:
            raise ValueError("the first H.265 key frame carries no VPS/SPS/PPS")
        stream = container.add_stream_from_template(template, opaque=True)
    stream.codec_tag = "hvc1"
    return stream


@dataclass
class Segmenter:
    """One recording file of one anchor as segments in `directory` (created if missing).

    Feed it like writer.py's `_Part` feeds its container: `write_pcm(pcm)` appends interleaved s16
    PCM at the next sample (Modes 00 and 02), `write_video(data, pts_ms, duration_ms, key)` one
    H.264 access unit (Annex B) at its place in ms from the file's origin (Modes 01 and 02;
    timestamps strictly increasing). `close()` flushes the last segment. `video_size` is None for
    a Mode 02 file that has no video (audio-only MP4); `video_codec` is the access units' codec, and
    `key_frame` the file's first key frame (its parameter sets make an HEVC track's hvcC). Segment files are named
    `{name_prefix}{segment_name(...)}` ("anchor001_..._1.00001.m4s"): many files share one folder.
    """

    directory: Path
    mode: str
    channels: int = 1
    video_size: tuple[int, int] | None = None
    segment_s: float = DEFAULT_SEGMENT_S
    on_segment: Callable[[SegmentInfo], None] | None = None
    segments: list[SegmentInfo] = field(default_factory=list)
    name_prefix: str = ""
    video_codec: str = CODEC_H264
    key_frame: bytes = b""

    def __post_init__(self) -> None:
        check_segment_duration(self.segment_s)
        if self.mode not in (MODE_MP3, MODE_MP4_VIDEO, MODE_MP4_AV):
            raise ValueError(f"unknown recording mode {self.mode!r}")
        if self.mode == MODE_MP4_VIDEO and self.video_size is None:
            raise ValueError("Mode 01 records video: video_size is needed")
        if self.channels not in _LAYOUTS:
            raise ValueError(f"1 or 2 audio channels, not {self.channels}")
        if self.video_codec not in VIDEO_CODECS:
            raise ValueError(f"video is {self.video_codec!r}; an MP4 here takes {', '.join(VIDEO_CODECS)}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.samples = 0  # PCM samples (per channel) written
        self.closed = False
        self._closing = False
        self._segment_ms = int(self.segment_s * 1000)
        self._last_video_pts: int | None = None
        self._segment_video_start: int | None = None  # pts of the key frame that began the segment
        if self.mode == MODE_MP3:
            self.ext = "mp3"
            self._mp3 = mp3.Mp3Encoder(self.channels)
            self._mp3_file: BinaryIO | None = None
            self._mp3_frames = 0  # frames in the open segment
            self._mp3_bytes = 0
            self._frames_before = 0  # frames in the closed segments
            self._index = 0
            return
        self.ext = "m4s"
        self._sink = _BoxSink(self.directory, self.ext, self.name_prefix)
        options = {
            "movflags": "frag_keyframe+delay_moov+default_base_moof+skip_trailer",
            "min_frag_duration": str(self._segment_ms * 1000),  # microseconds
            "flush_packets": "1",
        }
        # frag_duration cuts on any track's packet (not only at key frames): the whole rule for an
        # audio-only file, the bound on a segment that waits for a key frame in a video file.
        factor = 1 if self.video_size is None else MAX_SEGMENT_FACTOR
        options["frag_duration"] = str(self._segment_ms * 1000 * factor)
        self._container = av.open(self._sink, "w", format="mp4", options=options)
        self._video = None
        self._audio = None
        if self.video_size is not None:
            if self.video_codec == CODEC_HEVC:
                self._video = _hevc_stream(self._container, self.key_frame)
            else:
                self._video = cast(av.video.stream.VideoStream,
                                   self._container.add_mux_stream("h264", width=self.video_size[0],
                                                                  height=self.video_size[1]))
            self._video.time_base = _MS
        if self.mode == MODE_MP4_AV:
            self._audio = self._container.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout=_LAYOUTS[self.channels])
            self._audio.bit_rate = 64_000 * self.channels
            self._audio.time_base = _SAMPLE

    # --- input ----------------------------------------------------------------------------------

    @property
    def wants_key_frame(self) -> bool:
        """True once the open segment has SegmentDuration of video: ask the anchor for a key frame."""
        if self._video is None or self._segment_video_start is None or self._last_video_pts is None:
            return False
        return self._last_video_pts - self._segment_video_start >= self._segment_ms

    def write_pcm(self, pcm: bytes) -> None:
        if self.closed or not pcm:
            return
        samples = len(pcm) // (2 * self.channels)
        if self.mode == MODE_MP3:
            self.samples += samples
            self._write_mp3(self._mp3.encode(pcm))
            return
        if self._audio is None:
            return
        frame = av.AudioFrame(format="s16", layout=_LAYOUTS[self.channels], samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = self.samples
        frame.time_base = _SAMPLE
        self.samples += samples
        self._mux(self._audio.encode(frame))

    def write_video(self, data: bytes, pts_ms: int, duration_ms: int, key: bool) -> None:
        if self.closed or self._video is None:
            return
        packet = av.Packet(data)
        packet.stream = self._video
        packet.time_base = _MS
        packet.pts = packet.dts = pts_ms
        packet.duration = max(1, duration_ms)
        packet.is_keyframe = key
        if self._segment_video_start is None or (key and pts_ms - self._segment_video_start >= self._segment_ms):
            self._segment_video_start = pts_ms  # the muxer's rule, mirrored for wants_key_frame
        self._last_video_pts = pts_ms
        self._mux([packet])

    def close(self) -> list[SegmentInfo]:
        """Flush the last segment; every segment made (init first for MP4). Safe to call twice."""
        if self.closed:
            return self.segments
        self.closed = True
        self._closing = True
        if self.mode == MODE_MP3:
            self._write_mp3(self._mp3.flush())
            self._close_mp3_segment()
            return self.segments
        try:
            if self._audio is not None:
                self._container.mux(self._audio.encode(None))
        finally:
            try:
                self._container.close()
            except Exception:
                self._sink.abandon()
                raise
            finally:
                self._take()
        self._sink.abandon()  # an init segment no media followed: nothing was recorded
        return self.segments

    # --- MP4 ------------------------------------------------------------------------------------

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._container.mux(packet)
        self._take()

    def _take(self) -> None:
        closed, self._sink.closed = self._sink.closed, []
        for info in closed:
            self._emit(info)

    def path_of(self, index: int) -> Path:
        return self.directory / (self.name_prefix + segment_name(index, self.ext))

    def _emit(self, info: SegmentInfo) -> None:
        if self._closing:
            info = replace(info, tail=True)
        self.segments.append(info)
        if self.on_segment is not None:
            self.on_segment(info)

    # --- MP3 ------------------------------------------------------------------------------------

    def _write_mp3(self, frames: list[bytes]) -> None:
        per = mp3.SAMPLES_PER_FRAME
        target = self._segment_ms * AUDIO_SAMPLE_RATE // 1000
        for frame in frames:
            if self._mp3_file is None:
                self._index += 1
                self._mp3_file = open(self.path_of(self._index), "wb")
                tag = mp3.hls_timestamp_tag(self._frames_before * per)
                self._mp3_file.write(tag)
                self._mp3_bytes = len(tag)
                self._mp3_frames = 0
            self._mp3_file.write(frame)
            self._mp3_bytes += len(frame)
            self._mp3_frames += 1
            # Cut at the first frame boundary past each multiple of SegmentDuration: no drift.
            if (self._frames_before + self._mp3_frames) * per >= self._index * target:
                self._close_mp3_segment()

    def _close_mp3_segment(self) -> None:
        f, self._mp3_file = self._mp3_file, None
        if f is None:
            return
        f.close()
        ms_per_frame = mp3.SAMPLES_PER_FRAME * 1000 / AUDIO_SAMPLE_RATE
        info = SegmentInfo(self._index, Path(f.name), self._frames_before * ms_per_frame,
                           self._mp3_frames * ms_per_frame, self._mp3_bytes,
                           media_offset=mp3.HLS_TAG_BYTES, frames=self._mp3_frames)
        self._frames_before += self._mp3_frames
        self._emit(info)
