"""The emulated speech recognition service served on 127.0.0.1 (websockets' threaded server:
a thread per connection, as a session decodes on its own thread)."""
from __future__ import annotations

from websockets.sync.server import Server, ServerConnection, serve

from shared.worker import Worker

from .models import AsrBackend
from .responses import serve_connection


class AsrServer(Worker):
    def __init__(self, backend: AsrBackend, host: str = "127.0.0.1", port: int = 0):
        super().__init__("asr-server")
        self.backend = backend

        def handler(conn: ServerConnection) -> None:
            serve_connection(conn, backend)

        # max_queue=None: frames are always read off the socket, so that a close from a client whose
        # audio this service stopped reading (after refusing it) is seen at once.
        self._server: Server = serve(handler, host, port, max_size=1 << 20, compression=None, max_queue=None)
        self.host, self.port = self._server.socket.getsockname()[:2]

    @property
    def endpoint(self) -> str:
        """What ASR_ENDPOINT is set to for functions that should recognise here."""
        return f"ws://{self.host}:{self.port}"

    def run(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        super().close()
        self._server.shutdown()
