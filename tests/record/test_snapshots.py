"""SliceVideo: a JPEG of each anchor every N seconds, decoded from the key frame at or before its
time only, in COS beside the recording file."""
from __future__ import annotations

import io

import av
import pytest

from emulator.media import gray_level
from shared.cos.urls import parse_cos_url
from shared.record.slices import Piece
from shared.record.snapshots import Snapshotter, jpeg_of

from .conftest import FPS, h264_units

PUBLISHED_S = 11.5  # snapshots at 0, 5 and 10 s


def jpeg_luma(data: bytes) -> float:
    """The mean luma of a JPEG, brought back to the limited range the clip's levels are given in
    (a JPEG is full range: Y' = (Y - 16) * 255 / 219)."""
    with av.open(io.BytesIO(data)) as c:
        frame = next(c.decode(video=0))
    assert frame.format.name == "yuvj420p"
    plane = frame.planes[0]
    rows = [bytes(plane)[r * plane.line_size:r * plane.line_size + frame.width] for r in range(frame.height)]
    full = sum(sum(r) for r in rows) / (frame.width * frame.height)
    return 16 + full * 219 / 255


@pytest.fixture(scope="module")
def gray_units():
    """The gray-level clip as a room carries it: each second its own level, a key frame each second."""
    return h264_units(int(PUBLISHED_S * FPS) + FPS, pictures="gray")


def test_each_snapshot_shows_the_picture_of_its_second(studio, gray_units, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="01", SliceVideo=5))
    anchor = studio.anchor(room, "alice").publish(PUBLISHED_S, units=gray_units).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    [entry] = result["Files"]
    assert entry["Status"] == 1, entry
    assert result["Slices"]["Images"] == 3, result["Slices"]
    _, _, key = parse_cos_url(entry["RecordFile"])
    stem = key.rsplit(".", 1)[0]
    client = studio.cos.client()
    listed = client.list_objects(Bucket=studio.cos.bucket, Prefix=stem + "/images/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    assert keys == [f"{stem}/images/{i}.jpg" for i in range(3)]
    for i in range(3):
        data = client.get_object(Bucket=studio.cos.bucket, Key=f"{stem}/images/{i}.jpg")["Body"].get_raw_stream().read()
        assert data[:2] == b"\xff\xd8"  # a JPEG
        assert abs(jpeg_luma(data) - gray_level(i * 5)) <= 4, (i, jpeg_luma(data))


def test_mode_00_makes_no_snapshots(studio):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", SliceVideo=5))
    anchor = studio.anchor(room, "alice").publish(6.0).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    assert result["Files"][0]["Status"] == 1 and result["Slices"]["Images"] == 0


def test_a_snapshot_decodes_from_the_last_key_frame_only(gray_units):
    """What a snapshot is handed: the key frame at or before its time and the units after it up to
    its picture, never the stream from the start."""
    made: list[Piece] = []
    snap = Snapshotter(5, "trtc/f.mp4", "alice", made.append)
    for u in gray_units[:int(PUBLISHED_S * FPS)]:
        snap.video(u.data, u.pts_ms, 40, u.key, "h264")
    snap.close(int(PUBLISHED_S * 1000))
    assert [p.index for p in made] == [0, 1, 2] and [p.start_ms for p in made] == [0, 5000, 10000]
    sizes = [len(p.make.__closure__[1].cell_contents) for p in made]  # type: ignore[index]
    assert max(sizes) <= FPS, sizes  # at most one GOP (a key frame a second)
    data = made[1].make()
    assert data is not None and abs(jpeg_luma(data) - gray_level(5)) <= 4


def test_units_that_do_not_decode_make_no_picture():
    assert jpeg_of([b"\x00\x00\x00\x01garbage"], "h264") is None
