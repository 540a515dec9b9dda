"""One source of a push as it plays: opened (in the background when the push is already playing),
its frames read ahead on their own thread, and placed on the room's timeline at a cut.

A push plays segments one after another: the first source, each switch, each queued item, and
the current source again after a resume. The room's input kind was fixed when the push entered
(H.264 passed through, or pictures for the room to encode): a segment is made to fit it, so the
room never sees another kind mid-room:

- the room takes H.264: a source that passes through at the room's picture size does; any other
  (B-frames, another codec or size) is decoded at the room's size and encoded to H.264 here
  (`H264Encoder`), starting with a key frame;
- the room takes pictures: every source is decoded at the room's picture size;
- audio is converted to the room's channel count; volume is the pusher's (applied at the send).

Room time of an item = its own time + `offset_ms`, which the pusher sets at the cut.
"""
from __future__ import annotations

import fractions
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import av

from shared.media.frames import H264Frame, PixelFrame
from shared.media.source import AudioPlan, MediaSource, SourceError, VideoLimits, VideoPlan, safe_url
from shared.push.checkpoint import Checkpoint
from shared.push.reader import END_OF_SOURCE, NOTHING_YET, FrameReader, close_quietly
from shared.push.start import Start, frames_from
from shared.runtime import RunLogger
from shared.worker import Worker, spawn

# An opened segment must show its first item within this long, or the switch to it fails.
FIRST_ITEM_WITHIN_S = 30.0

PASSTHROUGH = "passthrough"
TRANSCODE = "transcode"  # decoded to pictures, the room encodes
ENCODE = "encode"  # decoded and encoded to H.264 here (the room takes H.264)


@dataclass(frozen=True)
class RoomInput:
    """What the room was entered with: fixed for the whole push."""

    h264: bool
    width: Optional[int]
    height: Optional[int]
    fps: int
    channels: int
    gop_s: int = 2


class H264Encoder:
    """Pictures to H.264 for a room that takes H.264: key frame first, SPS/PPS on every key frame."""

    def __init__(self, room: RoomInput, log: RunLogger):
        self.room = room
        self.log = log
        self._ctx: Any = None

    def _open(self, width: int, height: int) -> Any:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = fractions.Fraction(1, 1000)
        ctx.framerate = fractions.Fraction(max(1, self.room.fps), 1)
        ctx.gop_size = max(1, self.room.fps * max(1, self.room.gop_s))
        ctx.max_b_frames = 0
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "bframes": "0", "repeat-headers": "1",
                       "crf": "23"}
        ctx.open()
        return ctx

    def encode(self, frame: PixelFrame) -> list[H264Frame]:
        picture = frame.picture
        if picture is None:  # packed YUV420p back into planes (row by row: planes may be padded)
            picture = av.VideoFrame(frame.width, frame.height, "yuv420p")
            offset = 0
            for plane in picture.planes:
                w, h, line = plane.width, plane.height, plane.line_size
                buf = bytearray(line * h)
                for row in range(h):
                    buf[row * line:row * line + w] = frame.data[offset + row * w:offset + (row + 1) * w]
                plane.update(bytes(buf))
                offset += w * h
        w, h = self.room.width or picture.width, self.room.height or picture.height
        if (picture.width, picture.height) != (w, h) or picture.format.name != "yuv420p":
            picture = picture.reformat(width=w, height=h, format="yuv420p")
        if self._ctx is None:
            self._ctx = self._open(w, h)
            picture.pict_type = av.video.frame.PictureType.I
        picture.pts = frame.pts_ms
        picture.time_base = fractions.Fraction(1, 1000)
        return [H264Frame(bytes(p), int(p.pts if p.pts is not None else frame.pts_ms), bool(p.is_keyframe),
                          int(p.pts if p.pts is not None else frame.pts_ms)) for p in self._ctx.encode(picture)]

    def apply(self, items: Iterator[Any]) -> Iterator[Any]:
        for item in items:
            if isinstance(item, PixelFrame):
                yield from self.encode(item)
            else:
                yield item


@dataclass
class Segment:
    """A source being played (or about to be): its reader and where it is."""

    src: str  # the videoSrc as given (with its query: it names the checkpoint)
    source: MediaSource
    reader: FrameReader
    start: Start
    path: str
    checkpoint: Optional[Checkpoint] = None
    first: Any = None  # the first item read (held until the cut)
    offset_ms: int = 0  # room time of the segment's own time 0
    pass_offset_ms: int = 0  # the segment's own time of the current pass's source time 0
    loops_before: int = 0  # passes finished before this segment (a resume restarts a source)
    position_ms: int = 0
    passes: Optional[int] = 1
    own_source: bool = True  # False: a resume's segment shares the source with the one it replaced
    item: Optional[int] = None  # a playlist's item: its index in the list (None: not one of the list's)

    @property
    def name(self) -> str:
        return safe_url(self.src)

    def stop(self) -> None:
        self.reader.stop()

    def release(self) -> None:
        """Stop reading and close what is this segment's (the source once its reader let go)."""
        if self.own_source:
            if self.reader.release(self.source):
                close_quietly(self.source)
        else:
            self.reader.stop()


