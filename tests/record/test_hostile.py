"""An anchor that sends what no MP4 can hold (crafted H.264): refused unit by unit, never at the
cost of what it sends that can be recorded, and never reported as a recording that does not play."""
from __future__ import annotations

from dataclasses import replace

from shared.media.h264 import NAL_SPS, nal_type, split_nals
from shared.room import H264Frame

from .conftest import FPS, probe


def _exp_golomb(bits: list[int], value: int) -> None:
    value += 1
    n = value.bit_length()
    bits += [0] * (n - 1) + [(value >> i) & 1 for i in range(n - 1, -1, -1)]


def crafted_sps(width_mbs: int, height_mbs: int) -> bytes:
    """A baseline SPS NAL (header byte included) describing width_mbs x height_mbs macroblocks."""
    bits: list[int] = []
    for value in (66, 0, 30):  # profile_idc, constraint flags, level_idc
        bits += [(value >> i) & 1 for i in range(7, -1, -1)]
    for value in (0, 0, 2, 1):  # sps id, log2_max_frame_num_minus4, poc type 2, max_num_ref_frames
        _exp_golomb(bits, value)
    bits.append(0)  # gaps_in_frame_num_value_allowed_flag
    _exp_golomb(bits, width_mbs - 1)
    _exp_golomb(bits, height_mbs - 1)
    bits += [1, 1, 0, 0, 1]  # frame_mbs_only, direct_8x8_inference, no cropping, no VUI, stop bit
    bits += [0] * (-len(bits) % 8)
    raw = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
    out, zeros = bytearray(), 0
    for byte in raw:  # emulation prevention, as an encoder writes it
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\x67" + bytes(out)


def hostile_units(key: H264Frame, delta: H264Frame) -> list[H264Frame]:
    """What the hostile anchor sends first: a key frame whose SPS says 16777216x16777216, one that
    says 65536x65536 (0 in an MP4's 16-bit sizes), a 4 MB unit, and a unit at pts 2^40."""
    out = []
    for mbs in (1 << 20, 4096):
        sps = crafted_sps(mbs, mbs)
        data = b"".join(b"\x00\x00\x00\x01" + (sps if nal_type(n) == NAL_SPS else n) for n in split_nals(key.data))
        out.append(H264Frame(data, len(out) * 40, True, len(out) * 40))
    out.append(H264Frame(b"\x00\x00\x00\x01\x65" + b"\x88" * (4 << 20), 80, True, 80))
    out.append(replace(delta, pts_ms=1 << 40, dts_ms=1 << 40))
    return out


def test_a_hostile_anchor_is_refused_unit_by_unit_and_recorded_for_what_plays(studio, video_units, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="01"))
    anchor = studio.anchor(room, "mallory")
    for unit in hostile_units(video_units[0], video_units[1]):
        anchor.room.send_video(unit)
    normal = video_units[:8 * FPS]  # then 8 s of ordinary video (a key frame every second)
    anchor.publish(8.0, units=normal, audio=False, pts_base=200).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    assert result["Files"], result
    playing = []
    for n, entry in enumerate(result["Files"]):
        if entry["Status"] != 1:  # a file that failed says why, and is not called a success
            assert entry["Message"] != "success", entry
            continue
        found = probe(studio.fetch(entry["RecordFile"], tmp_path / f"{n}.mp4"))  # raises if it does not decode
        assert [(s["width"], s["height"]) for s in found.streams] == [(160, 120)], (entry, found)
        playing.append(found)
    # The 8 s that followed are recorded (the first second waits for its key frame at most).
    assert sum(f.video_s for f in playing) >= 8.0 - 1.5, (result["Files"], playing)


def test_a_unit_the_muxer_fails_on_ends_that_file_not_the_anchors_recording(studio, video_units, tmp_path,
                                                                          monkeypatch):
    """Whatever slips past the checks and makes the muxer fail ends the file it was in; the anchor
    is recorded again, into a new file, a moment later (not only once it leaves and comes back)."""
    import errno

    from shared.record import segments
    from shared.record.recorder import BROKEN_PAUSE_S

    real = segments.Segmenter.write_video
    calls = {"n": 0}

    def fails_once(self, data, pts_ms, duration_ms, key):  # the 30th unit: about 1.2 s in
        calls["n"] += 1
        if calls["n"] == 30:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(self, data, pts_ms, duration_ms, key)

    monkeypatch.setattr(segments.Segmenter, "write_video", fails_once)
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="01"))
    studio.anchor(room, "mallory").publish(8.0, units=video_units[:8 * FPS], audio=False).wait()
    studio.remove(room)
    result = run.wait()
    assert calls["n"] > 30
    later = [e for e in result["Files"] if e["Status"] == 1 and e["StartTime"] > result["Files"][0]["StartTime"]]
    assert later, result["Files"]  # recorded again after the failure
    found = probe(studio.fetch(later[-1]["RecordFile"], tmp_path / "again.mp4"))
    # From the pause's end to the end: 8 s - ~1.2 s - the pause - a key frame's wait, at most.
    assert found.video_s >= 8.0 - 1.2 - BROKEN_PAUSE_S - 1.5, (result["Files"], found)
