"""The file writer on its own, fed frames directly: picture sizes from the SPS, a sender whose clock
restarts, and splits of audio-only recordings."""
from __future__ import annotations

import fractions

import av
import pytest

from shared.record.writer import AnchorRecording, key_frame_dimensions

from .conftest import probe, tone


def _first_key_frame(width: int, height: int, **options: str) -> bytes:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 25)
    ctx.options = {"preset": "ultrafast", **options}
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([100]) * plane.buffer_size)
    frame.pts = 0
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    return bytes(packets[0])


@pytest.mark.parametrize("width,height,options", [
    (1920, 1080, {}),  # cropped from 1088 rows of macroblocks
    (176, 144, {}),
    (162, 98, {"profile": "high", "preset": "medium"}),  # high profile SPS, cropped both ways
    (640, 360, {"profile": "baseline"}),
])
def test_picture_size_comes_from_the_sps(width, height, options):
    assert key_frame_dimensions(_first_key_frame(width, height, **options)) == (width, height)


def test_a_sender_clock_restart_keeps_the_file_continuous(tmp_path):
    """pts runs 0..1980 ms, then starts again at 0 while time goes on: the file stays 3 s long."""
    rec = AnchorRecording("alice", "00", tmp_path)
    for i in range(150):
        frame = tone(i)
        if i >= 100:
            frame.pts_ms = (i - 100) * 20  # the restart
        rec.add_audio(frame, arrival=100.0 + i * 0.02)
    [f] = rec.close(arrival=103.0)
    found = probe(f.path)
    assert abs(found.audio_s - 3.0) <= 0.05, found
    assert min(found.audio_rms[1:-1]) > 1000  # no hole, no overlap


def test_pts_gap_with_matching_time_gap_is_silence(tmp_path):
    """A muted microphone: 1 s of nothing in both pts and arrival, filled with silence."""
    rec = AnchorRecording("alice", "00", tmp_path)
    for i in list(range(50)) + list(range(100, 150)):
        rec.add_audio(tone(i), arrival=50.0 + i * 0.02)
    [f] = rec.close(arrival=53.0)
    found = probe(f.path)
    assert abs(found.audio_s - 3.0) <= 0.05, found
    assert max(found.audio_rms[11:19]) < 200 and min(found.audio_rms[21:29]) > 1000


def test_audio_only_recording_splits_exactly_at_the_limit(tmp_path):
    rec = AnchorRecording("alice", "00", tmp_path, max_file_ms=1000)
    for i in range(125):  # 2.5 s
        rec.add_audio(tone(i))
    files = rec.close()
    assert [f.part for f in files] == [1, 2, 3]
    durations = [probe(f.path).audio_s for f in files]
    assert [round(d, 1) for d in durations] == [1.0, 1.0, 0.5], durations
    assert len({f.path for f in files}) == 3 and all(f.path.suffix == ".mp3" for f in files)


def test_nothing_recorded_leaves_no_file(tmp_path):
    rec = AnchorRecording("alice", "01", tmp_path)
    for i in range(50):
        rec.add_audio(tone(i))  # Mode 01 records no audio
    assert rec.close() == []
    assert list(tmp_path.iterdir()) == []


def test_a_video_clock_restart_leaves_the_audio_alone(tmp_path, video_units):
    """Mode 02: the camera's pts starts again at 0 halfway; audio and video both stay in place."""
    rec = AnchorRecording("alice", "02", tmp_path)
    v = 0
    for i in range(150):
        rec.add_audio(tone(i), arrival=10.0 + i * 0.02)
        while v < 75 and video_units[v].pts_ms <= i * 20:
            unit = video_units[v]
            pts = unit.pts_ms if unit.pts_ms < 1500 else unit.pts_ms - 1500
            rec.add_video(type(unit)(unit.data, pts, unit.key, pts), arrival=10.0 + unit.pts_ms / 1000)
            v += 1
    [f] = rec.close(arrival=13.0)
    found = probe(f.path)
    assert abs(found.audio_s - 3.0) <= 0.05 and abs(found.video_s - 3.0) <= 0.1, found
    assert found.video_frames == 75
    assert min(found.audio_rms[1:-1]) > 1000


