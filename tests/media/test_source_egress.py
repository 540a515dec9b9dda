"""Every connection a source makes is checked where it is made: each redirect hop, each HLS
variant, key and segment, RTMP, on the address actually connected; and local files only under
LOCAL_SOURCE_DIRS. Only 127.0.0.1/32 is allowed here: 127.0.0.2 (loopback too, on Linux) stands for
an internal host such as the metadata service, and must never see a request."""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from emulator.mediaserver import MediaHTTPServer, RtmpServer
from shared.media.source import MediaSource, SourceError
from tests.media.helpers import pull, strictly_increasing

OTHER = "127.0.0.2"


@pytest.fixture
def only_127_0_0_1(monkeypatch):
    monkeypatch.setenv("SOURCE_ALLOWLIST", "127.0.0.1/32")


@pytest.fixture
def internal(clips):
    """The same clips served on 127.0.0.2: a host the rule refuses."""
    server = MediaHTTPServer(clips.root, host=OTHER).start()
    yield server
    server.stop()


def _hls_copy(clips, name: str, segment_url) -> Path:
    """A copy of the HLS VOD's playlist, named `name` under the clip root, whose segment lines are
    segment_url(file name)."""
    vod = clips.get("hls") / "index.m3u8"
    lines = [segment_url(line) if line.endswith(".ts") else line for line in vod.read_text().splitlines()]
    out = clips.root / "egress" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


# --- HTTP redirects ---------------------------------------------------------------------------------


def test_a_redirect_to_a_refused_host_is_refused_before_connecting(clips, media_http, internal, only_127_0_0_1):
    clips.get("long.mp4")
    target = internal.url("long.mp4")
    with pytest.raises(SourceError) as e:
        MediaSource(media_http.url("redirect?to=" + quote(target)), timeout_s=3)
    msg = str(e.value)
    assert f"redirects to {target}" in msg and "loopback" in msg and "SOURCE_ALLOWLIST" in msg
    assert internal.all_requests() == []


def test_redirects_between_allowed_addresses_are_followed_with_ranges(clips, media_http, only_127_0_0_1):
    clips.get("moov_at_end.mp4")
    with MediaSource(media_http.url("redirect?to=/moov_at_end.mp4")) as src:
        assert len(pull(src).video) == 50
    ranges = [r for r in media_http.requests("moov_at_end.mp4") if r]
    assert any(int(r.split("=")[1].split("-")[0]) > 0 for r in ranges), ranges


def test_a_redirected_playlist_resolves_its_segments_where_it_went(clips, media_http, only_127_0_0_1):
    clips.get("hls")
    with MediaSource(media_http.url("redirect?to=/hls/index.m3u8")) as src:
        got = pull(src)
    assert 148 <= len(got.video) <= 151 and strictly_increasing(got.video_pts)


# --- HLS parts --------------------------------------------------------------------------------------


def test_hls_segments_on_a_refused_host_are_never_requested(clips, media_http, internal, only_127_0_0_1):
    _hls_copy(clips, "offsite.m3u8", lambda seg: internal.url(f"hls/{seg}"))
    with pytest.raises(SourceError) as e:
        with MediaSource(media_http.url("egress/offsite.m3u8"), timeout_s=3) as src:
            pull(src)
    msg = str(e.value)
    assert f"refers to {internal.url('hls/seg_0.ts')}" in msg and "SOURCE_ALLOWLIST" in msg, msg
    assert internal.all_requests() == []


def test_an_hls_variant_on_a_refused_host_is_never_requested(clips, media_http, internal, only_127_0_0_1):
    clips.get("hls_master")
    master = clips.root / "egress" / "master_offsite.m3u8"
    master.parent.mkdir(exist_ok=True)
    master.write_text("#EXTM3U\n"
                      f"#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=160x120\n{media_http.url('hls_master/low/index.m3u8')}\n"
                      f"#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=320x240\n{internal.url('hls_master/high/index.m3u8')}\n")
    with pytest.raises(SourceError, match="SOURCE_ALLOWLIST"):
        with MediaSource(media_http.url("egress/master_offsite.m3u8"), timeout_s=3) as src:
            pull(src)
    assert internal.all_requests() == []


def _encrypted_hls(clips, name: str, key_uri: str) -> tuple[Path, bytes]:
    """The HLS VOD with AES-128 segments (PKCS#7, IV from the sequence number, as the spec says)."""
    from Crypto.Cipher import AES

    key = bytes(range(16))
    src = clips.get("hls")
    out = clips.root / name
    out.mkdir(exist_ok=True)
    lines: list[str] = []
    for line in (src / "index.m3u8").read_text().splitlines():
        if line.startswith("#EXTINF") and not any(x.startswith("#EXT-X-KEY") for x in lines):
            lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{key_uri}"')
        if line.endswith(".ts"):
            seq = int(line[len("seg_"):-len(".ts")])
            data = (src / line).read_bytes()
            pad = 16 - len(data) % 16
            iv = seq.to_bytes(16, "big")
            (out / line).write_bytes(AES.new(key, AES.MODE_CBC, iv).encrypt(data + bytes([pad]) * pad))
        lines.append(line)
    (out / "index.m3u8").write_text("\n".join(lines) + "\n")
    (out / "key.bin").write_bytes(key)
    return out, key


