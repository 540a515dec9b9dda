"""push_stream's parameters: the seed's names and types (000/001), plus the optional extensions.

The gateway hands strings, so "true", "1400000001" and "6379" are accepted where a bool or an int
is meant (pydantic's lax mode); a boolean is never a number (shared.contracts.fields.Params). Every
bad field is reported at once; `shared.gateway` turns the errors into one sentence naming them.
The rules videoSrc, roomId and userId follow are shared with push_control (shared.contracts.fields),
and so is where Redis is (shared.redis.address: the call's fields, else REDIS_URL).
"""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from shared.redis.address import (
    DEFAULT_REDIS_PORT,
    MAX_REDIS_DB,
    RedisAddress,
    address_of,
    check_redis_host,
)
from shared.redis.default import redis_url_from_env
from shared.room.base import Role, RoomRef

from . import fields
from .lifecycle import MAX_IDEMPOTENCY_KEY, callback_url, idempotency_key

__all__ = ["DEFAULT_REDIS_PORT", "MAX_DURATION_S", "MAX_SEEK_S", "PushParams"]

# Bounds that keep every duration a finite, convertible number of seconds (a pusher multiplies
# them into timestamps and deadlines): a week of media per run, a seek of at most a year.
MAX_DURATION_S = 7 * 86_400
MAX_SEEK_S = 365 * 86_400


class PushParams(fields.PushTarget):
    """One push_stream request. Secrets are SecretStr: their repr never shows them."""

    # --- the seed's parameters ---
    # One source (a string), or a playlist played in order (a list; repeatNum repeats the whole list).
    videoSrc: Union[str, list[str]]
    sdkAppId: int = Field(gt=0, lt=1 << 32)
    # Declared before roomId so that roomId's check can see it (pydantic validates in this order).
    roomIdType: Optional[int] = None
    roomId: Union[int, str]
    userId: str = Field(min_length=1, max_length=32)
    userSig: SecretStr
    clientRole: str = "anchor"
    redis: bool = False
    redisHost: Optional[str] = Field(default=None, validate_default=True)
    redisPort: int = Field(default=DEFAULT_REDIS_PORT, ge=1, le=65535)
    redisPassword: Optional[SecretStr] = None

    # --- extensions (named after TRTC's StartStreamIngest where one exists) ---
    seekSecond: float = Field(default=0.0, ge=0, le=MAX_SEEK_S)  # where a fresh push starts; a Redis record wins
    repeatNum: int = Field(default=0, ge=-1)  # -1 loops forever; N plays the source 1 + N times
    maxDuration: Optional[float] = Field(default=None, gt=0, le=MAX_DURATION_S)  # seconds of media this run pushes
    volume: int = Field(default=100, ge=0, le=100)
    videoWidth: Optional[int] = Field(default=None, ge=16, le=4096)
    videoHeight: Optional[int] = Field(default=None, ge=16, le=4096)
    videoFps: Optional[int] = Field(default=None, ge=1, le=60)
    videoBitrate: Optional[int] = Field(default=None, ge=16, le=50_000)  # kbit/s
    videoGop: Optional[int] = Field(default=None, ge=1, le=30)  # seconds
    redisDb: int = Field(default=0, ge=0, le=MAX_REDIS_DB)
    # A secret the caller chooses (16..256 characters) and presents to push_control instead of the
    # userSig; kept only as a salted hash (shared.push.control.proof).
    controlToken: Optional[SecretStr] = None
    # --- lifecycle (every asynchronous function): events while it runs, idempotent starts ---
    EventCallback: Optional[str] = Field(default=None, max_length=2048)
    EventVerbose: bool = False
    # Kept in the push's Redis for 24 h: without a Redis it cannot be honoured (400 naming it).
    IdempotencyKey: Optional[str] = Field(default=None, max_length=MAX_IDEMPOTENCY_KEY)

    @field_validator("videoSrc", mode="before")
    @classmethod
    def _video_src(cls, v: Any) -> Any:
        return fields.video_srcs(v)

    @field_validator("userSig", mode="after")
    @classmethod
    def _sig_not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("clientRole", mode="before")
    @classmethod
    def _client_role(cls, v: object) -> str:
        # TRTC's SDKs also name the roles by number: TRTCRoleAnchor = 20, TRTCRoleAudience = 21.
        role = str(v).strip().lower() if isinstance(v, (str, int)) and not isinstance(v, bool) else ""
        role = {"20": Role.ANCHOR.value, "21": Role.AUDIENCE.value}.get(role, role)
        if role == Role.ANCHOR.value:
            return role
        if role == Role.AUDIENCE.value:
            raise ValueError("an audience cannot publish: push_stream sends media into the room, "
                             "which only an anchor may do; use 'anchor'")
        raise ValueError("must be 'anchor' (pushing media needs the anchor role)")

    @field_validator("redisHost", mode="after")
    @classmethod
    def _redis_host(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        if info.data.get("redis") and not v:
            raise ValueError("is required when redis is true (or set the function's REDIS_URL)")
        return check_redis_host(v) if v else None

    @field_validator("EventCallback", mode="after")
    @classmethod
    def _event_callback(cls, v: Optional[str]) -> Optional[str]:
        return callback_url(v)

    @field_validator("IdempotencyKey", mode="after")
    @classmethod
    def _idempotency_key(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        v = idempotency_key(v)
        if v is not None and not (info.data.get("redis") or redis_url_from_env() is not None):
            raise ValueError("needs a Redis to keep the key in (redis true with redisHost, or the function's "
                             "REDIS_URL)")
        return v

    @property
    def room(self) -> RoomRef:
        return RoomRef(self.roomId)

    @property
    def sources(self) -> list[str]:
        """videoSrc as a list: the one source, or the playlist in order."""
        return list(self.videoSrc) if isinstance(self.videoSrc, list) else [self.videoSrc]

    @property
    def is_playlist(self) -> bool:
        return isinstance(self.videoSrc, list)

    def redis_address(self) -> Optional[RedisAddress]:
        """The Redis this push uses (checkpoints when `redis` is true, and the control channel), or
        None: a push has a Redis when `redis` is true or the function has REDIS_URL."""
        if not (self.redis or redis_url_from_env() is not None):
            return None
        return address_of(self.redisHost, self.redisPort, self.redisPassword, self.redisDb)

