"""The local room protocol: how LocalRoom and the emulator's room server frame their messages.

One message on the TCP stream is

    length  (4 bytes, big-endian: everything after this field)
    hlen    (2 bytes, big-endian: length of the header)
    header  (hlen bytes of UTF-8 JSON object; "t" names the message type)
    payload (the rest: an encoded media packet, or nothing)

Media stays binary (an Opus packet or an H.264 access unit, never base64) and its header is a few
short keys, so a relayed frame costs ~40 bytes and one small JSON parse.

Message types (`t`):
    client -> server: enter, astart, vstart, a, v, kf (ask `u` for a key frame), exit
    server -> client: entered, error, ue (user entered), ul (user left, `r` reason), aa / va
        (audio / video available, `on`), a / v (media from `u`), kfr (key frame requested), closed
A "v" header has `pts`, `k` (key frame), `dts` when it differs, and `c` ("hevc") for H.265: absent,
the unit is H.264.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

PREFIX = struct.Struct("!IH")
MAX_MESSAGE = 8 << 20  # a 4K key frame is well under this; anything bigger is a broken peer
MAX_HEADER = 16 << 10

# Message types.
ENTER = "enter"
ENTERED = "entered"
ERROR = "error"
AUDIO_START = "astart"
VIDEO_START = "vstart"
AUDIO = "a"
VIDEO = "v"
KEY_FRAME = "kf"
KEY_FRAME_REQUESTED = "kfr"
EXIT = "exit"
USER_ENTERED = "ue"
USER_LEFT = "ul"
AUDIO_AVAILABLE = "aa"
VIDEO_AVAILABLE = "va"
CLOSED = "closed"

# The "c" of a video message: the access unit's codec (frames.CODEC_*); absent means this one.
DEFAULT_VIDEO_CODEC = "h264"
VIDEO_CODECS = ("h264", "hevc")


class WireError(ValueError):
    """The peer sent something that is not a message of this protocol."""


@dataclass(slots=True)
class Message:
    header: dict[str, Any]
    payload: bytes = b""
    # The encoded bytes, built once and reused when one message goes to many members.
    _wire: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def type(self) -> str:
        return self.header.get("t", "")

    def encode(self) -> bytes:
        if self._wire is None:
            self._wire = encode(self.header, self.payload)
        return self._wire


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    if len(head) > MAX_HEADER:
        raise WireError(f"header of {len(head)} bytes exceeds {MAX_HEADER}")
    total = 2 + len(head) + len(payload)
    if total > MAX_MESSAGE:
        raise WireError(f"message of {total} bytes exceeds {MAX_MESSAGE}")
    return PREFIX.pack(total, len(head)) + head + payload


def decode_body(body: bytes | memoryview) -> Message:
    """A message from what follows the length field (hlen, header, payload)."""
    if len(body) < 2:
        raise WireError("message shorter than its header length field")
    hlen = int.from_bytes(body[:2], "big")
    if hlen > len(body) - 2 or hlen > MAX_HEADER:
        raise WireError(f"header length {hlen} does not fit the message")
    try:
        header = json.loads(bytes(body[2:2 + hlen]))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise WireError("header is not a JSON object with a string 't'")
    return Message(header, bytes(body[2 + hlen:]))


class Decoder:
    """Splits a byte stream into messages; raises WireError on the first bad or oversized one."""

    def __init__(self, max_message: int = MAX_MESSAGE):
        self._buf = bytearray()
        self._max = max_message

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= 4:
            total = int.from_bytes(buf[pos:pos + 4], "big")
            if total > self._max:
                raise WireError(f"message of {total} bytes exceeds the {self._max}-byte limit")
            if len(buf) - pos - 4 < total:
                break
            with memoryview(buf) as view:
                out.append(decode_body(view[pos + 4:pos + 4 + total]))
            pos += 4 + total
        if pos:
            del buf[:pos]
        return out
