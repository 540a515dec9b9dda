"""A decoded picture's packed planes (shared.media.pixels.Planes): packed only when read, and then
exactly what pack_yuv420p gives; the picture a room encodes is the decoded one."""
from __future__ import annotations

from pathlib import Path

import av

from emulator.media import make_clip
from shared.media.convert import VideoConverter
from shared.media.pixels import Planes, pack_yuv420p, to_av_frame
from shared.room import PixelFrame, yuv420p_size


def test_a_converted_picture_reads_as_its_packed_planes(tmp_path: Path):
    clip = make_clip(tmp_path / "clip.mp4", duration=0.2, width=162, height=90, audio=None)
    with av.open(str(clip)) as c:
        decoded = next(c.decode(video=0))
    pic = VideoConverter().push(decoded, 40)[0]
    assert isinstance(pic.data, Planes) and "packed" not in repr(pic.data)  # nothing copied yet
    assert len(pic.data) == yuv420p_size(162, 90) and pic.data
    assert to_av_frame(pic) is pic.picture  # the room's encoder takes the decoded picture itself
    packed = pack_yuv420p(decoded)
    assert bytes(pic.data) == packed and pic.data == packed and pic.data[:100] == packed[:100]
    assert pic.data[5] == packed[5]
    # Without the picture, the planes are rebuilt from the bytes: the same picture comes back.
    again = to_av_frame(PixelFrame(bytes(pic.data), 162, 90, 40))
    assert pack_yuv420p(again) == packed
