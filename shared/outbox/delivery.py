"""How one message is POSTed: signed the way TRTC signs its callbacks, sent only where the egress
rule allows, classified (delivered / retry / give up), on the one retry schedule.

TRTC's event callbacks carry `Sign = base64(HMAC-SHA256(key, body))` over the raw body bytes, and
an `SdkAppId` header; a receiver that already checks TRTC's callbacks checks ours the same way.
The key is CALLBACK_SIGN_KEY. Every message carries an id that stays the same across its retries
(in its body under `id_key`, and in the `X-Callback-Id` header): a receiver that answered too late
for us, and so gets it again, drops what it has seen.

The schedule is TRTC's own for its callbacks, stretched: backoff 1 s, 2 s, 4 s... capped at 10 s,
for at least RETRY_FOR_S. Network errors, 5xx, 408 and 429 are retried; other 4xx are not; a
redirect is never followed (it could lead past the egress check). `post` sends one message now, on
the caller's thread; shared.outbox.sender.Outbox sends a run's messages in the background.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping

import requests

from shared.egress import CALLBACK_ALLOWLIST_ENV, DestinationRefused, pinned_session, validate_callback_url
from shared.runtime import GaveUp, RetryPolicy, RunLogger, get_logger
from shared.secrets import mask_url, redact_value
from shared.settings import settings

_sleep = time.sleep  # the backoff wait of `post` (a test brings the receiver back during it)
_clock = time.monotonic  # what deadlines are measured on (a test runs the schedule on a virtual clock)

CALLBACK_ID_HEADER = "X-Callback-Id"
CALLBACK_ID_KEY = "CallbackId"
# TRTC retries its own callbacks every 10 s for a minute; ours keep trying at least as long
# (CALLBACK_RETRY_SECONDS, 60 by default: it covers a receiver down for 30 s, with room to spare).
RETRY_FOR_S = 60.0
BACKOFF_S = 1.0
MAX_BACKOFF_S = 10.0
ATTEMPT_TIMEOUT_S = 5.0  # TRTC: no answer within 5 s is a failed attempt
USER_AGENT = "trtc-media-functions"


def sign_body(key: str, body: bytes) -> str:
    """TRTC's callback signature: base64(HMAC-SHA256(key, body))."""
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def encode_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def with_id(body: Mapping[str, Any], id_key: str = CALLBACK_ID_KEY) -> dict[str, Any]:
    """`body` with its id under `id_key`: the one it has, else a new one (keep the returned dict, so
    the id is the same wherever the body goes)."""
    out = dict(body)
    if not isinstance(out.get(id_key), str) or not out[id_key]:
        out[id_key] = uuid.uuid4().hex
    return out


def sign_key_from_env() -> str | None:
    key = settings().callback_sign_key
    redact_value(key)
    return key


@dataclass
class Message:
    """One POST: its URL, its body as sent (id included), its signed headers. `what` names it in
    logs ("callback", "event", "slice", ...)."""

    url: str
    body: dict[str, Any]
    id: str
    data: bytes
    headers: dict[str, str]
    what: str = "callback"
    param: str = "Callback"  # the parameter that named the URL (errors tell the caller what to fix)
    created: float = field(default_factory=lambda: _clock())

    @classmethod
    def make(cls, url: str, body: Mapping[str, Any], *, what: str = "callback", id_key: str = CALLBACK_ID_KEY,
             sign_key: str | None = None, param: str = "Callback") -> "Message":
        full = with_id(body, id_key)
        data = encode_body(full)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   CALLBACK_ID_HEADER: str(full[id_key])}
        if sign_key:
            headers["Sign"] = sign_body(sign_key, data)
        if full.get("SdkAppId") is not None:
            headers["SdkAppId"] = str(full["SdkAppId"])
        return cls(url, full, str(full[id_key]), data, headers, what, param)


class NotDelivered(Exception):
    """One attempt failed; `retryable` says whether another may succeed."""

    def __init__(self, text: str, retryable: bool):
        super().__init__(text)
        self.retryable = retryable


def check_url(url: str) -> None:
    """DestinationRefused unless a callback may go to `url` (its address is checked again when connecting)."""
    validate_callback_url(url, resolve=False)


