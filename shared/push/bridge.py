"""Passthrough that has to start between two key frames (a resume, a seekSecond): see
shared.push.start for when.

A receiver can only start decoding on a key frame, and the source starts at the key frame at or
before the position. Rather than repeat up to a GOP, the bridge decodes that GOP, drops the
pictures before the position, and re-encodes the rest of it (until the source's next key frame) as
H.264 that starts with an IDR; from the next key frame on, the source passes through untouched.
The first picture sent is then within one frame of the position, and the extra encoding costs at
most one GOP.
"""
from __future__ import annotations

import fractions
from typing import Any, Iterator, TypeVar

import av

from shared.media.frames import H264Frame
from shared.runtime import RunLogger

T = TypeVar("T")


class KeyFrameBridge:
    def __init__(self, start_ms: int, fps: float | None, log: RunLogger):
        self.start_ms = start_ms
        self.frame_ms = 1000.0 / (fps or 25)
        self.fps = fps or 25
        self.log = log
        self.active = True
        self._seen_key = False
        self._decoder: Any = None
        self._encoder: Any = None
        self.encoded = 0

    def apply(self, items: Iterator[T]) -> Iterator[T | H264Frame]:
        """The items with the video bridged; audio and anything else pass as they are."""
        for item in items:
            if self.active and isinstance(item, H264Frame):
                yield from self.video(item)
            else:
                yield item

    def video(self, frame: H264Frame) -> list[H264Frame]:
        if not self.active:
            return [frame]
        if frame.key:
            if self._seen_key or frame.pts_ms > self.start_ms - self.frame_ms / 2:
                # The source's own key frame takes over from here.
                return self._finish() + [frame]
            self._seen_key = True
        elif not self._seen_key:
            return []  # nothing decodes before the first key frame
        if self._decoder is None:
            self._decoder = av.CodecContext.create("h264", "r")
            self._decoder.flags |= av.codec.context.Flags.low_delay
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = frame.pts_ms
        return self._reencode(self._decoder.decode(packet), frame.pts_ms)

    def _reencode(self, pictures: list[Any], default_pts: int) -> list[H264Frame]:
        out: list[H264Frame] = []
        for picture in pictures:
            pts = picture.pts if picture.pts is not None else default_pts
            if pts <= self.start_ms - self.frame_ms / 2:
                continue
            out += self._encode(picture, int(pts))
        return out

    def _encode(self, picture: Any, pts_ms: int) -> list[H264Frame]:
        if self._encoder is None:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height, ctx.pix_fmt = picture.width, picture.height, "yuv420p"
            ctx.time_base = fractions.Fraction(1, 1000)
            ctx.framerate = fractions.Fraction(int(round(self.fps)), 1)
            ctx.max_b_frames = 0
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "bframes": "0", "repeat-headers": "1",
                           "crf": "21"}
            ctx.open()
            self._encoder = ctx
            self.log.info("resuming between key frames: re-encoding up to the next key frame",
                          startMs=self.start_ms, keyFrameMs=pts_ms)
        if picture.format.name != "yuv420p":
            picture = picture.reformat(format="yuv420p")
        picture.pts = pts_ms
        picture.time_base = fractions.Fraction(1, 1000)
        if self.encoded == 0:
            picture.pict_type = av.video.frame.PictureType.I
        out = []
        for packet in self._encoder.encode(picture):
            p = int(packet.pts) if packet.pts is not None else pts_ms
            out.append(H264Frame(bytes(packet), p, bool(packet.is_keyframe), p))
            self.encoded += 1
        return out

    def _finish(self) -> list[H264Frame]:
        """What the decoder and encoder still hold, then back to passthrough."""
        self.active = False
        out: list[H264Frame] = []
        if self._decoder is not None:
            out += self._reencode(self._decoder.decode(None), self.start_ms)
        if self._encoder is not None:
            for packet in self._encoder.encode(None):
                p = int(packet.pts) if packet.pts is not None else self.start_ms
                out.append(H264Frame(bytes(packet), p, bool(packet.is_keyframe), p))
        self._decoder = self._encoder = None
        return out
