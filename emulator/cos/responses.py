"""The COS wire: route a request to the bucket named in its Host (urls.py), check its signature,
apply any injected failure, then let moto's S3 responses serve it (COS's XML API is S3's, near
enough). service.CosService serves this application on loopback.

COS's own headers that S3 spells differently are translated: `x-cos-copy-source` (copy, part
copy, with `x-cos-copy-source-range`) and `x-cos-forbid-overwrite: true` (PUT and complete
multipart upload answer 409 FileAlreadyExists when the key exists, atomically).
"""
from __future__ import annotations

import io
import logging
import socket
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import parse_qsl, unquote_to_bytes
from xml.etree import ElementTree

from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.test import run_wsgi_app

from . import urls
from .exceptions import CosError, error_xml, new_request_id
from .models import CosState, Fault, RequestRecord
from .signature import verify

log = logging.getLogger("emulator.cos")

MAX_BODY = 5 * 1024**3  # COS's single-request ceiling

StartResponse = Callable[..., Any]


class _DropConnection(ConnectionResetError):
    """Close the client's connection without an answer (what a crashed front end looks like).
    A ConnectionError, so werkzeug treats it as a dropped connection and logs nothing."""


def _headers(environ: dict[str, Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            name = k[5:].replace("_", "-").lower()
        elif k in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = k.replace("_", "-").lower()
        else:
            continue
        out[name] = v.encode("latin-1", "replace")  # WSGI strings carry the raw bytes as latin-1
    return out


@dataclass
class _Call:
    """One request as the COS wire reads it, and how it is answered (each answer recorded)."""

    state: CosState
    start_response: StartResponse
    method: str
    raw_uri: str
    raw_query: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, bytes]
    host: str
    bucket: str
    request_id: str = field(default_factory=new_request_id)

    @classmethod
    def parse(cls, environ: dict[str, Any], start_response: StartResponse, state: CosState) -> "_Call":
        raw_uri = urls.origin_form(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        raw_path, _, raw_query = raw_uri.partition("?")
        headers = _headers(environ)
        return cls(state, start_response, environ["REQUEST_METHOD"].upper(), raw_uri, raw_query,
                   path=unquote_to_bytes(raw_path.encode("latin-1")).decode("utf-8", "replace"),
                   query=parse_qsl(raw_query, keep_blank_values=True), headers=headers,
                   host=headers.get("host", b"").decode("latin-1").split(":")[0].lower(), bucket=state.bucket)

    @property
    def key(self) -> str:
        return self.path[1:]

    @property
    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.query}

    @property
    def object_read(self) -> bool:
        """An object's bytes are read (its body is passed on untouched)."""
        return self.method in ("GET", "HEAD") and bool(self.key) and not self.names & {"uploadid", "acl", "tagging"}

    @property
    def creates_once(self) -> bool:
        """A write under x-cos-forbid-overwrite: true (PUT, or completing a multipart upload)."""
        forbid = self.headers.get("x-cos-forbid-overwrite", b"").decode("latin-1").strip().lower() == "true"
        return forbid and bool(self.key) and (self.method == "PUT" and "uploadid" not in self.names
                                              or self.method == "POST" and "uploadid" in self.names)

    def record(self, status: int) -> None:
        self.state.record(RequestRecord(self.method, self.bucket, self.key, self.raw_query, status))

    def answer(self, status: int, body: bytes, extra: Sequence[tuple[str, str]] = (),
               content_type: str = "application/xml", length: str | None = None) -> Iterable[bytes]:
        self.record(status)
        hdrs = [("Content-Type", content_type), ("Content-Length", length or str(len(body))),
                ("x-cos-request-id", self.request_id), *extra]
        self.start_response(f"{status} {_REASONS.get(status, 'Error')}", hdrs)
        return [body]

    def fail(self, e: CosError) -> Iterable[bytes]:
        resource = f"{self.host or '127.0.0.1'}{self.path}"
        return self.answer(e.status, b"" if self.method == "HEAD" else
                           error_xml(e.code, e.message, resource, self.request_id))


def _canonical(name: str) -> str:
    """A header name as COS spells it ("Last-Modified", "ETag"; its own "x-cos-*" in lower case):
    moto sends some in lower case, and clients that copy headers into a plain dict (cos-python-sdk-v5's
    resumable download, which coscmd uses for large objects) look them up by COS's spelling."""
    lower = name.lower()
    if lower.startswith("x-"):
        return lower
    if lower == "etag":
        return "ETag"
    return "-".join(part.capitalize() for part in lower.split("-"))


class CosApp:
    """The WSGI application for one CosState."""

    def __init__(self, state: CosState):
        self.state = state
        self._moto = create_backend_app("s3")
        # Requests with x-cos-forbid-overwrite check and write under one lock: of two racing
        # create-once writes exactly one succeeds (what recovery's markers rely on).
        self._write_once = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        call = _Call.parse(environ, start_response, self.state)
        try:
            body = self._read_body(environ)
        except CosError as e:
            return call.fail(e)
        fault = self.state.faults.take_transient(f"{call.method} {call.key}?{call.raw_query}")
        if fault is not None:
            if fault.kind == "drop":
                call.record(0)
                return self._drop(environ, start_response)
            return call.fail(CosError(fault.code, fault.message, fault.status))
        try:
            self._admit(call)
        except CosError as e:
            if e.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId"):
                log.info("cos refused a request: %s", e.code)
            return call.fail(e)
        return self._serve(call, environ, body)

    def _admit(self, call: _Call) -> None:
        """The bucket the Host names, the signature, an injected denial: CosError when refused."""
        call.bucket = urls.bucket_for(call.host, self.state)
        verify(call.method, call.path, call.query, call.headers, self.state.credentials)
        denial: Fault | None = self.state.faults.denial
        if denial is not None:
            raise CosError(denial.code, denial.message, denial.status)

    def _serve(self, call: _Call, environ: dict[str, Any], body: bytes) -> Iterable[bytes]:
        """moto's answer in COS's words (x-cos-forbid-overwrite kept atomic), and what it changed on disk."""
        method, key = call.method, call.key
        creates = call.creates_once
        with self._write_once if creates else nullcontext():
            try:
                extra = self._copy_headers(call.headers)
                if creates and self.state.backend.get_object(self.state.moto_bucket, key) is not None:
                    raise CosError("FileAlreadyExists", "The object already exists and x-cos-forbid-overwrite "
                                                        "is true.", 409)
            except CosError as e:
                return call.fail(e)
            status, out_headers, out_body = self._forward(environ, call.raw_uri, body,
                                                          rewrite_body=not call.object_read, extra_env=extra)
        if status >= 400:
            # moto's S3 error body lacks the Resource/TraceId the COS SDK reads; answer COS's shape.
            code, message = _s3_error(out_body, status)
            return call.fail(CosError(code, message, status))
        if status < 300:
            self._persist(call, body)
        passed = [(_canonical(k), v) for k, v in out_headers
                  if k.lower() not in ("content-type", "content-length", "server")]
        # A HEAD answer has no body but tells the object's length.
        length = next((v for k, v in out_headers if k.lower() == "content-length"), None) if method == "HEAD" else None
        return call.answer(status, out_body, passed, _content_type(out_headers, out_body), length)

    def _persist(self, call: _Call, body: bytes) -> None:
        """After a success: the objects it changed, written through to disk."""
        if call.key and self._changes_object(call.method, call.query):
            self.state.persist(call.key)
        if not call.key and call.method == "POST" and "delete" in call.names:
            for deleted in _deleted_keys(body):  # DeleteObjects: forget each key on disk too
                self.state.persist(deleted)

    # --- pieces ---------------------------------------------------------------------------------

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH")
        if length:
            n = int(length)
            if n > MAX_BODY:
                raise CosError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.", 400)
            return stream.read(n)
        if environ.get("wsgi.input_terminated"):  # chunked: werkzeug has decoded it for us
            return stream.read()
        return b""

    @staticmethod
    def _changes_object(method: str, query: list[tuple[str, str]]) -> bool:
        names = {k.lower() for k, _ in query}
        if method == "PUT":
            return "uploadid" not in names and "acl" not in names and "tagging" not in names
        if method == "POST":
            return "uploadid" in names  # complete multipart upload
        if method == "DELETE":
            return "uploadid" not in names
        return False

    def _copy_headers(self, headers: dict[str, bytes]) -> dict[str, str]:
        """COS's copy headers in moto's words: x-cos-copy-source names the source by its COS
        domain ("bucket-appid.cos.region.myqcloud.com/key"), S3's by "/bucket/key"."""
        env: dict[str, str] = {}
        source = headers.get("x-cos-copy-source")
        if source is None:
            return env
        path = urls.copy_source_key(source.decode("latin-1"), self.state)
        env["HTTP_X_AMZ_COPY_SOURCE"] = f"/{self.state.moto_bucket}/{path}"
        for cos, amz in (("x-cos-copy-source-range", "HTTP_X_AMZ_COPY_SOURCE_RANGE"),
                         ("x-cos-metadata-directive", "HTTP_X_AMZ_METADATA_DIRECTIVE")):
            if headers.get(cos):
                env[amz] = headers[cos].decode("latin-1")
        return env

    def _forward(self, environ: dict[str, Any], raw_uri: str, body: bytes,
                 rewrite_body: bool, extra_env: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        bucket, internal = self.state.bucket, self.state.moto_bucket
        env = dict(environ)
        env.update(extra_env or {})
        # The COS signature was checked above; moto only needs to see the request as signed (an
        # unsigned one is anonymous and refused on a private object).
        env["HTTP_AUTHORIZATION"] = ("AWS4-HMAC-SHA256 Credential=COSEMULATOR/20260101/us-east-1/s3/aws4_request, "
                                     "SignedHeaders=host, Signature=0")
        env.pop("HTTP_TRANSFER_ENCODING", None)
        env["wsgi.input"] = io.BytesIO(body)
        env["wsgi.input_terminated"] = False
        env["CONTENT_LENGTH"] = str(len(body))
        env["HTTP_HOST"] = "localhost"  # path-style addressing in moto
        env["SERVER_NAME"] = "localhost"
        env["PATH_INFO"] = f"/{internal}{environ.get('PATH_INFO', '/')}"
        env["RAW_URI"] = env["REQUEST_URI"] = f"/{internal}{raw_uri}"
        env["HTTP_X_MOTO_ACCOUNT_ID"] = self.state.account_id
        app_iter, status, headers = run_wsgi_app(self._moto, env, buffered=True)
        try:
            data = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close:
                close()
        # moto names its bucket and S3's host in Location headers and XML bodies; answer with
        # the COS bucket and domain (never touching an object's own bytes).
        renames = [(f"{internal}.s3.amazonaws.com", urls.host_of(self.state)),
                   (internal, bucket)]
        out = list(headers.items())
        for old, new in renames:
            if rewrite_body:
                data = data.replace(old.encode(), new.encode())
            out = [(k, v.replace(old, new)) for k, v in out]
        return int(status.split()[0]), out, data

    @staticmethod
    def _drop(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise _DropConnection()


def _s3_error(body: bytes, status: int) -> tuple[str, str]:
    try:
        root = ElementTree.fromstring(body)
        code = root.findtext("Code") or ""
        message = root.findtext("Message") or ""
    except ElementTree.ParseError:
        code = message = ""
    if not code:
        code = {404: "NoSuchKey", 403: "AccessDenied", 412: "PreconditionFailed"}.get(status, "InternalError")
    return code, message or _REASONS.get(status, "Error")


def _deleted_keys(body: bytes) -> list[str]:
    """The keys a DeleteObjects body names."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key" and el.text]


def _content_type(headers: list[tuple[str, str]], body: bytes) -> str:
    for k, v in headers:
        if k.lower() == "content-type":
            return v
    return "application/xml" if body.startswith(b"<") else "application/octet-stream"


_REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 412: "Precondition Failed",
            500: "Internal Server Error", 503: "Service Unavailable"}
