"""PixelFrame <-> PyAV pictures: YUV420p planes packed without row padding, and back.

A PixelFrame made from a decoded picture keeps that picture, so a backend that encodes with PyAV
(the local room) hands it to the encoder as is instead of unpacking `data` again; and its `data`
is packed only when something reads it (`Planes`): at 1080p30 each avoided copy is ~90 MB/s of
memcpy plus a fresh 3 MB allocation a picture (its page faults are system time), ~6 % of a
1080p transcode's CPU.
"""
from __future__ import annotations

import av

from .frames import PixelFrame, yuv420p_size

__all__ = ["Planes", "pack_yuv420p", "to_av_frame", "to_pixel_frame", "yuv420p_size"]


class Planes:
    """A decoded yuv420p picture's packed planes, packed on first read. Reads as `bytes` does
    where a PixelFrame's `data` is read: len(), bytes(), indexing and slicing, comparison, truth;
    anything else takes bytes(planes)."""

    __slots__ = ("_frame", "_size", "_packed")

    def __init__(self, frame: av.VideoFrame):
        self._frame: av.VideoFrame | None = frame
        self._size = yuv420p_size(frame.width, frame.height)
        self._packed: bytes | None = None

    def __bytes__(self) -> bytes:
        if self._packed is None:
            assert self._frame is not None
            self._packed, self._frame = pack_yuv420p(self._frame), None
        return self._packed

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __getitem__(self, index: int | slice) -> int | bytes:
        return bytes(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (bytes, bytearray, memoryview, Planes)):
            return bytes(self) == bytes(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(bytes(self))

    def __repr__(self) -> str:
        return f"<Planes {self._size} bytes{'' if self._packed is None else ', packed'}>"


def pack_yuv420p(frame: av.VideoFrame) -> bytes:
    """Y, U, V planes of a yuv420p picture without line padding (what PixelFrame.data carries)."""
    parts: list[memoryview] = []
    for plane in frame.planes:
        w, h, ls = plane.width, plane.height, plane.line_size
        view = memoryview(plane)
        if ls == w:
            parts.append(view[:w * h])
        else:
            parts.extend(view[r * ls:r * ls + w] for r in range(h))
    return b"".join(parts)


def to_pixel_frame(frame: av.VideoFrame, pts_ms: int) -> PixelFrame:
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    return PixelFrame(Planes(frame), frame.width, frame.height, pts_ms, picture=frame)  # type: ignore[arg-type]  # reads as bytes (Planes)


def to_av_frame(pixel: PixelFrame) -> av.VideoFrame:
    """The picture as an av.VideoFrame: the one it was made from when it has one, else unpacked from `data`."""
    pic = pixel.picture
    if (isinstance(pic, av.VideoFrame) and pic.format.name == "yuv420p"
            and (pic.width, pic.height) == (pixel.width, pixel.height)):
        return pic
    out = av.VideoFrame(pixel.width, pixel.height, "yuv420p")
    data = memoryview(bytes(pixel.data))
    offset = 0
    for plane in out.planes:
        w, h, ls = plane.width, plane.height, plane.line_size
        if ls == w:
            plane.update(data[offset:offset + w * h])  # type: ignore[arg-type]  # any buffer works; the stub says bytes
        else:
            view = memoryview(plane)
            for row in range(h):
                view[row * ls:row * ls + w] = data[offset + row * w:offset + (row + 1) * w]
        offset += w * h
    return out
