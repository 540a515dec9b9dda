"""Secrets: which fields are secret, and the secret values seen this run, masked wherever they appear.

- `redact(obj)`: a copy of a record fit to log or keep (secret fields by name, URLs stripped of
  userinfo and query, known secret values masked verbatim).
- `redact_value(v)`, `redact_url_value(url)`: remember a secret (or a URL's secret parts) for that.
- `mask_url(url)`, `is_secret_field(name)`.

It imports nothing from the project: settings, the logger (shared.runtime) and the Redis address
all register or mask secrets, and none of them has to import another for it.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

# Field names whose values never reach a log or a record, in any casing. Redaction is by field, on
# parsed objects (a gateway body is decoded and parsed first, so JSON escapes in a key do not hide it).
# Every SecretStr field of the parameter models is here (tests/shared/test_runtime.py checks).
SECRET_FIELDS = frozenset(
    k.lower()
    for k in (
        "userSig", "redisPassword", "SecretKey", "UserSig", "SecretId", "sessionToken", "password",
        "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN", "CALLBACK_SIGN_KEY", "Authorization",
        "Proxy-Authorization", "Cookie", "sdkSecretKey", "secret_key", "user_sig", "token", "controlToken",
    )
)
REDACTED = "***"
# Structured values nested deeper than this are not walked (a hostile body must not exhaust the
# stack of whatever logs or records it); shared.gateway refuses such bodies with a 400 anyway.
MAX_DEPTH = 64
# A known secret shorter than this is not masked inside free text: a short value ("redis", "test")
# would garble ordinary words. Such secrets stay out of messages; their fields are still redacted.
MIN_MASKED_LEN = 8

# Secret values seen this run (registered by `redact_value`), masked wherever they appear verbatim.
_secret_values: set[str] = set()
_secret_lock = threading.Lock()
_URL_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")


def redact_value(value: Any) -> None:
    """Remember a secret so that it is masked from every later log line and record, even inside a
    message (exact value only: no pattern ever rewrites free text)."""
    if isinstance(value, str) and len(value) >= MIN_MASKED_LEN:
        with _secret_lock:
            _secret_values.add(value)


def redact_url_value(url: str) -> None:
    """Remember the secret parts of a URL given as a parameter (query, fragment, userinfo), so an
    error message quoting the URL (a library's, an HTTP client's) does not show them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    for secret in (parts.query, parts.fragment, parts.password, parts.netloc.rpartition("@")[0]):
        redact_value(secret)


def mask_url(url: str) -> str:
    """`url` with its userinfo, query and fragment replaced: "https://***@h/p?***"."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable ("http://[::1"): nothing of it is known to be safe after the scheme
        return url.split("://", 1)[0] + "://" + REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, REDACTED if parts.query else "",
                       REDACTED if parts.fragment else ""))


def is_secret_field(name: Any) -> bool:
    return str(name).lower() in SECRET_FIELDS


def redact(obj: Any, _depth: int = 0) -> Any:
    """A copy of `obj` fit to log or keep: secret fields replaced (by name, any casing), values that
    are URLs stripped of userinfo and query, and known secret values masked where they appear."""
    if _depth > MAX_DEPTH:
        return REDACTED
    if isinstance(obj, Mapping):
        return {
            k: (REDACTED if is_secret_field(k) and v not in (None, "") else redact(v, _depth + 1))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v, _depth + 1) for v in obj]
    if isinstance(obj, str):
        return _mask_known(mask_url(obj) if _URL_SHAPE.fullmatch(obj) else obj)
    return obj


def _mask_known(text: str) -> str:
    with _secret_lock:
        values = sorted(_secret_values, key=len, reverse=True)  # a longer secret first: no half-masked one
    for v in values:
        if v in text:
            text = text.replace(v, REDACTED)
    return text
