"""What every parameter model shares: one base with the rules each field follows, and URL checks.

- Numbers: `true` is not 1. pydantic's lax mode (kept so that the gateway's strings "6379" and
  "1.5" are read) would turn a boolean into 1 for any int or float field; `Params` refuses that
  for every numeric field, of both models and any field added later. Floats must be finite
  ("Infinity", "NaN", 1e400 are refused).
- An Optional number left empty (a form's `videoFps=`) means "not given".
- URLs: `check_url` refuses what urllib cannot take apart ("http://[::1", a port of 99999) at
  validation, before anything uses the URL.
- The fields push_stream and push_control share follow one rule each, here: `video_src` /
  `video_srcs` (one source, or a playlist), `room_id_type`, `room_id`, `user_id`, `control_token`.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Optional, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationInfo, field_validator, model_validator

from shared.redis.address import remember_secret
from shared.redis.default import with_default_redis
from shared.room.base import MAX_ROOM_ID
from shared.secrets import mask_url, redact_url_value

MAX_VIDEO_SRC_CHARS = 4096
MAX_PLAYLIST = 100  # sources in one videoSrc list
# controlToken: a secret the caller of push_stream chooses, presented again to push_control.
MIN_CONTROL_TOKEN, MAX_CONTROL_TOKEN = 16, 256
# Characters TRTC allows in a string room id (besides letters and digits).
STR_ROOM_ID = re.compile(r"^[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]{1,64}$")
USER_ID = re.compile(r"^[A-Za-z0-9_\-@.]{1,32}$")
_INT_ROOM_ID = re.compile(r"^[1-9][0-9]{0,9}$")
# What no URL or path may hold: control characters (NUL ends a C string: FFmpeg and the OS would see
# another path) and lone surrogates (no character at all: nothing can encode them).
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


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


# --- the fields both push functions take ---------------------------------------------------------


def video_src(value: Any) -> str:
    """One videoSrc: a non-empty string (a URL or a local path) of at most 4096 characters, without
    control characters or lone surrogates, that urllib can take apart. Whitespace around it is dropped."""
    if not isinstance(value, str):
        raise ValueError("must be a string (a URL or a path)")
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_VIDEO_SRC_CHARS:
        raise ValueError(f"must be at most {MAX_VIDEO_SRC_CHARS} characters")
    bad = _NOT_TEXT.search(text)
    if bad:
        raise ValueError(f"must not contain {_describe(bad.group())} (at character {bad.start() + 1})")
    check_url(text)
    return text


def control_token(value: Optional[SecretStr]) -> Optional[SecretStr]:
    """controlToken: MIN_CONTROL_TOKEN..MAX_CONTROL_TOKEN characters, not all blank."""
    if value is None:
        return None
    text = value.get_secret_value()
    if not MIN_CONTROL_TOKEN <= len(text) <= MAX_CONTROL_TOKEN or not text.strip():
        raise ValueError(f"must be {MIN_CONTROL_TOKEN}..{MAX_CONTROL_TOKEN} characters (a secret you choose, "
                         "presented again to push_control)")
    return value


def _describe(char: str) -> str:
    if char == "\x00":
        return "a NUL byte"
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate (\\u{ord(char):04x}, not a character)"
    return f"a control character (\\x{ord(char):02x})"


def video_srcs(value: Any) -> Union[str, list[str]]:
    """videoSrc as one source (a string) or a playlist (a list of 1..MAX_PLAYLIST sources, each
    checked as one; every bad entry is named by its position, from 1)."""
    if not isinstance(value, list):
        return video_src(value)
    if not value:
        raise ValueError("is an empty list: give a source, or a list of at least one")
    if len(value) > MAX_PLAYLIST:
        raise ValueError(f"lists {len(value)} sources; at most {MAX_PLAYLIST}")
    out: list[str] = []
    problems: list[str] = []
    for n, item in enumerate(value, 1):
        try:
            out.append(video_src(item))
        except ValueError as e:
            problems.append(f"item {n}: {e}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def room_id_type(value: Optional[int]) -> Optional[int]:
    if value is not None and value not in (0, 1):
        raise ValueError("must be 1 (32-bit integer room) or 0 (string room)")
    return value


def _looks_like_int_room(room: Union[int, str]) -> bool:
    if isinstance(room, int):
        return 1 <= room <= MAX_ROOM_ID
    return bool(_INT_ROOM_ID.match(room)) and int(room) <= MAX_ROOM_ID


def room_id(value: Union[int, str], kind: Optional[int]) -> Union[int, str]:
    """The room id as TRTC names it: an int for an integer room, a str for a string room. `kind` is
    roomIdType (None: an integer room when the id is all digits in 1..4294967295)."""
    if isinstance(value, str) and not value:
        raise ValueError("must not be empty")
    if kind == 1 or (kind is None and isinstance(value, int)):
        if not _looks_like_int_room(value):
            raise ValueError(f"an integer room id must be in 1..{MAX_ROOM_ID}")
        return int(value)
    if kind is None and _looks_like_int_room(value):
        return int(value)
    text = str(value)
    if not STR_ROOM_ID.match(text):
        raise ValueError("a string room id is 1..64 characters of letters, digits and "
                         "!#$%&()+-:;<=.>?@[]^_{}|~, or space")
    return text


def user_id(value: str) -> str:
    if not USER_ID.match(value):
        raise ValueError("must be 1..32 letters, digits, underscore, hyphen, @ or dot")
    return value


class PushTarget(Params):
    """The checks of the fields push_stream and push_control share, for the models that declare them
    (roomIdType before roomId; userId; userSig, redisPassword and controlToken, the secrets), and
    where their Redis is: a call that names none gets the function's REDIS_URL (validated as its own)."""

    @model_validator(mode="before")
    @classmethod
    def _default_redis(cls, data: Any) -> Any:
        return with_default_redis(data)

    @field_validator("userSig", "redisPassword", "controlToken", mode="after", check_fields=False)
    @classmethod
    def _remember_secret(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        # The logger scrubs these values from every later line, even inside free text (and before
        # a check below can quote them).
        return remember_secret(v)

    @field_validator("controlToken", mode="after", check_fields=False)
    @classmethod
    def _control_token(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        return control_token(v)

    @field_validator("roomIdType", mode="after", check_fields=False)
    @classmethod
    def _room_id_type(cls, v: Optional[int]) -> Optional[int]:
        return room_id_type(v)

    @field_validator("roomId", mode="after", check_fields=False)
    @classmethod
    def _room_id(cls, v: Optional[Union[int, str]], info: ValidationInfo) -> Optional[Union[int, str]]:
        return None if v is None else room_id(v, info.data.get("roomIdType"))

    @field_validator("userId", mode="after", check_fields=False)
    @classmethod
    def _user_id(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else user_id(v)
