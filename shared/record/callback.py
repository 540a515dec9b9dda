"""POSTing a result to the caller's Callback URL, signed the way TRTC signs its own callbacks.

TRTC's event callbacks carry `Sign = base64(HMAC-SHA256(key, body))` over the raw body bytes, and
an `SdkAppId` header; a receiver that already checks TRTC's callbacks checks ours the same way.
The key is CALLBACK_SIGN_KEY from the environment (or `sign_key`).

A callback that cannot be delivered is logged and reported as False; it never raises, so the
function still returns its result. Internal destinations are refused unless CALLBACK_ALLOWLIST
opens them (see shared.egress), checked on the address each POST actually connects to.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any, Mapping

import requests

from shared.egress import CALLBACK_ALLOWLIST_ENV, DestinationRefused, pinned_session, validate_callback_url
from shared.runtime import RetryPolicy, RunLogger, get_logger, redact_value

SIGN_KEY_ENV = "CALLBACK_SIGN_KEY"
_sleep = time.sleep  # the backoff wait (a test brings the receiver back during it)


def sign_body(key: str, body: bytes) -> str:
    """TRTC's callback signature: base64(HMAC-SHA256(key, body))."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def encode_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _post_once(url: str, **kwargs: Any) -> requests.Response:
    """One POST, connected only to an address CALLBACK_ALLOWLIST's rule allows: the host is resolved
    once when connecting and that checked address is the one used (no DNS-rebinding window).
    Raises DestinationRefused when the address is refused, requests' errors otherwise."""
    with pinned_session(CALLBACK_ALLOWLIST_ENV, "Callback") as session:
        return session.post(url, **kwargs)


def post_result(
    url: str,
    body: Mapping[str, Any],
    *,
    sign_key: str | None = None,
    tries: int = 3,
    backoff: float = 1.0,
    max_backoff: float = 8.0,
    timeout: float = 5.0,
    deadline: float | None = None,
    log: RunLogger | None = None,
) -> bool:
    """POST `body` as JSON to `url`; True once the receiver answers 2xx.

    Network errors, 5xx, 408 and 429 are retried up to `tries` times (at least 3) with backoff
    `backoff`, 2×`backoff`, ... capped at `max_backoff`; no retry starts after `deadline`
    (time.monotonic()). Redirects are not followed (they could lead past the egress check).
    """
    log = log or get_logger()
    if sign_key is None:
        sign_key = os.environ.get(SIGN_KEY_ENV) or None
    redact_value(sign_key)
    try:
        validate_callback_url(url, resolve=False)  # the address is checked when connecting
    except DestinationRefused as e:
        log.error("callback refused", reason=str(e))
        return False
    data = encode_body(body)
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "trtc-media-functions"}
    if sign_key:
        headers["Sign"] = sign_body(sign_key, data)
    if isinstance(body, Mapping) and body.get("SdkAppId") is not None:
        headers["SdkAppId"] = str(body["SdkAppId"])

    policy = RetryPolicy(tries=max(3, tries), backoff=backoff, max_backoff=max_backoff, deadline=deadline)
    last = ""
    for attempt in range(1, policy.tries + 1):
        retryable = True
        try:
            resp = _post_once(url, data=data, headers=headers, timeout=timeout, allow_redirects=False)
            if 200 <= resp.status_code < 300:
                log.info("callback delivered", url=url, status=resp.status_code, attempt=attempt)
                return True
            last = f"HTTP {resp.status_code}"
            retryable = resp.status_code >= 500 or resp.status_code in (408, 429)
        except DestinationRefused as e:
            log.error("callback refused", reason=str(e))
            return False
        except requests.RequestException as e:
            last = f"{type(e).__name__}: {e}"
        if not retryable or attempt == policy.tries:
            break
        wait_s = policy.delay(attempt)
        if not policy.in_time(wait_s):
            last += "; no time left to retry"
            break
        log.warning("callback attempt failed, retrying", url=url, attempt=attempt, error=last,
                    retry_in_s=round(wait_s, 2))
        _sleep(wait_s)
    log.error("callback failed", url=url, tries=attempt, error=last)
    return False
