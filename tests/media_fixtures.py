"""Media made by PyAV, and servers that hand it out on 127.0.0.1 (reusable by every test suite).

- `make_clip(path, ...)`: a short test pattern + tone in any container/codec mix the project meets
  (H.264 with or without B-frames, odd sizes, variable frame rate, 5.1, 8 kHz mono, audio only...).
- `Clips`: a per-session cache of named clips (`clips.get("tone_pattern")`); the `clips` fixture.
- `MediaHTTPServer`: files with Range requests, a stalling route, a live HLS playlist that grows,
  an HTTP-FLV live stream; 404 for anything else. The `media_http` fixture.
- `RtmpServer`: FFmpeg as an RTMP server (listen mode) playing a clip to the first client.

Import the fixtures into a conftest with `from tests.media_fixtures import clips, media_http  # noqa`.
"""
from __future__ import annotations

import http.server
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import pytest
from av.filter import Graph

# --- clips ---------------------------------------------------------------------------------------


def _pull_all(graph: Graph) -> list:
    out = []
    while True:
        try:
            out.append(graph.pull())
        except (av.error.EOFError, av.error.BlockingIOError, EOFError):
            return out


def pattern_frames(width: int, height: int, fps: int, duration: float) -> list[av.VideoFrame]:
    """FFmpeg's testsrc2 (moving pattern with a frame counter), yuv420p."""
    g = Graph()
    src = g.add("testsrc2", size=f"{width + width % 2}x{height + height % 2}", rate=str(fps),
                duration=str(duration))
    chain = [src]
    if width % 2 or height % 2:
        chain.append(g.add("scale", w=str(width), h=str(height)))
    chain.append(g.add("format", pix_fmts="yuv420p"))
    chain.append(g.add("buffersink"))
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    g.configure()
    return _pull_all(g)


def tone_frames(rate: int, layout: str, duration: float, fmt: str = "fltp") -> list[av.AudioFrame]:
    """A different sine per channel (440 Hz, 550 Hz, ...) so a downmix is audible."""
    n = av.AudioLayout(layout).nb_channels
    exprs = "|".join(f"0.5*sin({440 + 110 * i}*2*PI*t)" for i in range(n))
    g = Graph()
    src = g.add("aevalsrc", exprs=exprs, sample_rate=str(rate), channel_layout=layout,
                duration=str(duration), nb_samples="1024")
    fm = g.add("aformat", sample_fmts=fmt)
    sink = g.add("abuffersink")
    src.link_to(fm)
    fm.link_to(sink)
    g.configure()
    return _pull_all(g)


VIDEO_CODECS = {
    # name: (encoder, options)
    "h264": ("libx264", {"preset": "ultrafast", "profile": "baseline", "tune": "zerolatency"}),
    "h264-bframes": ("libx264", {"preset": "veryfast", "profile": "main",
                                 "x264-params": "bframes=2:b-adapt=0:b-pyramid=none"}),
    "mpeg4": ("mpeg4", {}),
    "vp8": ("libvpx", {"deadline": "realtime", "cpu-used": "8"}),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"}),
}
AUDIO_CODECS = {"aac": ("aac", "fltp"), "mp3": ("libmp3lame", "s16p"), "opus": ("libopus", "s16")}


