"""Each Mode end to end: an anchor publishes PyAV-made media for a few seconds, RemoveUser stops the
recording, and the callback, COS and the file's decoded content say what a user would check."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from .conftest import probe

PUBLISHED_S = 3.0


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


EXPECTED = {"00": ["mp3float"], "01": ["h264"], "02": ["h264", "aac"]}


@pytest.mark.parametrize("mode", ["00", "01", "02"])
def test_each_mode_records_what_was_published(studio, video_units, tmp_path, mode):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode=mode))
    anchor = studio.anchor(room, "alice").publish(PUBLISHED_S, units=video_units).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    body = studio.callback.wait_for(1)[0].json
    assert set(body) >= {"SdkAppId", "RoomId", "UserId", "StrRoomId", "Files"}
    assert (body["SdkAppId"], body["RoomId"], body["UserId"]) == (studio.rooms.sdk_app_id, room, "recorder")
    assert body["Reason"] == "removed"
    assert body["Files"] == result["Files"]
    [entry] = body["Files"]
    assert set(entry) >= {"UserId", "RecordFile", "Status", "Message"}
    assert entry["UserId"] == "alice" and entry["Status"] == 1, entry
    ext = "mp3" if mode == "00" else "mp4"
    assert entry["RecordFile"].endswith("." + ext)
    assert f"/trtc/test/{studio.rooms.sdk_app_id}_{room}_alice_" in entry["RecordFile"]

    local = studio.fetch(entry["RecordFile"], tmp_path / f"got.{ext}")
    found = probe(local)
    assert sorted(found.codecs) == sorted(EXPECTED[mode])
    assert abs(found.duration - PUBLISHED_S) <= 0.1, found
    if mode != "01":
        assert abs(found.audio_s - PUBLISHED_S) <= 0.1, found
        assert min(found.audio_rms[1:-1]) > 1000  # the tone throughout, no holes
    if mode != "00":
        assert abs(found.video_s - PUBLISHED_S) <= 0.1, found
        assert found.video_frames == anchor.sent_video
        assert top_level_boxes(local).index("moov") < top_level_boxes(local).index("mdat")  # faststart
    assert not list(studio.cfs.rglob("*.*")), "uploaded files are removed from CFS"


@pytest.mark.parametrize("mode", ["01", "02"])
def test_an_h265_anchor_is_recorded_as_hvc1_without_reencoding(studio, tmp_path, mode):
    import av

    from .conftest import hevc_units

    units = hevc_units(int(PUBLISHED_S * 25) + 5, width=176, height=144)
    room = studio.new_room()
    run = studio.start(studio.event(room, mode=mode))
    anchor = studio.anchor(room, "alice").publish(PUBLISHED_S, units=units).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    [entry] = result["Files"]
    assert entry["Status"] == 1 and entry["RecordFile"].endswith(".mp4"), entry
    local = studio.fetch(entry["RecordFile"], tmp_path / "got.mp4")
    found = probe(local)
    assert sorted(found.codecs) == sorted(["hevc"] + (["aac"] if mode == "02" else []))
    [video] = [s for s in found.streams if s["type"] == "video"]
    assert (video["width"], video["height"]) == (176, 144)
    assert abs(found.video_s - PUBLISHED_S) <= 0.1, found
    assert found.video_frames == anchor.sent_video
    with av.open(str(local)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.codec_tag == "hvc1"
        # the access units in the file are the ones sent, byte for byte (Annex-B -> length-prefixed)
        packets = [bytes(p) for p in c.demux(stream) if p.size]
    assert len(packets) == anchor.sent_video
    first = packets[0]
    assert units[0].data.split(b"\x00\x00\x01")[-1] in first  # the key frame's slice data, not re-encoded