def test_aes128_hls_plays_with_its_key_read_through_the_same_checks(clips, media_http, only_127_0_0_1):
    _encrypted_hls(clips, "hls_aes", "key.bin")
    with MediaSource(media_http.url("hls_aes/index.m3u8")) as src:
        assert src.info.passthrough
        got = pull(src)
    assert 148 <= len(got.video) <= 151 and 298 <= len(got.audio) <= 302
    assert src.skipped == 0 and strictly_increasing(got.video_pts)
    assert "/hls_aes/key.bin" in media_http.all_requests()


def test_an_hls_key_on_a_refused_host_is_never_requested(clips, media_http, internal, only_127_0_0_1):
    _encrypted_hls(clips, "hls_aes_offsite_key", internal.url("hls_aes_offsite_key/key.bin"))
    with pytest.raises(SourceError) as e:
        with MediaSource(media_http.url("hls_aes_offsite_key/index.m3u8"), timeout_s=3) as src:
            pull(src)
    assert "key.bin" in str(e.value) and "SOURCE_ALLOWLIST" in str(e.value)
    assert internal.all_requests() == []


def test_a_network_playlist_cannot_name_a_local_file(clips, media_http, only_127_0_0_1):
    clip = clips.get("long.mp4")
    _hls_copy(clips, "local_segment.m3u8", lambda seg: Path(clip).as_uri())
    with pytest.raises(SourceError, match="local file"):
        with MediaSource(media_http.url("egress/local_segment.m3u8"), timeout_s=3) as src:
            pull(src)


# --- DNS: resolved once, connected to what was checked ------------------------------------------------


def test_a_name_is_connected_to_the_address_that_was_checked(clips, media_http, fake_dns, only_127_0_0_1):
    """FFmpeg never resolves the name itself (it could not: the name exists only in this hook)."""
    clips.get("long.mp4")
    fake_dns["media.egress.test"] = ["127.0.0.1"]
    url = media_http.url("long.mp4").replace("127.0.0.1", "media.egress.test")
    with MediaSource(url) as src:
        got = pull(src, start_s=3.0)
    assert 74 <= len(got.video) <= 76
    assert fake_dns.lookups["media.egress.test"] >= 1


def test_a_dns_answer_that_changes_after_the_check_leads_nowhere(clips, media_http, fake_dns, only_127_0_0_1):
    clips.get("moov_at_end.mp4")
    internal = MediaHTTPServer(clips.root, host=OTHER, port=media_http.port).start()
    try:
        fake_dns["rebind.egress.test"] = ["127.0.0.1", OTHER]  # allowed at first, then internal
        url = media_http.url("moov_at_end.mp4").replace("127.0.0.1", "rebind.egress.test")
        with pytest.raises(SourceError) as e:
            with MediaSource(url, timeout_s=3) as src:  # moov at the end: a second, ranged request
                pull(src)
        assert OTHER in str(e.value) and "SOURCE_ALLOWLIST" in str(e.value)
        assert internal.all_requests() == []
    finally:
        internal.stop()


# --- RTMP --------------------------------------------------------------------------------------------


def test_rtmp_connects_to_the_checked_address_and_keeps_the_name_in_tcurl(clips, fake_dns, only_127_0_0_1):
    server = RtmpServer(clips.get("live.flv"), speed=4).start()
    fake_dns["rtmp.egress.test"] = ["127.0.0.1"]
    try:
        with MediaSource(server.url.replace("127.0.0.1", "rtmp.egress.test"), timeout_s=5) as src:
            got = pull(src)
    finally:
        server.stop()
    assert server.error is None and server.played == ["test"]
    assert server.tc_urls == [f"rtmp://rtmp.egress.test:{server.port}/live"]
    assert len(got.video) >= 98


def test_rtmp_to_a_name_for_a_refused_address_is_refused_before_connecting(fake_dns, only_127_0_0_1):
    listener = socket.socket()
    listener.bind((OTHER, 0))
    listener.listen(1)
    listener.settimeout(0.2)
    fake_dns["internal.egress.test"] = [OTHER]
    try:
        with pytest.raises(SourceError, match="SOURCE_ALLOWLIST"):
            MediaSource(f"rtmp://internal.egress.test:{listener.getsockname()[1]}/live/x", timeout_s=2)
        with pytest.raises(socket.timeout):
            listener.accept()  # nobody connected
    finally:
        listener.close()


# --- local files ---------------------------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path, monkeypatch, clips):
    """`allowed/` (LOCAL_SOURCE_DIRS) and `other/` (another caller's files), each with a clip."""
    allowed, other = tmp_path / "allowed", tmp_path / "other" / "record_someone"
    for d in (allowed, other):
        d.mkdir(parents=True)
        shutil.copy(clips.get("long.mp4"), d / "clip.mp4")
    monkeypatch.setenv("LOCAL_SOURCE_DIRS", str(allowed))
    return allowed, other


