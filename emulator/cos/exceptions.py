"""COS's error answer: an XML body with Code/Message/Resource/RequestId/TraceId and the HTTP status
real COS gives for that code, so clients see the same failures as in production."""
from __future__ import annotations

import base64
import os
from xml.sax.saxutils import escape

# HTTP status per COS error code (from COS's error code list).
STATUS = {
    "AccessDenied": 403,
    "InvalidAccessKeyId": 403,
    "SignatureDoesNotMatch": 403,
    "RequestTimeTooSkewed": 403,
    "InvalidArgument": 400,
    "NoSuchBucket": 404,
    "FileAlreadyExists": 409,  # x-cos-forbid-overwrite: true and the key exists
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "SlowDown": 503,
}


class CosError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)


def new_request_id() -> str:
    return base64.b64encode(os.urandom(18)).decode()


def error_xml(code: str, message: str, resource: str, request_id: str) -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8' ?>\n<Error>\n"
        f"\t<Code>{escape(code)}</Code>\n"
        f"\t<Message>{escape(message)}</Message>\n"
        f"\t<Resource>{escape(resource)}</Resource>\n"
        f"\t<RequestId>{escape(request_id)}</RequestId>\n"
        f"\t<TraceId>{escape(new_request_id())}</TraceId>\n"
        "</Error>"
    ).encode()
