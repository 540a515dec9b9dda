"""API Gateway in front of the functions, with async execution as the seed's functions configure it.

    POST /push_stream, /record_stream, /recognize_stream    (also under the stage: /release/push_stream)
        -> 200 "Async run task submitted", header x-scf-reqid: the run's request id
        -> 432 {"errorCode": 432, "errorMessage": "LimitExceeded...: ResourceLimitReached ..."} past the
           concurrency limit; 404 for a path no function serves
    POST /push_control                        (a function configured `sync`)
        -> the function's answer, as API Gateway gives it with integrated response on: its
           statusCode, headers and body (a result that is not such a response: 200, its JSON);
           502 when the function raised or crashed, 504 past the API's service timeout
    GET /_runs                  every run (newest first), without results
    GET /_runs/{reqid}          one run: status, status code, times, result or error, log file
    GET /_runs/{reqid}/log      its log as text (the function's output between START and Report)

The `/_runs` routes are the emulator's stand-in for SCF's log console.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from emulator.httpserver import HttpServer

from .events import STAGE, gateway_event
from .exceptions import ScfError
from .models import EVENT, REQUEST_RESPONSE, Run, Scf

log = logging.getLogger("emulator.scf.gateway")

ASYNC_SUBMITTED = "Async run task submitted"
MAX_BODY = 6 * 1024 * 1024
SERVICE_TIMEOUT_S = 15.0  # the APIs' serviceTimeout in serverless.yml


class Gateway:
    def __init__(self, scf: Scf, host: str = "127.0.0.1", port: int = 0):
        self.scf = scf
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "emulator-apigw"

            def log_message(self, fmt: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                gateway._serve(self)

            def do_GET(self) -> None:
                gateway._serve(self)

            def do_PUT(self) -> None:
                gateway._serve(self)

            def do_DELETE(self) -> None:
                gateway._serve(self)

        self._http = HttpServer(Handler, host, port, name="apigw")

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def port(self) -> int:
        return self._http.port

    def start(self) -> "Gateway":
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    # --- the wire ----------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        api_request_id = uuid.uuid4().hex
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            h.close_connection = True
            self._json(h, 411, {"errorCode": 411, "errorMessage": "Send the body with a Content-Length, not chunked.",
                                "requestId": api_request_id})
            return
        if length < 0 or length > MAX_BODY:
            h.close_connection = True
            self._json(h, 413, {"errorCode": 413, "errorMessage": f"The request body must be at most {MAX_BODY} bytes.",
                                "requestId": api_request_id})
            return
        body = h.rfile.read(length) if length else b""
        url = urlsplit(h.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if parts[:1] == ["_runs"] and h.command == "GET":
                self._runs(h, parts[1:])
                return
            if parts[:1] == [STAGE]:
                parts = parts[1:]
            if len(parts) == 1 and parts[0] in self.scf.functions and h.command == "POST":
                self._invoke(h, parts[0], url.path, url.query, body, api_request_id)
                return
            self._json(h, 404, {"errorCode": 404, "requestId": api_request_id,
                                "errorMessage": f"There is no api match with method {h.command} and path {url.path}. "
                                                f"Functions: POST /{', POST /'.join(sorted(self.scf.functions))}."})
        except ScfError as e:
            self._json(h, e.status, {"errorCode": e.status, "errorMessage": f"{e.code}: {e.message}",
                                     "requestId": api_request_id})
        except Exception as e:  # an emulator bug answers as a 500 with its message, never a dropped connection
            log.exception("gateway failed")
            self._json(h, 500, {"errorCode": 500, "errorMessage": f"InternalError: {e}", "requestId": api_request_id})

    def _invoke(self, h: BaseHTTPRequestHandler, name: str, path: str, query: str, body: bytes,
                api_request_id: str) -> None:
        event = gateway_event(method=h.command, api_path=f"/{name}", path=path, query=query,
                              headers=dict(h.headers.items()), body=body, source_ip=h.client_address[0],
                              api_request_id=api_request_id)
        if self.scf.function(name).sync:
            self._answer_sync(h, self.scf.invoke(name, event, REQUEST_RESPONSE, source="apigw"), api_request_id)
            return
        run = self.scf.invoke(name, event, EVENT, source="apigw")
        self._send(h, 200, ASYNC_SUBMITTED.encode(), "text/plain; charset=utf-8",
                   {"x-scf-reqid": run.request_id, "X-Api-RequestId": api_request_id})

    def _answer_sync(self, h: BaseHTTPRequestHandler, run: Run, api_request_id: str) -> None:
        ids = {"x-scf-reqid": run.request_id, "X-Api-RequestId": api_request_id}
        if not self.scf.wait(run, SERVICE_TIMEOUT_S):
            self._json(h, 504, {"errorCode": 504, "requestId": api_request_id,
                                "errorMessage": f"the function did not answer within the API's service timeout "
                                                f"({SERVICE_TIMEOUT_S:g} s); it keeps running as {run.request_id}"},
                       ids)
            return
        if run.error is not None:
            error = run.error
            self._json(h, 502, {"errorCode": 502, "requestId": api_request_id,
                                "errorMessage": f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}"},
                       ids)
            return
        result = run.result
        if not (isinstance(result, dict) and isinstance(result.get("statusCode"), int)):
            self._json(h, 200, result, ids)  # not an API Gateway response: passed on as its JSON
            return
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        body = result.get("body")
        try:
            data = (base64.b64decode(body, validate=True) if result.get("isBase64Encoded") is True
                    else body.encode()) if isinstance(body, str) else json.dumps(body).encode()
        except (binascii.Error, ValueError):
            data = b""
        if not 100 <= result["statusCode"] <= 599 or (result.get("isBase64Encoded") is True and not data and body):
            self._json(h, 502, {"errorCode": 502, "requestId": api_request_id,
                                "errorMessage": "the function's answer is not a valid API Gateway response"}, ids)
            return
        kept = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
        self._send(h, result["statusCode"], data, content_type, {**kept, **ids})

    def _runs(self, h: BaseHTTPRequestHandler, rest: list[str]) -> None:
        if not rest:
            runs = sorted(self.scf.runs(), key=lambda r: r.started_at, reverse=True)
            summary = [{k: v for k, v in r.to_dict().items() if k not in ("result", "event")} for r in runs]
            self._json(h, 200, {"runs": summary})
            return
        run = self.scf.get(rest[0])
        if len(rest) == 1:
            self._json(h, 200, run.to_dict())
        elif rest[1:] == ["log"]:
            self._send(h, 200, run.read_log().encode(), "text/plain; charset=utf-8")
        else:
            self._json(h, 404, {"errorCode": 404, "errorMessage": f"No such route: {h.path}"})

    def _json(self, h: BaseHTTPRequestHandler, status: int, payload: Any,
              headers: dict[str, str] | None = None) -> None:
        self._send(h, status, json.dumps(payload, ensure_ascii=False, default=str).encode(), "application/json",
                   headers)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
