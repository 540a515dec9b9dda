"""TC3-HMAC-SHA256, checked the way the service checks it (and the SDK signs it)."""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import datetime, timezone

from .exceptions import ApiError

MAX_SKEW_S = 300
_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z0-9]+)/tc3_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    k = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k = _hmac(k, service)
    k = _hmac(k, "tc3_request")
    return hmac.new(k, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(method: str, path: str, query: str, headers: dict[str, str], body: bytes,
           secret_id: str, secret_key: str) -> str:
    """Check the request's signature; return the service named in its credential scope."""
    h = {k.lower(): v for k, v in headers.items()}
    auth = h.get("authorization", "")
    m = _AUTH.match(auth.strip())
    if not m:
        raise ApiError("AuthFailure.SignatureFailure", "The provided credentials could not be validated: "
                       "the Authorization header is missing or not TC3-HMAC-SHA256.")
    if m["id"] != secret_id:
        raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct.")
    try:
        ts = int(h.get("x-tc-timestamp", ""))
    except ValueError:
        raise ApiError("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is missing or not an integer.") from None
    if abs(time.time() - ts) > MAX_SKEW_S:
        raise ApiError("AuthFailure.SignatureExpire", "Signature expired. Timestamp is too far from the server time.")
    date = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")
    if date != m["date"]:
        raise ApiError("AuthFailure.InvalidAuthorization", "The credential scope date does not match X-TC-Timestamp.")
    signed = m["signed"].split(";")
    canonical_headers = "".join(f"{name}:{h.get(name, '').strip()}\n" for name in signed)
    if h.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD":
        payload_hash = hashlib.sha256(b"UNSIGNED-PAYLOAD").hexdigest()
    else:
        payload_hash = hashlib.sha256(b"" if method == "GET" else body).hexdigest()
    canonical = "\n".join([method, path or "/", query if method == "GET" else "", canonical_headers,
                           m["signed"], payload_hash])
    scope = f"{m['date']}/{m['service']}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(ts), scope, hashlib.sha256(canonical.encode()).hexdigest()])
    expected = tc3_signature(secret_key, m["date"], m["service"], to_sign)
    if not hmac.compare_digest(expected, m["sig"]):
        raise ApiError("AuthFailure.SignatureFailure", "The provided credentials could not be validated. "
                       "Please check your signature is correct.")
    return m["service"]
