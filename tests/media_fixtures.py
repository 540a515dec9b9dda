"""The tests' media fixtures (reusable by every test suite); the media is made by emulator/media.py
(make_clip, make_gray_clip, make_hls...) and served by emulator/mediaserver.py.

- `Clips`: a per-session cache of named clips (`clips.get("tone_pattern")`); the `clips` fixture.
- `media_http`: an emulator.mediaserver.MediaHTTPServer over the session's clips.

Import the fixtures into a conftest with `from tests.media_fixtures import clips, media_http  # noqa`.
"""
from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from emulator.media import (  # noqa: F401  (discontinuities is re-exported for the tests)
    corner_clip,
    corrupt_middle,
    corrupt_span,
    discontinuities,
    make_clip,
    make_gray_clip,
    make_hls,
    rotate_mp4,
    truncate,
)
from emulator.mediaserver import MediaHTTPServer

# --- clips ---------------------------------------------------------------------------------------

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
    # a 440 Hz tone over a whole number of periods: it loops without a click
    "tone440_loop.mp4": {"duration": 3.0, "layout": "mono"},
    # ~0.9 Mbit/s: 64 KiB is 0.6 s of media (the corrupt_64k.mp4 below)
    "plain10.mp4": {"duration": 10.0, "width": 320, "height": 240, "gop": 50},
    "big4000.mp4": {"duration": 0.4, "width": 4000, "height": 4000, "fps": 10, "gop": 10},
    "fast60.mp4": {"duration": 2.0, "fps": 60, "gop": 60},
}
# Clips made by their own generator: name -> (function, arguments).
CLIP_MAKERS: dict[str, tuple] = {
    "gray.mp4": (make_gray_clip, {}),
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
            if name in CLIP_MAKERS:
                maker, kwargs = CLIP_MAKERS[name]
                return maker(path, **kwargs)
            if name == "truncated.mp4":
                return truncate(self._get("tone_pattern.mp4"), path, 0.6)
            if name == "truncated_moov_at_end.mp4":
                return truncate(self._get("moov_at_end.mp4"), path, 0.8)
            if name == "corrupt_frames.mp4":
                return corrupt_middle(self._get("long.mp4"), path)
            if name == "corrupt_64k.mp4":
                return corrupt_span(self._get("plain10.mp4"), path)
            if name == "rotated90.mp4":
                return rotate_mp4(corner_clip(self.root / "corner.mp4"), path, 90)
            if name == "garbage.mp4":
                # video only, everything after the first fifth of the media data overwritten
                data = bytearray(self._get("video_only.mp4").read_bytes())
                start = data.find(b"mdat") + 8 + len(data) // 5
                data[start:] = bytes((i * 7919) % 251 for i in range(start, len(data)))
                path.write_bytes(bytes(data))
                return path
            if name == "reset.ts":
                # two HLS runs back to back: timestamps jump back to the start halfway through
                segs = sorted(self._get("hls").glob("seg_*.ts"), key=lambda p: int(p.stem[4:]))[:3]
                path.write_bytes(b"".join(p.read_bytes() for p in segs) * 2)
                return path
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
            if name == "hls_master":
                # a master playlist with two variants, the smaller listed first
                make_hls(path / "low", duration=3.0, width=160, height=120)
                make_hls(path / "high", duration=3.0, width=320, height=240)
                (path / "master.m3u8").write_text(
                    "#EXTM3U\n"
                    "#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=160x120\nlow/index.m3u8\n"
                    "#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=320x240\nhigh/index.m3u8\n")
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


@pytest.fixture(scope="session")
def media_http(clips: Clips) -> Iterator[MediaHTTPServer]:
    """An HTTP server over the session's clip directory (clips are made on first `clips.get`)."""
    server = MediaHTTPServer(clips.root).start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_into(path: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dst = directory / path.name
    shutil.copy(path, dst)
    return dst
