"""What every parameter model shares: one base with the rules each field follows, and URL checks.

- Numbers: `true` is not 1. pydantic's lax mode (kept so that the gateway's strings "6379" and
  "1.5" are read) would turn a boolean into 1 for any int or float field; `Params` refuses that
  for every numeric field, of both models and any field added later. Floats must be finite
  ("Infinity", "NaN", 1e400 are refused).
- An Optional number left empty (a form's `videoFps=`) means "not given".
- URLs: `check_url` refuses what urllib cannot take apart ("http://[::1", a port of 99999) at
  validation, before anything uses the URL.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from shared.runtime import mask_url, redact_url_value


@lru_cache(maxsize=None)
def _numeric(annotation: Any) -> bool:
    """Whether a field's type admits an int or a float (bool, a subclass of int, does not count)."""
    if annotation in (int, float):
        return True
    return any(_numeric(a) for a in get_args(annotation) if a is not type(None))


def _optional(annotation: Any) -> bool:
    return get_origin(annotation) is Union and type(None) in get_args(annotation)


class Params(BaseModel):
    """Base of the parameter models: unknown fields refused, strings stripped, floats finite."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, hide_input_in_errors=False,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers(cls, v: Any, info: ValidationInfo) -> Any:
        if info.field_name is None:
            return v
        annotation: Any = cls.model_fields[info.field_name].annotation
        if not _numeric(annotation):
            return v
        if isinstance(v, bool):
            raise ValueError("must be a number, not true/false")
        if isinstance(v, str) and not v.strip() and _optional(annotation):
            return None
        return v


def check_url(url: str) -> None:
    """ValueError if `url` cannot be taken apart (bad IPv6 literal, port not in 1..65535). A local
    path passes. The URL's secret parts are remembered first, so that no later message shows them."""
    redact_url_value(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"is not a valid URL: {e}") from None
    if port == 0:
        raise ValueError("is not a valid URL: port 0 (a port is 1..65535)")


def without_url(message: str, url: str) -> str:
    """`message` with `url` shown as `mask_url` shows it (an error that quotes the caller's URL)."""
    return message.replace(url, mask_url(url)) if url else message