def plans(room: RoomInput, asked: VideoPlan, *, fit: bool) -> tuple[VideoPlan, AudioPlan]:
    """The plans a source opens with: the push's own for its first source; to fit the room for the
    rest (`fit`: decode at the room's size, unless it can pass through)."""
    audio = AudioPlan(volume=100, channels=room.channels)
    if not fit:
        return asked, AudioPlan(volume=100, channels=None)
    return VideoPlan(width=room.width, height=room.height, fps=asked.fps, bitrate_kbps=asked.bitrate_kbps,
                     gop_s=asked.gop_s), audio


def open_fitting(src: str, room: RoomInput, asked: VideoPlan, limits: VideoLimits, log: RunLogger) -> tuple[MediaSource, str]:
    """Open `src` so that it fits the room; (source, path). SourceError when it cannot be used."""
    video, audio = plans(room, asked, fit=True)
    if room.h264 and not asked.asked:
        # Try passthrough first: the source's own H.264 at the room's size needs no work.
        source = MediaSource(src, video=VideoPlan(), audio=audio, log=log, limits=limits)
        if not source.info.has_video:
            return source, PASSTHROUGH
        if source.info.passthrough and (room.width is None or (source.info.out_width, source.info.out_height)
                                        == (room.width, room.height)):
            return source, PASSTHROUGH
        close_quietly(source)
    source = MediaSource(src, video=video, audio=audio, log=log, limits=limits)
    if not source.info.has_video:
        return source, PASSTHROUGH if room.h264 else TRANSCODE
    return source, ENCODE if room.h264 else TRANSCODE


def make_segment(src: str, source: MediaSource, path: str, start: Start, passes: Optional[int],
                 room: RoomInput, log: RunLogger, checkpoint: Optional[Checkpoint] = None,
                 own_source: bool = True) -> Segment:
    frames = frames_from(start, source, passes, log)
    if path == ENCODE:
        frames = H264Encoder(room, log).apply(frames)
    reader = FrameReader(frames, source)
    reader.start()
    return Segment(src, source, reader, start, path, checkpoint, position_ms=start.position_ms, passes=passes,
                   own_source=own_source)


class Opening(Worker):
    """A segment being prepared on its own worker while the current one plays.

    `opens` (on the worker) returns the segment; the worker then waits for its first item, so that
    the cut never waits on the source. `done` is set when it is ready (`segment`) or failed
    (`error`). close() may be called at any time: what was opened is then closed by the worker."""

    def __init__(self, opens: Callable[[], Segment], label: str, command: Any = None, trigger: str = "control",
                 target: str = "", item: Optional[int] = None, seek: Optional[float] = None):
        super().__init__(f"open-{label}")
        self.opens = opens
        self.label = label
        self.command = command  # the control command it is for (None: the queue)
        self.trigger = trigger
        self.target = target
        self.item = item  # the playlist's item it opens (None: not one of the list's)
        self.seek = seek
        self.started = time.monotonic()
        self.segment: Optional[Segment] = None
        self.error: Optional[str] = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        segment: Optional[Segment] = None
        try:
            segment = self.opens()
            segment.first = self._first_item(segment)
        except SourceError as e:
            self.error = str(e)
        except Exception as e:  # PyAV may raise what the source did not foresee: still the source's failure
            self.error = f"videoSrc {safe_url(self.target)}: {type(e).__name__}: {e}"
        if self.error is not None and segment is not None:
            _discard(segment)
            segment = None
        with self._lock:
            closed = self.closing.is_set()
            self.segment = segment
        if closed and segment is not None:
            _discard(segment)
        self.done.set()

    def _first_item(self, segment: Segment) -> Any:
        deadline = time.monotonic() + FIRST_ITEM_WITHIN_S
        while True:
            item = segment.reader.next(timeout=0.1)
            if item is not NOTHING_YET:
                break
            if self.closing.is_set() or time.monotonic() > deadline:
                raise SourceError(f"videoSrc {segment.name}: no frame within {FIRST_ITEM_WITHIN_S:g} s")
        if isinstance(item, SourceError):
            raise item
        if item is END_OF_SOURCE:
            raise SourceError(f"videoSrc {segment.name}: has nothing to play from {segment.start.position_s:g} s")
        return item

    def close(self) -> None:
        """Drop it: a segment already opened is discarded here, one still opening by the worker."""
        with self._lock:
            super().close()
            segment, self.segment = self.segment, None
        if segment is not None:
            _discard(segment)


def _discard(segment: Segment) -> None:
    segment.release()
    if segment.checkpoint is not None:
        cp = segment.checkpoint

        def finish_abandoned() -> None:
            cp.finish("stopped", "switch_abandoned", budget_s=1.0)
            cp.close()

        spawn(finish_abandoned, "checkpoint-abandoned")
