"""HLS media playlists (RFC 8216) for a recording file's segments.

While the recording runs the playlist is an EVENT playlist (segments are only ever added, so a
player may watch from the start while it grows); at the end it gets EXT-X-ENDLIST. fMP4 segments
(Modes 01/02) name their init segment with EXT-X-MAP; MP3 segments (Mode 00) are HLS "packed
audio", each starting with the ID3 timestamp tag the RFC asks for (see mp3.hls_timestamp_tag).

Segment URIs are relative to the playlist, so the playlist and its segments can be moved or served
from any host together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

CONTENT_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_CONTENT_TYPES = {"m4s": "video/iso.segment", "mp4": "video/mp4", "mp3": "audio/mpeg"}


@dataclass(frozen=True)
class PlaylistEntry:
    uri: str
    duration_s: float


def target_duration(durations: Iterable[float], at_least: int = 1) -> int:
    """EXT-X-TARGETDURATION: every EXTINF rounded to the nearest integer must not exceed it
    (RFC 8216 4.3.3.1); ceil of the longest is the simplest value that holds."""
    longest = max(durations, default=0.0)
    return max(at_least, math.ceil(round(longest, 3)))


def playlist(entries: list[PlaylistEntry], *, ended: bool, init_uri: str | None = None,
             first_sequence: int = 1, at_least: int = 1) -> str:
    """The playlist text. `init_uri` is the fMP4 init segment (None for packed audio);
    `at_least` keeps TARGETDURATION from shrinking below what the recorder promised at the start
    (a growing EVENT playlist should not change it)."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7" if init_uri else "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target_duration((e.duration_s for e in entries), at_least)}",
        f"#EXT-X-MEDIA-SEQUENCE:{first_sequence}",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
    ]
    if init_uri:
        lines.append(f'#EXT-X-MAP:URI="{init_uri}"')
    for e in entries:
        lines.append(f"#EXTINF:{e.duration_s:.3f},")
        lines.append(e.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def relative_uri(playlist_key: str, object_key: str) -> str:
    """`object_key` as seen from the playlist at `playlist_key` (both COS keys, same bucket)."""
    base = playlist_key.rsplit("/", 1)[0] + "/" if "/" in playlist_key else ""
    if base and object_key.startswith(base):
        return object_key[len(base):]
    # Elsewhere in the bucket: up to the common folder, then down.
    up = playlist_key.count("/")
    return "../" * up + object_key
