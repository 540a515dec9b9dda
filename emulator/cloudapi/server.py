"""The HTTP side of Cloud API 3.0: parse, check the signature, dispatch to a service's action, answer."""
from __future__ import annotations

import json
import logging
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from emulator.httpserver import HttpServer
from shared.failures import Failure
from shared.gateway import parse_json

from .exceptions import ApiError
from .signature import _AUTH, verify

log = logging.getLogger("emulator.cloudapi")

Action = Callable[[dict[str, Any]], dict[str, Any]]
MAX_BODY = 1 << 20


class CloudApi:
    """Services register {action name: handler}; a handler takes the request's parameters and
    returns the Response fields (without RequestId), or raises ApiError."""

    def __init__(self, secret_id: str, secret_key: str, host: str = "127.0.0.1", port: int = 0):
        self.secret_id = secret_id
        self.secret_key = secret_key
        # Temporary credentials (an execution role's): SecretId -> (SecretKey, session token).
        self._temporary: dict[str, tuple[str, str]] = {}
        self._services: dict[str, tuple[str, dict[str, Action]]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet; errors are logged below
                pass

            def do_POST(self) -> None:
                self._serve()

            def do_GET(self) -> None:
                self._serve()

            def _serve(self) -> None:
                request_id = str(uuid.uuid4())
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY:
                        raise ApiError("RequestSizeLimitExceeded", f"The request body exceeds {MAX_BODY} bytes.")
                    body = self.rfile.read(length) if length else b""
                    url = urlsplit(self.path)
                    status, payload = 200, {"Response": {**api.dispatch(self.command, url.path, url.query,
                                                                         dict(self.headers.items()), body),
                                                         "RequestId": request_id}}
                except ApiError as e:
                    status, payload = e.status, {"Response": {"Error": {"Code": e.code, "Message": e.message},
                                                              "RequestId": request_id}}
                except Exception as e:  # never a bare 500 page: the API 3.0 InternalError shape
                    log.exception("cloud api action failed")
                    status, payload = 200, {"Response": {"Error": {"Code": "InternalError", "Message": str(e)},
                                                         "RequestId": request_id}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = HttpServer(Handler, host, port, name="cloudapi")

    @property
    def endpoint(self) -> str:
        return f"{self._http.host}:{self._http.port}"

    @property
    def info(self) -> dict[str, str]:
        """What a client of this endpoint needs (emulator.clients), as `up`'s JSON line names it."""
        return {"cloudApiEndpoint": self.endpoint, "secretId": self.secret_id, "secretKey": self.secret_key}

    def add_temporary_credentials(self, secret_id: str, secret_key: str, token: str) -> None:
        """Accept requests signed with these keys when they carry the token (X-TC-Token)."""
        self._temporary[secret_id] = (secret_key, token)

    def _keys_for(self, headers: dict[str, str]) -> tuple[str, str]:
        h = {k.lower(): v for k, v in headers.items()}
        m = _AUTH.match(h.get("authorization", "").strip())
        if m and m["id"] in self._temporary:
            key, token = self._temporary[m["id"]]
            if h.get("x-tc-token", "") != token:
                raise ApiError("AuthFailure.TokenFailure", "The temporary credentials' token is missing or invalid.")
            return m["id"], key
        return self.secret_id, self.secret_key

    def register(self, service: str, version: str, actions: dict[str, Action]) -> None:
        self._services[service] = (version, actions)

    def dispatch(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        service = verify(method, path, query, headers, body, *self._keys_for(headers))
        h = {k.lower(): v for k, v in headers.items()}
        action = h.get("x-tc-action", "")
        version = h.get("x-tc-version", "")
        if service not in self._services:
            raise ApiError("InvalidAction", f"The service `{service}` is not served by this endpoint.")
        want_version, actions = self._services[service]
        if version != want_version:
            raise ApiError("InvalidParameter.Version", f"Version `{version}` is not supported for {service}; use {want_version}.")
        if action not in actions:
            raise ApiError("InvalidAction", f"The action `{action}` does not exist for {service}.")
        if method == "GET":
            params: Any = dict(parse_qsl(query))
        else:
            try:
                params = parse_json(body or b"{}", "The request body")
            except Failure as e:
                raise ApiError("InvalidParameter", f"{e.message}.") from None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameter", "The request body must be a JSON object.")
        return actions[action](params)

    def start(self) -> "CloudApi":
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()