def test_a_long_mute_is_written_as_it_passes(tmp_path):
    """Muted from 1 s to 9 s: the silence is in the file second by second (ticks), not all at once
    when the microphone comes back; the file keeps the room's timeline."""
    rec = AnchorRecording("alice", "00", tmp_path)
    for i in range(50):
        rec.add_audio(tone(i), arrival=i * 0.02)
    rec.set_audio_muted(True)
    written = []
    for second in range(2, 10):
        rec.tick(float(second))
        written.append(rec._part.samples / 48000)
    assert written == sorted(written) and written[-1] >= 7.5, written  # kept up with the clock
    rec.set_audio_muted(False)
    for i in range(450, 500):
        rec.add_audio(tone(i), arrival=i * 0.02)
    [f] = rec.close(arrival=10.0)
    found = probe(f.path)
    assert abs(found.audio_s - 10.0) <= 0.05, found
    assert max(found.audio_rms[12:88]) < 200 and min(found.audio_rms[91:99]) > 1000


def test_a_new_picture_size_starts_a_new_file(tmp_path):
    """The anchor's video drops from 320x240 to 160x120 at 1 s (as TRTC does on a poor network)."""
    from .conftest import h264_units

    big, small = h264_units(25, 320, 240), h264_units(25, 160, 120)
    rec = AnchorRecording("alice", "02", tmp_path)
    units = big + [type(u)(u.data, u.pts_ms + 1000, u.key, u.pts_ms + 1000) for u in small]
    v = 0
    for i in range(100):
        rec.add_audio(tone(i))
        while v < len(units) and units[v].pts_ms <= i * 20:
            rec.add_video(units[v])
            v += 1
    files = rec.close()
    assert len(files) == 2
    sizes = []
    for f in files:
        with av.open(str(f.path)) as c:
            sizes.append((c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height))
    assert sizes == [(320, 240), (160, 120)]
    found = [probe(f.path) for f in files]
    assert [round(p.video_s, 2) for p in found] == [1.0, 1.0], found
    assert abs(sum(p.audio_s for p in found) - 2.0) <= 0.1, found


def test_file_names_never_come_from_the_user_id(tmp_path):
    """The userId is remote input; the writer names files by a label of its owner's (by default a
    hash of the id), so "../x" or a NUL lands inside the directory and the id stays in metadata."""
    run_dir = tmp_path / "run"
    for user_id in ("../x", "nul\x00id", "a/b"):
        rec = AnchorRecording(user_id, "00", run_dir)
        for i in range(10):
            rec.add_audio(tone(i), arrival=10.0 + i * 0.02)
        [f] = rec.close(arrival=10.2)
        assert f.user_id == user_id and f.error is None and f.path.parent == run_dir
        assert probe(f.path).audio_s > 0.15
    assert sorted(p.parent for p in tmp_path.rglob("*.mp3")) == [run_dir] * 3
    assert AnchorRecording("x", "00", run_dir, label="anchor007").label == "anchor007"
    with pytest.raises(ValueError, match="file label"):
        AnchorRecording("x", "00", run_dir, label="../x")


def test_an_anchor_switching_from_h264_to_h265_gets_a_new_file_at_the_h265_key_frame(tmp_path):
    from .conftest import h264_units, hevc_units

    h264, hevc = h264_units(50), hevc_units(50, width=176, height=144)
    rec = AnchorRecording("alice", "01", tmp_path)
    for u in h264:
        rec.add_video(u)
    # H.265 arriving mid-GOP (no key frame yet) must not go into the H.264 file
    for u in hevc[1:25] + hevc:
        rec.add_video(type(u)(u.data, u.pts_ms + 2000, u.key, u.pts_ms + 2000, u.codec))
    files = rec.close()
    assert [f.path.suffix for f in files] == [".mp4", ".mp4"]
    first, second = probe(files[0].path), probe(files[1].path)
    assert first.codecs == ["h264"] and first.video_frames == 50
    assert second.codecs == ["hevc"] and second.video_frames == 50
    assert [(s["width"], s["height"]) for s in second.streams] == [(176, 144)]