def make_clip(
    path: str | os.PathLike,
    *,
    duration: float = 2.0,
    video: str | None = "h264",
    width: int = 160,
    height: int = 120,
    fps: int = 25,
    gop: int = 25,
    audio: str | None = "aac",
    rate: int = 48000,
    layout: str = "stereo",
    fmt: str | None = None,
    faststart: bool = True,
    vfr: bool = False,
    options: dict[str, str] | None = None,
) -> Path:
    """Write a test pattern + tone clip; the container comes from the suffix unless `fmt` is given.

    vfr: frame intervals cycle through 20, 40, 60, 80 ms (timestamps in ms).
    faststart: moov at the front for mp4/mov/m4a (False leaves it at the end, FFmpeg's default).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = dict(options or {})
    if faststart and path.suffix in (".mp4", ".mov", ".m4a"):
        opts.setdefault("movflags", "+faststart")
    out = av.open(str(path), "w", format=fmt, options=opts)
    items: list[tuple[float, str, object]] = []
    vs = as_ = None
    if video:
        enc, vopts = VIDEO_CODECS[video]
        vs = out.add_stream(enc, rate=fps, options=dict(vopts))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.gop_size = gop
        if vfr:
            vs.codec_context.time_base = Fraction(1, 1000)
            vs.time_base = Fraction(1, 1000)
        frames = pattern_frames(width, height, fps, duration)
        t_ms = 0
        for i, f in enumerate(frames):
            f.pict_type = av.video.frame.PictureType.NONE
            if vfr:
                f.pts, f.time_base = t_ms, Fraction(1, 1000)
                items.append((t_ms / 1000, "v", f))
                t_ms += (20, 40, 60, 80)[i % 4]
                if t_ms >= duration * 1000:
                    break
            else:
                f.pts, f.time_base = i, Fraction(1, fps)
                items.append((i / fps, "v", f))
    if audio:
        enc, sfmt = AUDIO_CODECS[audio]
        as_ = out.add_stream(enc, rate=rate)
        as_.layout = layout
        as_.format = sfmt
        t = 0
        for f in tone_frames(rate, layout, duration, sfmt):
            f.pts, f.time_base = t, Fraction(1, rate)
            items.append((t / rate, "a", f))
            t += f.samples
    items.sort(key=lambda x: (x[0], x[1]))
    for _, kind, f in items:
        out.mux((vs if kind == "v" else as_).encode(f))
    for s in (vs, as_):
        if s is not None:
            out.mux(s.encode(None))
    out.close()
    return path


def make_hls(directory: str | os.PathLike, *, duration: float = 6.0, segment_s: int = 1, **clip) -> Path:
    """An HLS VOD (index.m3u8 + seg_N.ts), H.264 + AAC, key frames on segment boundaries."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fps = clip.get("fps", 25)
    return make_clip(
        directory / "index.m3u8", duration=duration, fmt="hls", gop=fps * segment_s, faststart=False,
        options={"hls_time": str(segment_s), "hls_playlist_type": "vod", "hls_list_size": "0",
                 "hls_segment_filename": str(directory / "seg_%d.ts")},
        **clip)


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def corrupt_middle(src: Path, dst: Path, spans: int = 6, span: int = 300) -> Path:
    """Overwrite a few short spans in the middle of the media data with garbage."""
    data = bytearray(src.read_bytes())
    start = data.find(b"mdat")
    start = start if start > 0 else len(data) // 4
    end = len(data) if start > len(data) // 2 else len(data)
    for i in range(spans):
        at = start + (end - start) * (35 + 5 * i) // 100
        data[at:at + span] = bytes((i * 37 + j * 101) % 251 for j in range(span))
    dst.write_bytes(bytes(data))
    return dst


CLIP_RECIPES: dict[str, dict] = {
    # name: make_clip arguments (the file name's suffix picks the container)
    "tone_pattern.mp4": {},
    "bframes.mp4": {"video": "h264-bframes"},
    "stereo44k.mp4": {"rate": 44100, "layout": "stereo"},
    "mono8k.mp4": {"rate": 8000, "layout": "mono"},
    "surround51.mp4": {"layout": "5.1"},
    "audio_only.mp3": {"video": None, "audio": "mp3", "rate": 44100},
    "audio_only.m4a": {"video": None},
    "video_only.mp4": {"audio": None},
    "odd_size.mp4": {"video": "mpeg4", "width": 321, "height": 241},
    "vfr.mkv": {"vfr": True},
    "moov_at_end.mp4": {"faststart": False},
    "clip.flv": {"audio": "aac", "rate": 44100},
    "clip.mkv": {},
    "clip.webm": {"video": "vp8", "audio": "opus"},
    "clip.mov": {},
    "long.mp4": {"duration": 6.0, "gop": 25},
    "live.flv": {"duration": 4.0, "options": {"flvflags": "no_duration_filesize"}},
}


