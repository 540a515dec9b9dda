"""POSTing a result to the caller's Callback URL, signed the way TRTC signs its own callbacks.

TRTC's event callbacks carry `Sign = base64(HMAC-SHA256(key, body))` over the raw body bytes, and
an `SdkAppId` header; a receiver that already checks TRTC's callbacks checks ours the same way.
The key is CALLBACK_SIGN_KEY from the environment (or `sign_key`).

Every result carries an id (`CallbackId` in the body, `X-Callback-Id` in the headers) that stays
the same across the retries of one POST, and across a recovery's report of the same run: a
receiver that answered too late for us (and so gets it again) drops what it has seen.

A callback that cannot be delivered is logged and reported as False; it never raises, so the
function still returns its result. Internal destinations are refused unless CALLBACK_ALLOWLIST
opens them (see shared.egress), checked on the address each POST actually connects to.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any, Mapping

import requests

from shared.egress import CALLBACK_ALLOWLIST_ENV, DestinationRefused, pinned_session, validate_callback_url
from shared.runtime import GaveUp, RetryPolicy, RunLogger, get_logger
from shared.secrets import redact_value
from shared.settings import settings

_sleep = time.sleep  # the backoff wait (a test brings the receiver back during it)
_clock = time.monotonic  # what the deadline is measured on (a test runs the schedule on a virtual clock)


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


CALLBACK_ID_HEADER = "X-Callback-Id"
CALLBACK_ID_KEY = "CallbackId"


def with_callback_id(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` with its CallbackId: the one it has, else a new one (keep the returned dict, so the
    id is the same wherever the result goes: the callback, the state bucket, the return value)."""
    out = dict(body)
    if not isinstance(out.get(CALLBACK_ID_KEY), str) or not out[CALLBACK_ID_KEY]:
        out[CALLBACK_ID_KEY] = uuid.uuid4().hex
    return out


class _NotDelivered(Exception):
    def __init__(self, text: str, retryable: bool):
        super().__init__(text)
        self.retryable = retryable


def callback_policy(tries: int | None = None, backoff: float = 1.0, max_backoff: float = 10.0,
                    retry_for: float | None = None, deadline: float | None = None) -> RetryPolicy:
    """The callback's retry schedule: `tries` attempts when given, else as many as keep it trying
    for at least `retry_for` seconds (CALLBACK_RETRY_SECONDS, default 60 s: TRTC retries its own
    callbacks every 10 s for a minute); never past `deadline`."""
    if retry_for is None:
        retry_for = settings().callback_retry_seconds
    if tries is not None:
        return RetryPolicy(tries=tries, backoff=backoff, max_backoff=max_backoff, deadline=deadline, clock=_clock)
    return RetryPolicy.spanning(retry_for, backoff, max_backoff, deadline=deadline, clock=_clock)


def post_result(
    url: str,
    body: Mapping[str, Any],
    *,
    sign_key: str | None = None,
    tries: int | None = None,
    backoff: float = 1.0,
    max_backoff: float = 10.0,
    retry_for: float | None = None,
    timeout: float = 5.0,
    deadline: float | None = None,
    log: RunLogger | None = None,
) -> bool:
    """POST `body` as JSON to `url`; True once the receiver answers 2xx. The body goes with its
    CallbackId (`with_callback_id`), the same on every attempt, also in the X-Callback-Id header.

    Network errors, 5xx, 408 and 429 are retried with backoff `backoff`, 2×`backoff`, ... capped at
    `max_backoff`: `tries` attempts when given, else for at least `retry_for` seconds; no retry
    starts after `deadline` (time.monotonic()), and no attempt waits past it. Other 4xx are not
    retried; a redirect is not followed (it could lead past the egress check) and is logged as such.
    """
    log = log or get_logger()
    if sign_key is None:
        sign_key = settings().callback_sign_key
    redact_value(sign_key)
    try:
        validate_callback_url(url, resolve=False)  # the address is checked when connecting
    except DestinationRefused as e:
        log.error("callback refused", reason=str(e))
        return False
    body = with_callback_id(body)
    data = encode_body(body)
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "trtc-media-functions",
               CALLBACK_ID_HEADER: body[CALLBACK_ID_KEY]}
    if sign_key:
        headers["Sign"] = sign_body(sign_key, data)
    if body.get("SdkAppId") is not None:
        headers["SdkAppId"] = str(body["SdkAppId"])

    policy = callback_policy(tries, backoff, max_backoff, retry_for, deadline)
    attempts = 0

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        left = policy.seconds_left()
        attempt_timeout = timeout if left is None else max(0.1, min(timeout, left))  # the result is still returned
        try:
            resp = _post_once(url, data=data, headers=headers, timeout=attempt_timeout, allow_redirects=False)
        except requests.RequestException as e:
            raise _NotDelivered(f"{type(e).__name__}: {e}", True) from None
        status = resp.status_code
        if 200 <= status < 300:
            return status
        if 300 <= status < 400:
            where = resp.headers.get("Location")
            raise _NotDelivered(f"HTTP {status} redirect{f' to {where}' if where else ''} not followed "
                                "(give Callback the final URL)", False)
        raise _NotDelivered(f"HTTP {status}", status >= 500 or status in (408, 429))

    def on_retry(n: int, err: BaseException, wait_s: float) -> None:
        log.warning("callback attempt failed, retrying", url=url, attempt=n, error=str(err),
                    retry_in_s=round(wait_s, 2))

    try:
        status = policy.run(attempt, retryable=lambda e: isinstance(e, _NotDelivered) and e.retryable,
                            on_retry=on_retry, sleep=lambda s: _sleep(s))
    except GaveUp as g:
        if isinstance(g.error, DestinationRefused):  # refused when connecting: never retried
            log.error("callback refused", reason=str(g.error))
            return False
        error = str(g.error) + ("; no time left to retry" if g.why == "deadline" else "")
        log.error("callback failed", url=url, tries=g.attempts, error=error)
        return False
    log.info("callback delivered", url=url, status=status, attempt=attempts)
    return True
