"""push_control's parameters: which running push, what to do, and where its Redis is.

    {"requestId": "..."} or {"sdkAppId", "roomId" (+ "roomIdType"), "userId"}   the push
    "action": switch | enqueue | pause | resume | volume | stop | status
    switch: "videoSrc" (one source) and optional "seekSecond"; enqueue: "videoSrc" (one or a list);
    volume: "volume" (0..100)
    "redisHost"/"redisPort"/"redisPassword"/"redisDb", else the function's REDIS_URL
    "userSig" (the one the push was started with) or "controlToken" (given to push_stream): the proof
    that the call speaks for whoever started the push (checked by shared.push.control; neither is a 403)

A field that does not belong to the action is refused (a `volume` with `switch`, a `seekSecond`
with `enqueue`), so a caller never believes something was applied that was not. videoSrc, roomId
and userId follow push_stream's rules (shared.contracts.fields), and a videoSrc is also checked
against the egress rules here (SOURCE_ALLOWLIST: no internal address), so that a source the push
would refuse is a 400 and the running push is never touched. Every bad field is named at once.
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Union, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from shared.egress import SOURCE_ALLOWLIST_ENV, DestinationRefused, check_destination
from shared.redis.address import (
    DEFAULT_REDIS_PORT,
    MAX_REDIS_DB,
    RedisAddress,
    address_of,
    check_redis_host,
)
from shared.room.base import RoomRef

from . import fields
from .fields import without_url
from .push import MAX_SEEK_S

Action = Literal["switch", "enqueue", "pause", "resume", "volume", "stop", "status"]
ACTIONS: tuple[str, ...] = get_args(Action)
# SCF request ids are UUIDs; anything of this shape is looked up, nothing else reaches Redis.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
# Which action takes which of the optional fields ("required" / "optional").
_TAKES: dict[str, dict[str, str]] = {
    "videoSrc": {"switch": "required", "enqueue": "required"},
    "seekSecond": {"switch": "optional"},
    "volume": {"volume": "required"},
}


class ControlParams(fields.PushTarget):
    """One push_control request. The password is a SecretStr: its repr never shows it."""

    # --- which push (declared first: the checks below see whether requestId was given) ---
    requestId: Optional[str] = None
    sdkAppId: Optional[int] = Field(default=None, gt=0, lt=1 << 32, validate_default=True)
    roomIdType: Optional[int] = None
    roomId: Optional[Union[int, str]] = Field(default=None, validate_default=True)
    userId: Optional[str] = Field(default=None, validate_default=True)

    # --- what to do (declared before its arguments, whose checks read it) ---
    action: Action
    videoSrc: Optional[Union[str, list[str]]] = Field(default=None, validate_default=True)
    seekSecond: Optional[float] = Field(default=None, ge=0, le=MAX_SEEK_S, validate_default=True)
    volume: Optional[int] = Field(default=None, ge=0, le=100, validate_default=True)

    # --- where the push's Redis is (else REDIS_URL) ---
    redisHost: Optional[str] = None
    redisPort: int = Field(default=DEFAULT_REDIS_PORT, ge=1, le=65535)
    redisPassword: Optional[SecretStr] = None
    redisDb: int = Field(default=0, ge=0, le=MAX_REDIS_DB)

    # --- the proof that the call speaks for whoever started the push (one of them) ---
    userSig: Optional[SecretStr] = None
    controlToken: Optional[SecretStr] = None

    @field_validator("requestId", mode="after")
    @classmethod
    def _request_id(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _REQUEST_ID.match(v):
            raise ValueError("must be the push's request id (x-scf-reqid): letters, digits, '-', '_' or '.'")
        return v or None

    @field_validator("sdkAppId", "roomId", "userId", mode="after")
    @classmethod
    def _names_the_push(cls, v: Any, info: ValidationInfo) -> Any:
        # Absent (not invalid: an invalid requestId is reported on its own) and nothing else given.
        if v is None and "requestId" in info.data and info.data["requestId"] is None:
            raise ValueError("is required when requestId is not given (a push is named by its requestId, "
                             "or by sdkAppId + roomId + userId)")
        return v

    @field_validator("videoSrc", mode="before")
    @classmethod
    def _video_src(cls, v: Any) -> Any:
        if v is None:
            return None
        sources = fields.video_srcs(v)
        problems = []
        for n, src in enumerate([sources] if isinstance(sources, str) else sources, 1):
            try:
                check_destination(src, SOURCE_ALLOWLIST_ENV, "videoSrc")
            except DestinationRefused as e:
                reason = without_url(str(e), src).removeprefix("videoSrc ")
                problems.append(reason if isinstance(sources, str) else f"item {n}: {reason}")
        if problems:
            raise ValueError("; ".join(problems))
        return sources

    @field_validator("videoSrc", "seekSecond", "volume", mode="after")
    @classmethod
    def _belongs_to_the_action(cls, v: Any, info: ValidationInfo) -> Any:
        if "action" not in info.data:
            return v  # the action itself is wrong: that is the error to report
        action = info.data["action"]
        name = info.field_name or ""
        rule = _TAKES[name].get(action)
        if v is None and rule == "required":
            raise ValueError(f"is required for action {action}")
        if v is not None and rule is None:
            takers = ", ".join(a for a in ACTIONS if a in _TAKES[name])
            raise ValueError(f"does not apply to action {action} (only to {takers})")
        if name == "videoSrc" and action == "switch" and isinstance(v, list):
            raise ValueError("switch takes one source (a string); enqueue takes a list")
        return v

    @field_validator("redisHost", mode="after")
    @classmethod
    def _redis_host(cls, v: Optional[str]) -> Optional[str]:
        return check_redis_host(v) if v else None

    @field_validator("userSig", mode="after")
    @classmethod
    def _user_sig(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        return v if v is not None and v.get_secret_value().strip() else None

    # --- what the channel needs -----------------------------------------------------------------

    @property
    def room(self) -> Optional[RoomRef]:
        return None if self.roomId is None else RoomRef(self.roomId)

    @property
    def redis_address(self) -> Optional[RedisAddress]:
        """The Redis to look for the push in (the call's, else REDIS_URL's); None when neither."""
        return address_of(self.redisHost, self.redisPort, self.redisPassword, self.redisDb)

    @property
    def sources(self) -> list[str]:
        """videoSrc as a list (empty for an action without one)."""
        if self.videoSrc is None:
            return []
        return [self.videoSrc] if isinstance(self.videoSrc, str) else list(self.videoSrc)

    def target(self) -> str:
        """How messages name the push the call means."""
        if self.requestId is not None:
            return f"push {self.requestId}"
        return f"the push of userId {self.userId} in room {self.roomId} of sdkAppId {self.sdkAppId}"