class Clips:
    """Named clips made on first use, once per session."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def get(self, name: str) -> Path:
        with self._lock:
            path = self.root / name
            if path.exists():
                return path
            if name in CLIP_RECIPES:
                return make_clip(path, **CLIP_RECIPES[name])
            if name == "truncated.mp4":
                return truncate(self._get("tone_pattern.mp4"), path, 0.6)
            if name == "truncated_moov_at_end.mp4":
                return truncate(self._get("moov_at_end.mp4"), path, 0.8)
            if name == "corrupt_frames.mp4":
                return corrupt_middle(self._get("long.mp4"), path)
            if name == "not_media.mp4":
                path.write_text("this is a text file, not a video\n" * 200)
                return path
            if name == "subtitles_only.srt":
                path.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n2\n00:00:01,000 --> 00:00:02,000\nworld\n")
                return path
            if name == "unknown_codec.mp4":
                data = self._get("tone_pattern.mp4").read_bytes().replace(b"avc1", b"zzzz")
                path.write_bytes(data)
                return path
            if name == "hls":
                make_hls(path)
                return path
            raise KeyError(f"no clip named {name!r}")

    def _get(self, name: str) -> Path:
        self._lock.release()
        try:
            return self.get(name)
        finally:
            self._lock.acquire()


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    return Clips(tmp_path_factory.mktemp("clips"))


# --- HTTP ----------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        path = self.path.split("?", 1)[0]
        root: Path = self.server.root
        try:
            if path.startswith("/stall/"):
                return self._stall()
            if path.startswith("/stallbody/"):
                return self._stall_body(root / path[len("/stallbody/"):])
            if path.startswith("/live/") and path.endswith(".m3u8"):
                return self._live_playlist(root / path[len("/live/"):-len(".m3u8")])
            if path.startswith("/live/"):
                return self._file(root / path[len("/live/"):], head)
            if path.startswith("/flvlive/"):
                return self._flv_live(root / path[len("/flvlive/"):])
            return self._file(root / path.lstrip("/"), head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _not_found(self) -> None:
        body = b"not found\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, file: Path, head: bool) -> None:
        if not file.is_file():
            return self._not_found()
        size = file.stat().st_size
        start, end = 0, size - 1
        m = re.match(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if head:
            return
        with open(file, "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(65536, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _stall(self) -> None:
        # Accept the request and never answer (until the server stops, at most 60 s).
        self.server.stopping.wait(60)
        self.close_connection = True

    def _stall_body(self, file: Path) -> None:
        if not file.is_file():
            return self._not_found()
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 3])
        self.wfile.flush()
        self.server.stopping.wait(60)
        self.close_connection = True

    def _live_playlist(self, directory: Path) -> None:
        """A live window over an HLS VOD's segments that grows with time, without ENDLIST."""
        vod = directory / "index.m3u8"
        if not vod.is_file():
            return self._not_found()
        lines = vod.read_text().splitlines()
        segments = []
        target = 1
        for i, line in enumerate(lines):
            if line.startswith("#EXT-X-TARGETDURATION:"):
                target = int(line.split(":")[1])
            if line.startswith("#EXTINF:"):
                segments.append((line, lines[i + 1]))
        started = self.server.live_started.setdefault(str(directory), time.monotonic())
        elapsed = time.monotonic() - started
        available = min(len(segments), 3 + int(elapsed / max(target, 1) * self.server.live_speed))
        first = max(0, available - 4)
        body = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
                f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for inf, uri in segments[first:available]:
            body += [inf, f"{directory.name}/{uri}"]
        data = ("\n".join(body) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.apple.mpegurl")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _flv_live(self, file: Path) -> None:
        """An FLV file sent as a stream: no Content-Length, no Range, a little faster than real time."""
        if not file.is_file():
            return self._not_found()
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/x-flv")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = 16384
        for i in range(0, len(data), chunk):
            if self.server.stopping.is_set():
                return
            self.wfile.write(data[i:i + chunk])
            self.wfile.flush()
            time.sleep(0.02)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    stopping: threading.Event
    live_started: dict[str, float]
    live_speed: float


class MediaHTTPServer:
    """Serves `root` on 127.0.0.1 with Range requests.

    Routes: /NAME (a file; 404 when missing), /stall/ANY (never answers), /stallbody/NAME (a third
    of the body, then nothing), /live/DIR.m3u8 (a growing live playlist over DIR's HLS VOD; the
    segments at /live/DIR/seg_N.ts), /flvlive/NAME (an FLV streamed without a length).
    """

    def __init__(self, root: str | os.PathLike, live_speed: float = 1.0):
        self.root = Path(root)
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.root = self.root
        self._httpd.stopping = threading.Event()
        self._httpd.live_started = {}
        self._httpd.live_speed = live_speed
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="media-http")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> "MediaHTTPServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture(scope="session")
def media_http(clips: Clips) -> Iterator[MediaHTTPServer]:
    """An HTTP server over the session's clip directory (clips are made on first `clips.get`)."""
    server = MediaHTTPServer(clips.root).start()
    yield server
    server.stop()


# --- RTMP ----------------------------------------------------------------------------------------


@dataclass
class RtmpServer:
    """FFmpeg listening as an RTMP server; plays `clip` (H.264 + AAC) to the first client, in real time.

    `url` is what a client opens. The thread ends by itself: after the clip, or when nobody
    connected within `accept_timeout_s`.
    """

    clip: Path
    port: int
    stream: str = "live/test"
    accept_timeout_s: float = 10.0
    speed: float = 1.0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.url = f"rtmp://127.0.0.1:{self.port}/{self.stream}"
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rtmp-server")

    def start(self) -> "RtmpServer":
        self._thread.start()
        time.sleep(0.2)  # let it bind before a client connects
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.accept_timeout_s + 5)

    def _run(self) -> None:
        try:
            src = av.open(str(self.clip))
            out = av.open(self.url, "w", format="flv",
                          options={"listen": "1", "timeout": str(int(self.accept_timeout_s))},
                          timeout=self.accept_timeout_s + 2)
            streams = {}
            for s in (src.streams.video[:1] + src.streams.audio[:1]):
                streams[s.index] = out.add_stream_from_template(s)
            t0 = time.monotonic()
            for packet in src.demux(*src.streams.video[:1], *src.streams.audio[:1]):
                if self._stop.is_set():
                    break
                if packet.dts is None:
                    continue
                due = t0 + float(packet.dts * packet.time_base) / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
                self.sent += 1
            out.close()
            src.close()
        except BaseException as e:  # reported to the test through .error
            self.error = e


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_into(path: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dst = directory / path.name
    shutil.copy(path, dst)
    return dst
