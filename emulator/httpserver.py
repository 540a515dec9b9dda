"""HTTP on loopback from a thread of its own: how every server of the local cloud (Cloud API, API
Gateway, COS, the console), the callback receiver and the tests' media server start and stop.

    server = HttpServer(Handler, name="cloudapi")          # a BaseHTTPRequestHandler subclass
    server = HttpServer(wsgi_app, name="cos", request_handler=QuietHandler)   # or a WSGI app
    server.port, server.url                                # bound (port known) once made
    server.start()
    server.stop()        # stop serving, close the socket, wait for the thread

Request threads are daemons: a client that never finishes its request cannot keep a stop waiting.
"""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

from shared.worker import Worker, spawn

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class HttpServer:
    def __init__(self, app: type[BaseHTTPRequestHandler] | WsgiApp, host: str = "127.0.0.1", port: int = 0, *,
                 name: str = "http", poll_interval: float = 0.5,
                 server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer,
                 request_handler: type[BaseHTTPRequestHandler] | None = None):
        """`app` is a request handler class (served by `server_class`) or a WSGI application (served
        by werkzeug, with `request_handler` as its handler class when given)."""
        self.server: ThreadingHTTPServer
        if isinstance(app, type) and issubclass(app, BaseHTTPRequestHandler):
            self.server = server_class((host, port), app)
        else:
            from werkzeug.serving import make_server

            # werkzeug's server is a BaseWSGIServer, used here only through the socketserver API
            self.server = make_server(host, port, app, threaded=True,  # type: ignore[assignment,arg-type]
                                      request_handler=request_handler)  # type: ignore[arg-type]
        self.server.daemon_threads = True
        # TCP_NODELAY on every connection: headers and body go out in separate writes, and with
        # Nagle the body waits for the client's delayed ACK (40 ms on a keep-alive connection).
        handler = self.server.RequestHandlerClass
        assert isinstance(handler, type)
        self.server.RequestHandlerClass = type(handler.__name__, (handler,), {"disable_nagle_algorithm": True})
        self.name = name
        self.poll_interval = poll_interval
        self._serving: Worker | None = None  # serve_forever, on the house's one thread protocol
        self._closed = False

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HttpServer":
        if self._serving is None:
            self._serving = spawn(lambda: self.server.serve_forever(self.poll_interval), self.name)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket; safe to call twice, or on a server never started
        (shutdown() alone would wait forever for a serve_forever that never ran)."""
        if self._serving is not None:
            self.server.shutdown()  # what ends serve_forever (close() alone would not)
            self._serving.join(timeout)
            self._serving = None
        if not self._closed:
            self._closed = True
            self.server.server_close()
