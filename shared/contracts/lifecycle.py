"""The fields every asynchronous function takes for its lifecycle: EventCallback (where its events
go, checked as Callback is), EventVerbose, and IdempotencyKey (its rule here; where each function
keeps the key is the function's own validator: push_stream's Redis, record_stream's state bucket)."""
from __future__ import annotations

import re
from typing import Optional

from shared.egress import DestinationRefused, validate_callback_url
from shared.settings import settings

from .fields import check_url, without_url

MAX_IDEMPOTENCY_KEY = 128
_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


def callback_url(v: Optional[str]) -> Optional[str]:
    """An http(s) URL a run may POST to (CALLBACK_ALLOWLIST's rule), or None when empty."""
    if not v:
        return None
    check_url(v)
    if not re.match(r"^https?://", v, re.I):
        raise ValueError("must be an http:// or https:// URL")
    try:
        validate_callback_url(v)
    except DestinationRefused as e:
        raise ValueError(without_url(str(e), v)) from None
    return v


def idempotency_key(v: Optional[str]) -> Optional[str]:
    """1..128 visible ASCII characters (no spaces), or None when empty."""
    if v is None or v == "":
        return None
    if not _KEY.match(v):
        raise ValueError(f"must be 1..{MAX_IDEMPOTENCY_KEY} visible ASCII characters (no spaces)")
    return v


def state_bucket_key(v: Optional[str]) -> Optional[str]:
    """IdempotencyKey of a function that keeps it in the state bucket (record_stream, recognize_stream)."""
    v = idempotency_key(v)
    if v is not None and not settings().record_state_bucket:
        raise ValueError("needs the deployment's RECORD_STATE_BUCKET (where the key is kept); it is not set")
    return v
