"""Segments to COS while recording, the playlist following them, and the final file assembled in
COS from the segments (the local COS endpoint, the real SDK)."""
from __future__ import annotations

import os
import time

import pytest

from emulator.media import h264_units, probe
from shared.record.assembly import Piece, assemble, read_playlist
from shared.record.segments import Segmenter
from shared.record.uploader import FileOutput, SegmentUploader
from shared.rules.record import OutputKeys, output_format

from .segmented import FPS, feed, iter_keys


def _record(tmp_path, bucket, prefix, fmt, mode="02", seconds=7.0, segment_s=2, ext="mp4", between=None):
    uploader = SegmentUploader(bucket)
    keys = OutputKeys(f"{prefix}rec_1.{ext}")
    out = FileOutput(uploader, keys, fmt, segment_s=segment_s)
    seg = Segmenter(tmp_path / "local", mode, video_size=None if mode == "00" else (160, 120),
                    segment_s=segment_s, on_segment=out.on_segment)
    units = h264_units(int(seconds * FPS), gop=FPS) if mode != "00" else []
    feed(seg, seconds, units, between=between and (lambda i: between(i, seg, out)))
    seg.close()
    entries = out.finalize(samples=seg.samples if mode == "00" else None, deadline=time.monotonic() + 30)
    uploader.close()
    return keys, out, entries


def test_hls_plus_mp4_playlist_grows_while_recording_then_both_outputs(tmp_path, bucket, prefix, cos_env):
    seen: list[str] = []

    def between(i, seg, out):
        if i == 5 * 50:  # 5 s in: two segments closed, the playlist is live in COS
            deadline = time.monotonic() + 5
            while out.uploader.pending[0] and time.monotonic() < deadline:
                time.sleep(0.02)
            seen.append(cos_env.get_object_bytes(out.keys.playlist).decode())
            seen.append(",".join(sorted(p.name for p in (tmp_path / "local").iterdir())))

    keys, out, entries = _record(tmp_path, bucket, prefix, "hls+mp4", between=between)
    live, local = seen
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in live and "#EXT-X-ENDLIST" not in live
    assert list(read_playlist(live)) == ["rec_1/00001.m4s", "rec_1/00002.m4s"]
    assert "00001.m4s" not in local and "init.mp4" not in local  # uploaded, so gone from the disk

    assert [e["Status"] for e in entries] == [1, 1]
    assert [e["RecordFile"].rsplit("/", 1)[1] for e in entries] == ["rec_1.m3u8", "rec_1.mp4"]
    final = tmp_path / "final.mp4"
    final.write_bytes(cos_env.get_object_bytes(keys.final))
    found = probe(final)
    assert found.video_frames == 7 * FPS and abs(found.audio_s - 7) <= 0.1
    playlist = cos_env.get_object_bytes(keys.playlist).decode()
    assert playlist.endswith("#EXT-X-ENDLIST\n") and len(read_playlist(playlist)) == 4
    assert sum(read_playlist(playlist).values()) == pytest.approx(found.duration_s, abs=0.1)
    assert list((tmp_path / "local").iterdir()) == []


def test_mp4_output_is_todays_single_object_and_the_segments_go(tmp_path, bucket, prefix, cos_env):
    keys, out, entries = _record(tmp_path, bucket, prefix, "mp4")
    assert [e["Status"] for e in entries] == [1]
    assert list(iter_keys(bucket, prefix)) == [keys.final]  # no playlist, no segments left
    joined = cos_env.get_object_bytes(keys.final)
    assert joined[4:8] == b"ftyp"


def test_mode00_final_mp3_reads_its_duration(tmp_path, bucket, prefix, cos_env):
    keys, out, entries = _record(tmp_path, bucket, prefix, "hls+mp4", mode="00", seconds=6.3, ext="mp3")
    assert [e["Status"] for e in entries] == [1, 1]
    data = cos_env.get_object_bytes(keys.final)
    assert b"ID3" not in data  # the HLS timestamp tags stay in the segments
    path = tmp_path / "final.mp3"
    path.write_bytes(data)
    found = probe(path)
    assert abs(found.duration_s - 6.3) <= 0.05 and abs(found.audio_s - 6.3) <= 0.05


def test_assembly_copies_big_segments_inside_cos_and_sends_small_ones(bucket, prefix, cos_env, monkeypatch):
    sizes = [300_000, 1_200_000, 1_300_000, 200_000, 900_000, 1_100_000, 50_000]
    blobs = [os.urandom(n) for n in sizes]
    for n, blob in enumerate(blobs):
        bucket.put_bytes(f"{prefix}src/{n:05d}.m4s", blob)
    copied: list[str] = []
    real = bucket.copy_part
    monkeypatch.setattr(bucket, "copy_part", lambda *a, **k: copied.append(a[3]) or real(*a, **k))
    pieces = [Piece(f"{prefix}src/{n:05d}.m4s", 0, s) for n, s in enumerate(sizes)]
    size = assemble(bucket, f"{prefix}out.mp4", pieces, header=b"HEAD")
    assert cos_env.get_object_bytes(f"{prefix}out.mp4") == b"HEAD" + b"".join(blobs)
    assert size == 4 + sum(sizes)
    # Part 1 = header + 300 KB + 1.2 MB (sent); 1.3 MB copied; 200 K + 900 K sent; 1.1 MB copied; last sent.
    assert copied == [f"{prefix}src/00002.m4s", f"{prefix}src/00005.m4s"]


def test_cos_down_for_a_while_the_segments_wait_and_land(tmp_path, bucket, prefix, cos_env):
    cos_env.fail_next(12, when="PUT " + prefix)  # more than one PUT's retries: an outage
    keys, out, entries = _record(tmp_path, bucket, prefix, "hls", seconds=5)
    assert [e["Status"] for e in entries] == [1]
    assert len(read_playlist(cos_env.get_object_bytes(keys.playlist).decode())) == 3


def test_a_segment_cos_refuses_is_kept_and_reported(tmp_path, bucket, prefix, cos_env):
    def between(i, seg, out):
        if i == 50:
            cos_env.deny()  # AccessDenied from now on: not retryable
    try:
        keys, out, entries = _record(tmp_path, bucket, prefix, "mp4", seconds=5, between=between)
    finally:
        cos_env.allow()
    [entry] = entries
    assert entry["Status"] == 0 and entry["LocalPath"]
    assert "AccessDenied" in entry["Message"] and "kept" in entry["Message"]
    kept = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert kept and kept == sorted(path.name for path, _ in out.failed.values())  # every refused one, on disk
    assert str(tmp_path / "local") in entry["LocalPath"]


@pytest.mark.parametrize("given,expected", [(None, "mp4"), ("", "mp4"), ("HLS", "hls"), ("hls+mp4", "hls+mp4"),
                                            (0, "hls"), (1, "hls+mp4"), (3, "mp4"), ("3", "mp4")])
def test_output_format_spellings(given, expected):
    assert output_format(given) == expected


@pytest.mark.parametrize("bad", ["flv", 2, True, "mp3"])
def test_unknown_output_format_names_the_field(bad):
    with pytest.raises(ValueError, match="OutputFormat"):
        output_format(bad)
