"""MediaSource over the network: HTTP files with Range, HLS VOD and live, HTTP-FLV, RTMP, and the
ways a network source fails (404, refused, stalled), each naming the source without its secrets."""
from __future__ import annotations

import time

import pytest

from emulator.mediaserver import RtmpServer
from shared.media.source import MediaSource, SourceError, VideoPlan
from shared.room.base import H264Frame
from tests.media.helpers import decode_h264, pull, strictly_increasing


@pytest.mark.parametrize("name, passthrough", [
    ("moov_at_end.mp4", True), ("clip.flv", True), ("clip.mkv", True), ("clip.webm", False),
    ("clip.mov", True), ("audio_only.mp3", False), ("audio_only.m4a", False),
])
def test_http_files(clips, media_http, name, passthrough):
    clips.get(name)
    with MediaSource(media_http.url(name)) as src:
        assert not src.info.is_live and src.info.duration_s == pytest.approx(2.0, abs=0.1)
        assert src.info.passthrough is passthrough
        got = pull(src)
    assert 98 <= len(got.audio) <= 103
    if src.info.has_video:
        assert 49 <= len(got.video) <= 51
    assert strictly_increasing(got.audio_pts) and strictly_increasing(got.video_pts)


def test_moov_at_end_is_read_with_range_requests(clips, media_http):
    clips.get("moov_at_end.mp4")
    with MediaSource(media_http.url("moov_at_end.mp4")) as src:
        assert len(pull(src).video) == 50
    ranges = [r for r in media_http.requests("moov_at_end.mp4") if r]
    assert any(int(r.split("=")[1].split("-")[0]) > 0 for r in ranges), ranges


def test_http_seek_uses_ranges(clips, media_http):
    clips.get("long.mp4")
    with MediaSource(media_http.url("long.mp4"), video=VideoPlan(bitrate_kbps=600)) as src:
        got = pull(src, start_s=4.5)
    assert 4500 <= got.video_pts[0] < 4540 and got.audio_pts[0] == 4500
    assert 36 <= len(got.video) <= 38


def test_hls_vod(clips, media_http):
    clips.get("hls")
    with MediaSource(media_http.url("hls/index.m3u8")) as src:
        assert not src.info.is_live and src.info.duration_s == pytest.approx(6.0, abs=0.2)
        assert src.info.passthrough
        got = pull(src)
        seeked = pull(src, start_s=3.5)
    assert 148 <= len(got.video) <= 151 and 298 <= len(got.audio) <= 302
    assert got.video_pts[0] < 60 and got.video[0].key
    assert strictly_increasing(got.video_pts) and strictly_increasing(got.audio_pts)
    assert seeked.video_pts[0] == pytest.approx(3000, abs=40) and seeked.video[0].key


def test_hls_live_playlist_that_grows(clips, media_http):
    clips.get("hls")
    # the playlist lists 3 segments at first and one more each second; read 4.5 s of media
    with MediaSource(media_http.url("live/hls.m3u8"), timeout_s=5) as src:
        assert src.info.is_live and src.info.duration_s is None
        got = pull(src, limit=int(4.5 * 75))
    assert strictly_increasing(got.video_pts) and strictly_increasing(got.audio_pts)
    assert got.video_pts[-1] - got.video_pts[0] >= 4000
    assert isinstance(got.video[0], H264Frame) and got.video[0].key


def test_http_flv_live(clips, media_http):
    clips.get("live.flv")
    with MediaSource(media_http.url("flvlive/live.flv")) as src:
        assert src.info.is_live and src.info.duration_s is None
        got = pull(src)  # ends when the server closes the stream
    assert 98 <= len(got.video) <= 101 and 198 <= len(got.audio) <= 202
    assert strictly_increasing(got.video_pts)


def test_rtmp(clips):
    server = RtmpServer(clips.get("live.flv"), speed=4).start()
    try:
        with MediaSource(server.url, timeout_s=5) as src:
            assert src.info.is_live and src.info.passthrough
            assert (src.info.width, src.info.height) == (160, 120)
            got = pull(src)
    finally:
        server.stop()
    assert server.error is None and server.played == ["test"]
    assert 98 <= len(got.video) <= 101 and 198 <= len(got.audio) <= 202
    assert got.video[0].key and strictly_increasing(got.video_pts)


