"""Snapshots (SliceVideo): a JPEG of what an anchor's video shows every N seconds of its file.

The recording never decodes its video (it is copied into the file). A snapshot decodes only what
its picture needs: the access units from the key frame at or before its due time up to the frame
shown at that time, with a fresh decoder, on the delivery worker (slices.SliceDelivery). The tap
on the recording loop only keeps references to the units since the last key frame (bytes the
writer already holds), so an anchor with a 2 s GOP costs at most 2 s of decoding per snapshot and
nothing between snapshots.

Snapshot `i` is the picture shown at i·N s of the file (the last frame whose pts is at or before
it; before the first frame, the first frame). Mode 00 has no video, hence no snapshots.
"""
from __future__ import annotations

import fractions
from typing import Callable, cast

import av

from .slices import TYPE_IMAGE, Piece, piece_key


def jpeg_of(units: list[bytes], codec: str) -> bytes | None:
    """The last picture `units` (a key frame and what follows it) decode to, as a JPEG; None
    when nothing decodes."""
    decoder = cast(av.VideoCodecContext, av.CodecContext.create(codec, "r"))
    # One thread each: FFmpeg's threads cost more to start than they save on a few frames (decoding
    # a 26-frame GOP at 360p: 3.7 ms on one thread, 6.2 ms on its default threads).
    decoder.thread_count = 1
    last = None
    for unit in units:
        try:
            for frame in decoder.decode(av.Packet(unit)):
                last = frame
        except av.FFmpegError:  # a damaged unit: the picture before it is still a picture
            continue
    try:
        for frame in decoder.decode(None):
            last = frame
    except av.FFmpegError:
        pass
    if last is None:
        return None
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.thread_count = 1
    encoder.width, encoder.height = last.width - last.width % 2, last.height - last.height % 2
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 25)
    picture = last.reformat(width=encoder.width, height=encoder.height, format="yuvj420p")
    packets = encoder.encode(picture) + encoder.encode(None)
    return b"".join(bytes(p) for p in packets) or None


class Snapshotter:
    """A tap making snapshot i from the units of the GOP that shows i·`seconds` s."""

    def __init__(self, seconds: int, file_key: str, user_id: str, submit: Callable[[Piece], None]):
        self.every_ms = seconds * 1000
        self.file_key = file_key
        self.user_id = user_id
        self._submit = submit
        self._gop: list[bytes] = []  # the last key frame and every unit after it, up to the last seen
        self._codec = "h264"
        self._last_end = 0
        self._index = 0

    def audio(self, pcm: bytes, first_sample: int, channels: int) -> None:
        pass

    def video(self, data: bytes, pts_ms: int, duration_ms: int, key: bool, codec: str) -> None:
        if codec != self._codec:
            self._gop, self._codec = [], codec
        # The frame before this one is what plays at every due time this one is past.
        while pts_ms > self._index * self.every_ms:
            units = self._gop or ([data] if key else [])  # before the first frame: the first frame
            if not units:
                break  # nothing decodable yet; this due time waits for the next key frame
            self._snap(units)
        if key:
            self._gop = [data]
        elif self._gop:
            self._gop.append(data)
        self._last_end = pts_ms + duration_ms

    def close(self, end_ms: int) -> None:
        while self._gop and self._index * self.every_ms < min(end_ms, self._last_end):
            self._snap(self._gop)
        self._gop = []

    def _snap(self, units: list[bytes]) -> None:
        units, codec, at = list(units), self._codec, self._index * self.every_ms
        self._submit(Piece(self.user_id, TYPE_IMAGE, self._index, at, at,
                           piece_key(self.file_key, TYPE_IMAGE, self._index), lambda: jpeg_of(units, codec)))
        self._index += 1
