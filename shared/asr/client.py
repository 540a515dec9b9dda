"""One connection to Tencent's real-time speech recognition (wire.py says what travels).

`AsrConnection.open()` connects (through shared.egress: ASR_ALLOWLIST's rule, on the address
actually connected), authenticates — v3 with the SdkAppId and a UserSig, v2 with AsrConfig's keys —
and waits for the service's first answer; then audio goes in with `send_audio` and answers come
out of `poll`. A refusal is an AsrError with the service's code.

One WebSocket library serves this client and the emulator's server: `websockets` (its threaded
API, websockets.sync), so that both ends of every test speak through the same, well-kept RFC 6455
implementation and the function needs no event loop beside its room loop.
"""
from __future__ import annotations

import json
import random
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from shared import egress
from shared.settings import settings

from . import wire

DEFAULT_V3_ENDPOINT = "wss://asr.cloud-rtc.com"
DEFAULT_V2_ENDPOINT = "wss://asr.cloud.tencent.com"
OPEN_TIMEOUT_S = 10.0
SIGNATURE_TTL_S = 86_400
CLOSE_TIMEOUT_S = 2.0  # a service that stopped reading (after refusing) never acknowledges a close


class AsrError(Exception):
    """The service refused or failed (its code), or could not be reached (code 0)."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (ASR code {code})" if code else message)
        self.code = code
        self.message = message

    @property
    def fatal(self) -> bool:
        """True when a new connection with the same credentials and parameters cannot do better."""
        return self.code in wire.FATAL_CODES

    def explain(self) -> str:
        """The message a person can act on."""
        if self.code == wire.CONCURRENCY_LIMIT:
            return (f"the speech recognition account's concurrency limit is reached ({self.message}); "
                    "raise the limit in the ASR console or recognise fewer anchors at once (TargetUserIds)")
        if self.code == wire.AUTH_FAILED:
            return f"speech recognition refused the credentials: {self.message} (check UserSig, or AsrConfig's keys)"
        return str(self)


@dataclass(frozen=True)
class AsrCredentials:
    """v3 (the default): the TRTC app and a UserSig. v2: AsrConfig's AppId, SecretId and SecretKey."""

    sdk_app_id: int
    user_sig: str = field(repr=False)
    app_id: int | None = None
    secret_id: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)

    @property
    def v2(self) -> bool:
        return bool(self.app_id and self.secret_id and self.secret_key)


@dataclass(frozen=True)
class AsrOptions:
    engine_model_type: str = "16k_en"
    vad_silence_ms: int = 1000
    hotwords: tuple[str, ...] = ()
    word_info: bool = True

    def params(self) -> dict[str, str]:
        """The recognition parameters, as v2's query and v3's params block both name them."""
        out = {"engine_model_type": self.engine_model_type, "voice_format": "1", "needvad": "1",
               "vad_silence_time": str(self.vad_silence_ms), "word_info": "1" if self.word_info else "0"}
        if self.hotwords:
            out["hotword_list"] = ",".join(f"{w}|10" for w in self.hotwords)
        return out


def endpoint(creds: AsrCredentials) -> str:
    """ASR_ENDPOINT when set (the emulator sets it), else Tencent's host for the protocol."""
    configured = settings().asr_endpoint
    if configured:
        return configured
    return DEFAULT_V2_ENDPOINT if creds.v2 else DEFAULT_V3_ENDPOINT


def new_voice_id() -> str:
    return uuid.uuid4().hex


class AsrConnection:
    """One recognition stream (one voice_id) on one WebSocket."""

    def __init__(self, ws: ClientConnection, voice_id: str):
        self.ws = ws
        self.voice_id = voice_id

    @classmethod
    def open(cls, creds: AsrCredentials, options: AsrOptions, voice_id: str | None = None,
             timeout: float = OPEN_TIMEOUT_S) -> "AsrConnection":
        voice_id = voice_id or new_voice_id()
        base = urlsplit(endpoint(creds))
        secure = base.scheme == "wss"
        host = base.hostname or ""
        port = base.port or (443 if secure else 80)
        netloc = base.netloc
        params = options.params()
        if creds.v2:
            now = int(time.time())
            assert creds.secret_id is not None and creds.secret_key is not None
            params.update(secretid=creds.secret_id, timestamp=str(now), expired=str(now + SIGNATURE_TTL_S),
                          nonce=str(random.randint(1, 9_999_999)), voice_id=voice_id)
            path = f"{wire.V2_PATH}{creds.app_id}"
            params["signature"] = wire.v2_signature(creds.secret_key, netloc, path, params)
            uri = f"{base.scheme}://{netloc}{path}?{wire.query_string(params)}"
        else:
            uri = f"{base.scheme}://{netloc}{wire.V3_PATH}?voice_id={voice_id}"
        try:
            sock = egress.connect(host, port, egress.ASR_ALLOWLIST_ENV, "ASR endpoint", timeout)
        except egress.DestinationRefused as e:
            raise AsrError(0, str(e)) from None
        except OSError as e:
            raise AsrError(0, f"cannot reach the ASR endpoint {netloc}: {e}") from None
        try:
            ws = connect(uri, sock=sock, ssl=ssl.create_default_context() if secure else None,
                         server_hostname=host if secure else None, open_timeout=timeout, compression=None,
                         max_size=1 << 20, close_timeout=CLOSE_TIMEOUT_S)
        except (InvalidHandshake, OSError, TimeoutError) as e:
            sock.close()
            raise AsrError(0, f"ASR handshake with {netloc} failed: {type(e).__name__}: {e}") from None
        conn = cls(ws, voice_id)
        try:
            if not creds.v2:
                params["voice_id"] = voice_id
                ws.send(json.dumps({"type": "start", "auth": {"sdkappid": str(creds.sdk_app_id),
                                                              "usersig": creds.user_sig}, "params": params}))
            first = conn._read(timeout)
        except (ConnectionClosed, OSError, TimeoutError) as e:
            conn.close()
            raise AsrError(0, f"ASR connection closed during the handshake: {type(e).__name__}: {e}") from None
        if first is None:
            conn.close()
            raise AsrError(0, f"no answer from the ASR service within {timeout:g} s")
        if int(first.get("code", 0)) != 0:
            conn.close()
            raise AsrError(int(first["code"]), str(first.get("message", "")))
        return conn

    def _read(self, timeout: float) -> dict[str, Any] | None:
        try:
            data = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        msg = json.loads(data)
        if not isinstance(msg, dict):
            raise ValueError("ASR answer is not a JSON object")
        return msg

    def send_audio(self, pcm: bytes) -> None:
        self.ws.send(pcm)

    def send_end(self) -> None:
        self.ws.send(wire.END_MESSAGE)

    def poll(self, timeout: float = 0.0) -> list[dict[str, Any]]:
        """The answers that have arrived (waiting up to `timeout` for the first). ConnectionClosed
        when the service closed the connection and nothing is left to read."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                msg = self._read(timeout if not out else 0.0)
            except ConnectionClosed:
                if out:  # the last answers before the close (the final one): the close comes next time
                    return out
                raise
            if msg is None:
                return out
            out.append(msg)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # closing a broken socket: nothing left to do
            pass