def test_a_local_file_under_local_source_dirs_plays(dirs):
    allowed, _ = dirs
    for src in (str(allowed / "clip.mp4"), (allowed / "clip.mp4").as_uri()):
        with MediaSource(src) as s:
            assert len(pull(s).video) == 150


@pytest.mark.parametrize("how", ["path", "file_url", "dotdot", "symlink", "missing"])
def test_a_local_file_elsewhere_is_refused_and_its_existence_not_told(dirs, how):
    allowed, other = dirs
    src = {
        "path": str(other / "clip.mp4"),
        "file_url": (other / "clip.mp4").as_uri(),
        "dotdot": str(allowed / ".." / "other" / "record_someone" / "clip.mp4"),
        "symlink": str(allowed / "link.mp4"),
        "missing": str(other / "nothing-here.mp4"),
    }[how]
    if how == "symlink":
        os.symlink(other / "clip.mp4", allowed / "link.mp4")
    with pytest.raises(SourceError) as e:
        MediaSource(src)
    assert "LOCAL_SOURCE_DIRS" in str(e.value) and "not found" not in str(e.value)


def test_no_local_file_is_read_when_local_source_dirs_is_empty(dirs, monkeypatch):
    allowed, _ = dirs
    monkeypatch.setenv("LOCAL_SOURCE_DIRS", "")
    with pytest.raises(SourceError, match="LOCAL_SOURCE_DIRS names no directory"):
        MediaSource(str(allowed / "clip.mp4"))


def test_a_local_playlist_cannot_reach_outside_local_source_dirs(dirs, clips):
    allowed, other = dirs
    hls = clips.get("hls")
    for seg in hls.glob("seg_*.ts"):
        shutil.copy(seg, (other if seg.name == "seg_3.ts" else allowed) / seg.name)
    lines = [str(other / line) if line == "seg_3.ts" else line for line in (hls / "index.m3u8").read_text().splitlines()]
    (allowed / "index.m3u8").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match="LOCAL_SOURCE_DIRS"):
        with MediaSource(str(allowed / "index.m3u8")) as src:
            pull(src)


def test_an_https_source_is_read_from_the_checked_address_with_tls_to_its_name(clips, fake_dns, tmp_path,
                                                                               monkeypatch, only_127_0_0_1):
    import ssl

    import shared.media.netio as netio
    from tests.fakes.tls import self_signed, server_context

    clips.get("moov_at_end.mp4")
    cert, key = self_signed(tmp_path, "tls.egress.test")
    sni: list = []
    server = MediaHTTPServer(clips.root)
    server._httpd.socket = server_context(cert, key, sni).wrap_socket(server._httpd.socket, server_side=True)
    server.start()
    monkeypatch.setattr(netio, "_TLS", ssl.create_default_context(cafile=str(cert)))  # trust this one CA
    fake_dns["tls.egress.test"] = ["127.0.0.1"]
    try:
        with MediaSource(f"https://tls.egress.test:{server.port}/moov_at_end.mp4") as src:
            assert len(pull(src).video) == 50
        with pytest.raises(SourceError, match="TLS"):  # the certificate names tls.egress.test, not this
            MediaSource(f"https://127.0.0.1:{server.port}/moov_at_end.mp4", timeout_s=3)
    finally:
        server.stop()
    assert sni.count("tls.egress.test") >= 2  # the first request and the Range one for the moov at the end


def test_a_refused_segment_mid_stream_ends_the_source_with_the_refusal(clips, media_http, internal, only_127_0_0_1):
    """The first segments are allowed (the source opens and plays), a later one is not."""
    _hls_copy(clips, "later_offsite.m3u8",
              lambda seg: internal.url(f"hls/{seg}") if seg in ("seg_4.ts", "seg_5.ts") else media_http.url(f"hls/{seg}"))
    got = []
    with MediaSource(media_http.url("egress/later_offsite.m3u8"), timeout_s=3) as src:
        with pytest.raises(SourceError) as e:
            for f in src.frames():
                got.append(f)
    assert f"refers to {internal.url('hls/seg_4.ts')}" in str(e.value) and "SOURCE_ALLOWLIST" in str(e.value)
    assert len(got) > 100  # what came before was delivered
    assert internal.all_requests() == []


def test_a_segment_that_stalls_is_skipped_as_ffmpeg_would(clips, media_http):
    """A part the demuxer found that fails while read ends early (with a warning); the source goes on."""
    _hls_copy(clips, "one_stalls.m3u8",
              lambda seg: media_http.url(f"stallbody/hls/{seg}") if seg == "seg_2.ts" else media_http.url(f"hls/{seg}"))
    with MediaSource(media_http.url("egress/one_stalls.m3u8"), timeout_s=1) as src:
        got = pull(src)
    assert got.video_pts[-1] >= 5500  # the segments after the stalled one arrived
    assert strictly_increasing(got.video_pts)
