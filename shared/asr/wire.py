"""Tencent's real-time speech recognition over WebSocket: what travels on the wire, in one place.

Both endpoints the functions use, and the emulator's copy of them (emulator/asr/), read this module:

- v3 (TRTC's "WebSocket Access (New)"): `wss://asr.cloud-rtc.com/asr/v3?voice_id=<id>`; within 3 s
  of the handshake the client sends one text frame `{"type": "start", "auth": {"sdkappid",
  "usersig"}, "params": {...}}` and the service answers `{"code": 0, ...}` or an error and a close.
- v2 (classic): `wss://asr.cloud.tencent.com/asr/v2/<appid>?<params>&signature=<sig>`, the signature
  base64(HMAC-SHA1(SecretKey, host + path + "?" + the other parameters sorted by name)).

Then both: binary frames of audio (16 kHz mono s16le, 40 ms = 1280 bytes each at 1:1 real time),
text `{"type": "end"}` at the end, and JSON answers `{code, message, voice_id, message_id,
result: {slice_type 0 start / 1 unstable / 2 sentence end, index, start_time, end_time,
voice_text_str, word_size, word_list}, final}`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

SAMPLE_RATE = 16_000
CHUNK_MS = 40
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000  # s16le mono
CHUNK_BYTES = CHUNK_MS * BYTES_PER_MS  # 1280

V3_PATH = "/asr/v3"
V2_PATH = "/asr/v2/"
END_MESSAGE = '{"type": "end"}'
START_TIMEOUT_S = 3.0  # v3: the start frame must follow the handshake within this

# The service's error codes (Tencent's real-time ASR documentation, "错误码").
OK = 0
TOO_FAST = 4000  # more than 3 s of audio sent within 1 s
INVALID_PARAMETER = 4001
AUTH_FAILED = 4002
NOT_ACTIVATED = 4003
QUOTA_EXHAUSTED = 4004
ARREARS = 4005
CONCURRENCY_LIMIT = 4006
DECODE_FAILED = 4007
UPLOAD_TIMEOUT = 4008  # no audio for 15 s
CLIENT_DISCONNECTED = 4009
UNKNOWN_TEXT = 4010
BACKEND_ERROR = 5000
RECOGNITION_FAILED = 5001

# Codes after which a new connection with the same credentials cannot do better.
FATAL_CODES = frozenset({INVALID_PARAMETER, AUTH_FAILED, NOT_ACTIVATED, QUOTA_EXHAUSTED, ARREARS,
                         CONCURRENCY_LIMIT})

SLICE_START = 0
SLICE_PARTIAL = 1
SLICE_END = 2


def v2_sign_text(host: str, path: str, params: dict[str, str]) -> str:
    """What a v2 signature covers: host, path, '?', every parameter but `signature`, sorted by name."""
    query = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
    return f"{host}{path}?{query}"


def v2_signature(secret_key: str, host: str, path: str, params: dict[str, str]) -> str:
    text = v2_sign_text(host, path, params)
    return base64.b64encode(hmac.new(secret_key.encode(), text.encode(), hashlib.sha1).digest()).decode()


def query_string(params: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(str(v), safe='')}" for k, v in sorted(params.items()))


@dataclass(frozen=True)
class Word:
    word: str
    start_time: int
    end_time: int
    stable_flag: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"word": self.word, "start_time": self.start_time, "end_time": self.end_time,
                "stable_flag": self.stable_flag}


@dataclass(frozen=True)
class Result:
    """One `result` object: a sentence starting, being heard, or ended (times in ms of the stream)."""

    slice_type: int
    index: int
    start_time: int
    end_time: int
    voice_text_str: str = ""
    word_list: tuple[Word, ...] = field(default_factory=tuple)

    def to_json(self, word_info: bool = True) -> dict[str, Any]:
        words = [w.to_json() for w in self.word_list] if word_info else []
        return {"slice_type": self.slice_type, "index": self.index, "start_time": self.start_time,
                "end_time": self.end_time, "voice_text_str": self.voice_text_str,
                "word_size": len(words), "word_list": words}

    @classmethod
    def from_json(cls, data: Any) -> "Result":
        if not isinstance(data, dict):
            raise ValueError("result is not an object")
        words = tuple(Word(str(w.get("word", "")), int(w.get("start_time", 0)), int(w.get("end_time", 0)),
                           int(w.get("stable_flag", 0)))
                      for w in (data.get("word_list") or []) if isinstance(w, dict))
        return cls(int(data.get("slice_type", 0)), int(data.get("index", 0)), int(data.get("start_time", 0)),
                   int(data.get("end_time", 0)), str(data.get("voice_text_str") or ""), words)


def message(voice_id: str, message_id: str, code: int = OK, text: str = "success", result: Result | None = None,
            final: bool = False, word_info: bool = True) -> dict[str, Any]:
    """One answer of the service, as it is serialised."""
    out: dict[str, Any] = {"code": code, "message": text, "voice_id": voice_id, "message_id": message_id}
    if result is not None:
        out["result"] = result.to_json(word_info)
    if final:
        out["final"] = 1
    return out
