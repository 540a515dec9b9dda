"""The event an SCF function receives from an API Gateway trigger ("integration request" shape).

From SCF's "Trigger Event Message Structure Summary": `requestContext` {serviceId, path (the API's
configured path), httpMethod, requestId, identity, sourceIp, stage}, `headers`, `body` (a string),
`pathParameters`, `queryStringParameters`, `headerParameters`, `stageVariables`, `path` (the
request's path), `queryString`, `httpMethod`; plus `isBase64Encoded`, true when the body is not
UTF-8 text and was base64-encoded to fit in a string.
"""
from __future__ import annotations

import base64
from typing import Any, Mapping
from urllib.parse import parse_qsl

SERVICE_ID = "service-emulator"
STAGE = "release"


def gateway_event(*, method: str, api_path: str, path: str, query: str, headers: Mapping[str, str],
                  body: bytes, source_ip: str, api_request_id: str) -> dict[str, Any]:
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode("ascii"), True
    # Repeated query parameters keep the last value, as a flat dict of strings.
    query_params = dict(parse_qsl(query, keep_blank_values=True))
    return {
        "requestContext": {
            "serviceId": SERVICE_ID,
            "path": api_path,
            "httpMethod": method,
            "requestId": api_request_id,
            "identity": {},
            "sourceIp": source_ip,
            "stage": STAGE,
        },
        "headers": dict(headers),
        "body": text,
        "isBase64Encoded": is_b64,
        "pathParameters": {},
        "queryStringParameters": dict(query_params),
        "headerParameters": {},
        "stageVariables": {"stage": STAGE},
        "path": path,
        "queryString": dict(query_params),
        "httpMethod": method,
    }
