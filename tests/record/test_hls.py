"""Playlists: the text a player reads, and that PyAV plays what the segmenter makes through them."""
from __future__ import annotations

from emulator.media import h264_units, probe
from shared.record import hls
from shared.record.segments import Segmenter

from .segmented import FPS, feed


def test_event_playlist_then_endlist():
    entries = [hls.PlaylistEntry("a/00001.m4s", 4.021), hls.PlaylistEntry("a/00002.m4s", 10.5)]
    live = hls.playlist(entries, ended=False, init_uri="a/init.mp4", at_least=10)
    assert live.splitlines() == [
        "#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:11", "#EXT-X-MEDIA-SEQUENCE:1",
        "#EXT-X-PLAYLIST-TYPE:EVENT", '#EXT-X-MAP:URI="a/init.mp4"',
        "#EXTINF:4.021,", "a/00001.m4s", "#EXTINF:10.500,", "a/00002.m4s",
    ]
    done = hls.playlist(entries, ended=True, init_uri="a/init.mp4")
    assert done.endswith("a/00002.m4s\n#EXT-X-ENDLIST\n")
    audio = hls.playlist([hls.PlaylistEntry("b/00001.mp3", 2.0)], ended=True)
    assert "EXT-X-MAP" not in audio and "#EXT-X-TARGETDURATION:2" in audio


def test_target_duration_is_the_ceiling_of_the_longest():
    assert hls.target_duration([2.0, 9.984, 10.008]) == 11
    assert hls.target_duration([10.0]) == 10
    assert hls.target_duration([], at_least=6) == 6


def test_relative_uris():
    assert hls.relative_uri("rec/a.m3u8", "rec/a/00001.m4s") == "a/00001.m4s"
    assert hls.relative_uri("a.m3u8", "a/init.mp4") == "a/init.mp4"
    assert hls.relative_uri("x/y/a.m3u8", "z/s.m4s") == "../../z/s.m4s"


def _playlist_for(segments, directory, name: str, ended: bool = True):
    media = [s for s in segments if not s.is_init]
    init = next((f"{name}/{s.path.name}" for s in segments if s.is_init), None)
    text = hls.playlist([hls.PlaylistEntry(f"{name}/{s.path.name}", s.duration_ms / 1000) for s in media],
                        ended=ended, init_uri=init)
    path = directory / f"{name}.m3u8"
    path.write_text(text)
    return path


def test_fmp4_playlist_plays_every_frame(tmp_path):
    seg = Segmenter(tmp_path / "v", "02", video_size=(160, 120), segment_s=2)
    feed(seg, 7, h264_units(7 * FPS, gop=FPS))
    found = probe(_playlist_for(seg.close(), tmp_path, "v"))
    assert found.video_frames == 7 * FPS
    assert abs(found.audio_s - 7) <= 0.15


def test_mp3_packed_audio_playlist_plays_through(tmp_path):
    """Mode 00 HLS: MP3 segments with their ID3 timestamps, played in order without a hole."""
    seg = Segmenter(tmp_path / "a", "00", segment_s=2)
    feed(seg, 6.5, [])
    segments = seg.close()
    found = probe(_playlist_for(segments, tmp_path, "a"))
    frames = sum(s.frames for s in segments)
    assert abs(found.audio_s - frames * 0.024) <= 0.03
    assert abs(found.duration_s - sum(s.duration_ms for s in segments) / 1000) <= 0.05
