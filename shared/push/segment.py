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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import av

from shared.media.frames import H264Frame, PixelFrame
from shared.media.source import AudioPlan, MediaSource, SourceError, VideoLimits, VideoPlan, safe_url
from shared.push.checkpoint import Checkpoint
from shared.push.reader import END_OF_SOURCE, NOTHING_YET, FrameReader, close_quietly
from shared.push.start import Start, frames_from
from shared.runtime import RunLogger

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
    return Segment(src, source, reader, start, path, checkpoint, position_ms=start.position_ms, passes=passes,
                   own_source=own_source)


@dataclass
class Opening:
    """A segment being prepared in the background while the current one plays.

    `run` (on its own thread) returns the segment with its first item read, or raises SourceError.
    `abandon()` may be called at any time: what was opened is then closed by the thread itself."""

    run: Callable[[], Segment]
    label: str
    command: Any = None  # the control command it is for (None: the queue)
    trigger: str = "control"
    target: str = ""
    item: Optional[int] = None  # the playlist's item it opens (None: not one of the list's)
    seek: Optional[float] = None
    started: float = field(default_factory=time.monotonic)
    segment: Optional[Segment] = None
    error: Optional[str] = None
    done: threading.Event = field(default_factory=threading.Event)
    _abandoned: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> "Opening":
        threading.Thread(target=self._work, name=f"open-{self.label}", daemon=True).start()
        return self

    def _work(self) -> None:
        segment: Optional[Segment] = None
        try:
            segment = self.run()
            deadline = time.monotonic() + 30.0
            while True:  # the first item: the cut never waits on the source
                item = segment.reader.next(timeout=0.1)
                if item is not NOTHING_YET:
                    break
                if self._abandoned or time.monotonic() > deadline:
                    raise SourceError(f"videoSrc {segment.name}: no frame within 30 s")
            if isinstance(item, SourceError):
                raise item
            if item is END_OF_SOURCE:
                raise SourceError(f"videoSrc {segment.name}: has nothing to play from "
                                  f"{segment.start.position_s:g} s")
            segment.first = item
        except SourceError as e:
            self.error = str(e)
            if segment is not None:
                _discard(segment)
            segment = None
        except Exception as e:  # PyAV may raise what the source did not foresee: still the source's failure
            self.error = f"videoSrc {safe_url(self.target)}: {type(e).__name__}: {e}"
            if segment is not None:
                _discard(segment)
            segment = None
        with self._lock:
            abandoned = self._abandoned
            self.segment = segment
        if abandoned and segment is not None:
            _discard(segment)
        self.done.set()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
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

        threading.Thread(target=finish_abandoned, daemon=True).start()