def attempt(message: Message, timeout: float) -> int:
    """One POST of `message`: its 2xx status, or NotDelivered; DestinationRefused when the address the
    host resolves to is refused (never retried). Connected only to an address CALLBACK_ALLOWLIST's
    rule allows: the host is resolved once and that checked address is used (no DNS rebinding)."""
    try:
        with pinned_session(CALLBACK_ALLOWLIST_ENV, "Callback") as session:
            resp = session.post(message.url, data=message.data, headers=message.headers, timeout=timeout,
                                allow_redirects=False)
    except requests.RequestException as e:
        raise NotDelivered(f"{type(e).__name__}: {e}", True) from None
    status = resp.status_code
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        where = resp.headers.get("Location")
        raise NotDelivered(f"HTTP {status} redirect{f' to {where}' if where else ''} not followed "
                           f"(give {message.param} the final URL)", False)
    raise NotDelivered(f"HTTP {status}", status >= 500 or status in (408, 429))


def retryable(error: BaseException) -> bool:
    return isinstance(error, NotDelivered) and error.retryable


def schedule(tries: int | None = None, backoff: float = BACKOFF_S, max_backoff: float = MAX_BACKOFF_S,
             retry_for: float | None = None, deadline: float | None = None) -> RetryPolicy:
    """The one retry schedule of everything a run POSTs: `tries` attempts when given, else as many as
    keep it trying for at least `retry_for` seconds (CALLBACK_RETRY_SECONDS by default); never past
    `deadline`."""
    if tries is not None:
        return RetryPolicy(tries=tries, backoff=backoff, max_backoff=max_backoff, deadline=deadline, clock=_clock)
    return RetryPolicy.spanning(retry_window() if retry_for is None else retry_for, backoff, max_backoff,
                                deadline=deadline, clock=_clock)


def retry_window() -> float:
    """How long a message is retried at least: CALLBACK_RETRY_SECONDS."""
    return settings().callback_retry_seconds


def post(
    url: str,
    body: Mapping[str, Any],
    *,
    sign_key: str | None = None,
    tries: int | None = None,
    backoff: float = BACKOFF_S,
    max_backoff: float = MAX_BACKOFF_S,
    retry_for: float | None = None,
    timeout: float = ATTEMPT_TIMEOUT_S,
    deadline: float | None = None,
    log: RunLogger | None = None,
    what: str = "callback",
    id_key: str = CALLBACK_ID_KEY,
    param: str = "Callback",
) -> bool:
    """POST `body` as JSON to `url` now, on this thread; True once the receiver answers 2xx.

    Retried on `schedule(tries, backoff, max_backoff, retry_for, deadline)`; no retry starts after
    `deadline` (time.monotonic()), and no attempt waits past it. Never raises: a message that cannot
    be delivered is logged and reported as False."""
    log = log or get_logger()
    if sign_key is None:
        sign_key = sign_key_from_env()
    redact_value(sign_key)
    try:
        check_url(url)
    except DestinationRefused as e:
        log.error(f"{what} refused", reason=str(e))
        return False
    message = Message.make(url, body, what=what, id_key=id_key, sign_key=sign_key, param=param)
    policy = schedule(tries, backoff, max_backoff, retry_for, deadline)
    attempts = 0

    def once() -> int:
        nonlocal attempts
        attempts += 1
        left = policy.seconds_left()
        return attempt(message, timeout if left is None else max(0.1, min(timeout, left)))

    def on_retry(n: int, err: BaseException, wait_s: float) -> None:
        log.warning(f"{what} attempt failed, retrying", url=mask_url(url), attempt=n, error=str(err),
                    retry_in_s=round(wait_s, 2))

    try:
        status = policy.run(once, retryable=retryable, on_retry=on_retry, sleep=lambda s: _sleep(s))
    except GaveUp as g:
        if isinstance(g.error, DestinationRefused):  # refused when connecting: never retried
            log.error(f"{what} refused", reason=str(g.error))
            return False
        error = str(g.error) + ("; no time left to retry" if g.why == "deadline" else "")
        log.error(f"{what} failed", url=mask_url(url), tries=g.attempts, error=error)
        return False
    log.info(f"{what} delivered", url=mask_url(url), status=status, attempt=attempts)
    return True
