"""Emulated Tencent real-time speech recognition (the WebSocket service, v3 and v2): sessions and
the recogniser (models, recogniser, in processes of its own: workers), the wire (responses), the server (server), errors with the
real codes (exceptions). `AsrService` starts it.

    service = AsrService(secret_id, secret_key, {sdk_app_id: sdk_secret_key}).start()
    service.endpoint          # "ws://127.0.0.1:PORT" for ASR_ENDPOINT
    service.backend           # sessions, limits (max_concurrency, idle_timeout_s), faults
    service.stop()
"""
from __future__ import annotations

from .models import AsrBackend, Session
from .server import AsrServer

__all__ = ["AsrService", "AsrBackend", "Session"]


class AsrService:
    def __init__(self, secret_id: str, secret_key: str, sdk_apps: dict[int, str], host: str = "127.0.0.1",
                 port: int = 0, max_concurrency: int = 20):
        self.backend = AsrBackend(secret_id, secret_key, sdk_apps, max_concurrency=max_concurrency)
        self._host, self._port = host, port
        self.server: AsrServer | None = None

    def start(self) -> "AsrService":
        self.server = AsrServer(self.backend, self._host, self._port)
        self.server.start()
        return self

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return self.server.endpoint

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server.join(5)
            self.server = None
        self.backend.pool.close()
