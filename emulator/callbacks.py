"""A callback receiver on 127.0.0.1, where record_stream's `Callback` can point: it records each POST
(headers, raw body, JSON, when it arrived) and, for tests, can answer 503 (or any status; a 3xx with
a Location) to the first N, drop N connections unanswered, or be down (connection refused).

    receiver = CallbackReceiver().start()
    params["Callback"] = receiver.url
    body = receiver.wait_for(1, timeout=30)[0].json
    receiver.stop()

`on_post` (optional) is handed each recorded POST as it arrives, before it is answered: an endpoint
that acts on what it gets (emulator/classroom.py's decision endpoint) is this receiver plus it.

The demo, the tests (the `callback_receiver` fixture) and bench/record use it.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from emulator.httpserver import HttpServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    arrived_at: float = field(default_factory=time.monotonic)  # time.monotonic() when it was recorded

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class CallbackReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str = "/callback",
                 on_post: Callable[[Received], None] | None = None):
        self._host = host
        self._on_post = on_post
        self._port = port
        self.path = path
        self.received: list[Received] = []
        self.attempts = 0  # every request that reached the server, answered or not
        self._fail: list[int] = []
        self._drop = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._http: HttpServer | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "CallbackReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver.attempts += 1
                    drop = receiver._drop > 0
                    if drop:
                        receiver._drop -= 1
                    status = receiver._fail.pop(0) if (not drop and receiver._fail) else 200
                    got = Received(self.path, dict(self.headers.items()), body) if not drop and status == 200 else None
                    if got is not None:
                        receiver.received.append(got)
                    receiver._cond.notify_all()
                if got is not None and receiver._on_post is not None:
                    receiver._on_post(got)
                if drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                reply = b"ok" if status == 200 else b"unavailable"
                self.send_response(status)
                if 300 <= status < 400:  # a redirect, to a path of this receiver that records POSTs too
                    self.send_header("Location", f"{receiver.path}/moved")
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._http = HttpServer(Handler, self._host, self._port, name="callback-receiver", poll_interval=0.05)
        self._port = self._http.port  # keep the port across down()/up()
        self._http.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None

    def down(self) -> None:
        """Stop listening: connections are refused until up()."""
        self.stop()

    def up(self) -> None:
        if self._http is None:
            self.start()

    # --- behaviour ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}{self.path}"

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def drop_next(self, n: int = 1) -> None:
        with self._lock:
            self._drop += n

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """The first `count` POSTs received, waiting up to `timeout` seconds (TimeoutError if not)."""
        end = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"callback receiver got {len(self.received)} POSTs, expected {count} "
                                         f"within {timeout}s ({self.attempts} attempts reached it)")
                self._cond.wait(left)
            return list(self.received[:count])