def test_404_names_source_without_secrets(media_http):
    url = media_http.url("missing.mp4").replace("http://", "http://user:hunter2@") + "?token=s3cret"
    with pytest.raises(SourceError) as e:
        MediaSource(url)
    msg = str(e.value)
    assert "HTTP 404" in msg and media_http.url("missing.mp4") in msg
    assert "hunter2" not in msg and "s3cret" not in msg and "user" not in msg


def test_connection_refused(media_http):
    from tests.media_fixtures import free_port

    url = f"http://127.0.0.1:{free_port()}/a.mp4"
    with pytest.raises(SourceError) as e:
        MediaSource(url, timeout_s=3)
    assert url in str(e.value) and "connection refused" in str(e.value)


def test_not_media_over_http(clips, media_http):
    clips.get("not_media.mp4")
    with pytest.raises(SourceError, match="not a media file"):
        MediaSource(media_http.url("not_media.mp4"))


def test_stalled_server_fails_within_timeout(media_http):
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        MediaSource(media_http.url("stall/a.mp4"), timeout_s=1)
    assert time.monotonic() - t0 < 10  # bounded, not a hang
    assert media_http.url("stall/a.mp4") in str(e.value) and "timed out" in str(e.value)


def test_stall_mid_body_fails_within_timeout(clips, media_http, monkeypatch):
    clips.get("long.mp4")
    monkeypatch.setenv("SOURCE_TIMEOUT_SECONDS", "1")
    src = MediaSource(media_http.url("stallbody/long.mp4"))
    got = []
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        for f in src.frames():
            got.append(f)
    src.close()
    assert time.monotonic() - t0 < 10
    assert "timed out" in str(e.value)
    assert got, "what arrived before the stall was delivered"


def test_http_reconnects_after_a_dropped_connection(clips, media_http):
    clips.get("long.mp4")
    with MediaSource(media_http.url("drop/long.mp4"), timeout_s=5) as src:
        got = pull(src)
        assert src.skipped == 0
    assert len(got.video) == 150 and 299 <= len(got.audio) <= 301


def test_hls_live_that_stops_growing_ends_in_bounded_time(clips):
    from emulator.mediaserver import MediaHTTPServer

    clips.get("hls")
    server = MediaHTTPServer(clips.root, live_speed=8).start()  # all 6 segments listed within 0.4 s
    try:
        t0 = time.monotonic()
        with MediaSource(server.url("live/hls.m3u8"), timeout_s=1.5) as src:
            got = pull(src)  # FFmpeg's HLS reader gives up on a playlist that stops growing
    finally:
        server.stop()
    assert time.monotonic() - t0 < 20
    assert len(got.video) >= 140 and strictly_increasing(got.video_pts)


def test_rtmp_server_that_never_answers_fails_within_timeout():
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the kernel accepts the connection; nobody ever answers the handshake
    url = f"rtmp://127.0.0.1:{silent.getsockname()[1]}/live/x"
    t0 = time.monotonic()
    try:
        with pytest.raises(SourceError) as e:
            MediaSource(url, timeout_s=1)
    finally:
        silent.close()
    assert time.monotonic() - t0 < 10
    assert url in str(e.value) and "timed out" in str(e.value)


def test_hls_master_playlist_takes_the_largest_variant(clips, media_http):
    clips.get("hls_master")
    with MediaSource(media_http.url("hls_master/master.m3u8")) as src:
        assert (src.info.width, src.info.height) == (320, 240)
        got = pull(src)
    assert 74 <= len(got.video) <= 76 and strictly_increasing(got.video_pts)
    assert len(decode_h264(got.video)) == len(got.video)
    assert {(p.width, p.height) for p in decode_h264(got.video[:5])} == {(320, 240)}
    fetched = [p for p, _ in media_http._httpd.requests if p.startswith("/hls_master/")]
    assert any("/high/seg_" in p for p in fetched)
    # the other variant is only probed at open (its first segments), never read on
    assert "/hls_master/high/seg_2.ts" in fetched and "/hls_master/low/seg_2.ts" not in fetched
