"""record_stream's result callback: POSTed by shared.outbox, the one sender of everything a run
sends (the same signing, egress check, ids and retry schedule as events and slices).

What this module keeps is the names the recording's code and its tests know: `post_result` sends
one result now, on the caller's thread (the recovery, which has no run of its own to queue on);
`with_callback_id` gives a result its CallbackId, the same in the body, the X-Callback-Id header,
the state bucket and every retry.
"""
from __future__ import annotations

from typing import Any, Mapping

from shared.egress import validate_callback_url
from shared.outbox import delivery
from shared.outbox.delivery import (
    CALLBACK_ID_HEADER,
    CALLBACK_ID_KEY,
    encode_body,
    schedule as callback_policy,
    sign_body,
)

__all__ = ["CALLBACK_ID_HEADER", "CALLBACK_ID_KEY", "callback_policy", "encode_body", "post_result", "sign_body",
           "validate_callback_url", "with_callback_id"]


def with_callback_id(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` with its CallbackId: the one it has, else a new one (keep the returned dict, so the
    id is the same wherever the result goes: the callback, the state bucket, the return value)."""
    return delivery.with_id(body, CALLBACK_ID_KEY)


def post_result(url: str, body: Mapping[str, Any], **kwargs: Any) -> bool:
    """POST a result to `url` now (shared.outbox.delivery.post); True once the receiver answered 2xx."""
    return delivery.post(url, body, **kwargs)
