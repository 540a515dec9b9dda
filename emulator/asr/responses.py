"""The wire of the emulated speech recognition service: one WebSocket connection, one session.

v3 (`/asr/v3?voice_id=`): the start frame's auth block and params; v2 (`/asr/v2/<appid>?...`):
the signed query. Then binary audio, `{"type": "end"}`, and JSON answers (models.Session). Every
refusal is the service's JSON error (`code`, `message`) followed by a normal close.
"""
from __future__ import annotations

import json
import logging
import socket
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection

from shared.asr import wire

from . import exceptions
from .exceptions import AsrError
from .models import AsrBackend, Session, SessionParams

log = logging.getLogger("emulator.asr")
RECV_POLL_S = 0.5  # how often a quiet connection looks at its idle time


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise exceptions.unknown_text(text) from None


def _open(conn: ServerConnection, backend: AsrBackend, send: Any) -> Session:
    request = conn.request
    assert request is not None
    parts = urlsplit(request.path)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    voice_id = query.get("voice_id", "")
    if parts.path.rstrip("/") == wire.V3_PATH:
        try:
            first = conn.recv(timeout=wire.START_TIMEOUT_S)
        except TimeoutError:
            raise exceptions.invalid(f"no start frame within {wire.START_TIMEOUT_S:g} s of the handshake") from None
        frame = _parse_json(first if isinstance(first, str) else first.decode("utf-8", "replace"))
        if not isinstance(frame, dict) or frame.get("type") != "start":
            raise exceptions.invalid('the first frame must be {"type": "start", "auth": {...}, "params": {...}}')
        block = frame.get("params")
        params: dict[str, Any] = block if isinstance(block, dict) else {}
        voice_id = str(params.get("voice_id") or voice_id)
        app = backend.authenticate_v3(frame.get("auth"), voice_id)
    elif parts.path.startswith(wire.V2_PATH):
        appid = parts.path[len(wire.V2_PATH):]
        app = backend.authenticate_v2(request.headers.get("Host", ""), appid, query)
        params = query
    else:
        raise exceptions.invalid(f"no such endpoint: {parts.path} (use {wire.V3_PATH} or {wire.V2_PATH}<appid>)")
    if not voice_id or len(voice_id) > 128:
        raise exceptions.invalid("voice_id is required (at most 128 characters)")
    return backend.open(app, voice_id, SessionParams.parse(params), send)


def serve_connection(conn: ServerConnection, backend: AsrBackend) -> None:
    """Run one connection to its end (the server calls this on the connection's own thread)."""
    session: Session | None = None
    voice_id = ""

    def send(msg: dict[str, Any]) -> None:
        conn.send(json.dumps(msg, ensure_ascii=False))

    try:
        session = _open(conn, backend, send)
        voice_id = session.voice_id
        session.hello()
        while True:
            try:
                data = conn.recv(timeout=RECV_POLL_S)
            except TimeoutError:
                if session.idle():
                    raise exceptions.upload_timeout(backend.idle_timeout_s) from None
                continue
            if isinstance(data, bytes):
                session.audio(data)
                drop = backend.drop_after_ms
                if drop is not None and session.received_ms >= drop:
                    backend.drop_after_ms = None
                    log.info("dropping connection %s (a test's fault)", voice_id)
                    conn.socket.shutdown(socket.SHUT_RDWR)
                    return
                continue
            msg = _parse_json(data)
            if isinstance(msg, dict) and msg.get("type") == "end":
                session.end()
                return
            raise exceptions.unknown_text(data)
    except AsrError as e:
        log.info("asr refused %s: %s", voice_id or "-", e)
        try:
            send(wire.message(voice_id, f"{voice_id}-error", code=e.code, text=e.message))
        except ConnectionClosed:
            pass
    except (ConnectionClosed, OSError):
        pass
    finally:
        if session is not None:
            session.close()
        conn.close()
