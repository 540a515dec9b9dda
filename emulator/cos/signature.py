"""COS's request signature (q-sign-algorithm=sha1), recomputed and checked as COS does.

Per Tencent's "Request Signature" document (COS XML API) and cos-python-sdk-v5's cos_auth.py:

    SignKey      = HMAC-SHA1(SecretKey, q-key-time)                       (hex)
    HttpString   = method\\n uri-path\\n sorted params\\n sorted headers\\n  (names lower-cased,
                   names and values URL-encoded keeping -_.~, pairs joined with &)
    StringToSign = "sha1\\n" q-sign-time "\\n" SHA1(HttpString) "\\n"       (hex)
    Signature    = HMAC-SHA1(SignKey, StringToSign)                       (hex)

Only the headers and parameters named in q-header-list / q-url-param-list are signed. The
signature travels in the Authorization header, or in the query string of a pre-signed URL.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Iterable, Mapping
from urllib.parse import quote

from .exceptions import CosError

AUTH_FIELDS = ("q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list", "q-url-param-list",
               "q-signature")


@dataclass(frozen=True)
class Credential:
    secret_id: str
    secret_key: str
    token: str | None = None  # temporary credentials are only valid with their session token


def _enc(value: str | bytes) -> str:
    return quote(value if isinstance(value, bytes) else value.encode(), "-_.~")


def http_string(method: str, path: str, params: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """`params`/`headers` are already encoded and lower-cased names → encoded values."""
    p = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    h = "&".join(f"{k}={v}" for k, v in sorted(headers.items()))
    return f"{method.lower()}\n{path}\n{p}\n{h}\n"


def signature(secret_key: str, key_time: str, sign_time: str, http: str) -> str:
    sign_key = hmac.new(secret_key.encode(), key_time.encode(), hashlib.sha1).hexdigest()
    to_sign = f"sha1\n{sign_time}\n{hashlib.sha1(http.encode()).hexdigest()}\n"
    return hmac.new(sign_key.encode(), to_sign.encode(), hashlib.sha1).hexdigest()


def parse_authorization(value: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in value.split("&"):
        k, sep, v = part.partition("=")
        if sep:
            fields[k.strip()] = v.strip()
    return fields


def _time_range(value: str, name: str) -> tuple[int, int]:
    try:
        start, end = (int(x) for x in value.split(";"))
    except ValueError:
        raise CosError("AccessDenied", f"{name} {value!r} is not 'start;end' in Unix seconds.") from None
    return start, end


# Complexity (~27) stays: COS's signature rules checked in the documented order, each refusal its own error.
def verify(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, bytes],
    credentials: Mapping[str, Credential],
    now: float | None = None,
) -> Credential:
    """Check a request's signature; return the credential that signed it, or raise CosError.

    `path` is the decoded object path ("/key"), `query` the decoded query pairs, `headers`
    lower-cased names → raw value bytes.
    """
    auth_header = headers.get("authorization")
    query = list(query)
    if auth_header:
        auth = parse_authorization(auth_header.decode("latin-1"))
    elif any(k == "q-sign-algorithm" for k, _ in query):
        auth = {k: v for k, v in query if k in AUTH_FIELDS}  # a pre-signed URL
    else:
        raise CosError("AccessDenied", "Access Denied. The request carries no signature and the bucket is private.")
    missing = [f for f in AUTH_FIELDS if f not in auth]
    if missing:
        raise CosError("AccessDenied", f"The Authorization is missing {', '.join(missing)}.")
    if auth["q-sign-algorithm"].lower() != "sha1":
        raise CosError("AccessDenied", f"q-sign-algorithm {auth['q-sign-algorithm']!r} is not supported; use sha1.")

    cred = credentials.get(auth["q-ak"])
    if cred is None:
        raise CosError("InvalidAccessKeyId", "The access key Id you provided does not exist in our records.")
    if cred.token is not None:
        token = headers.get("x-cos-security-token", b"").decode("latin-1")
        if not hmac.compare_digest(token, cred.token):
            raise CosError("InvalidAccessKeyId",
                           "The temporary SecretId needs its x-cos-security-token, and the one given does not match.")

    now = time.time() if now is None else now
    start, end = _time_range(auth["q-sign-time"], "q-sign-time")
    _time_range(auth["q-key-time"], "q-key-time")
    if now > end:
        raise CosError("AccessDenied", "Request has expired")
    if start > now + 900:
        raise CosError("RequestTimeTooSkewed", "The difference between the request time and the server's time is too large.")

    signed_headers = [h for h in auth["q-header-list"].split(";") if h]
    signed_params = [p for p in auth["q-url-param-list"].split(";") if p]
    qmap = {_enc(k).lower(): _enc(v) for k, v in query}
    params = {p: qmap.get(p, "") for p in signed_params}
    hvals = {h: _enc(headers.get(h, b"")) for h in signed_headers}
    candidates = [hvals]
    host = headers.get("host", b"")
    if "host" in hvals and b":" in host:
        # The SDK signs a pre-signed URL's host name without the port the request then carries
        # (real COS is on the default port, so the two agree there).
        candidates.append({**hvals, "host": _enc(host.rsplit(b":", 1)[0])})
    given = auth["q-signature"].lower()
    for hv in candidates:
        expected = signature(cred.secret_key, auth["q-key-time"], auth["q-sign-time"],
                             http_string(method, path, params, hv))
        if hmac.compare_digest(expected, given):
            return cred
    raise CosError("SignatureDoesNotMatch", "The Signature you specified is invalid.")
