"""push_stream's parameters: the seed's names and types (000/001), plus the optional extensions.

The gateway hands strings, so "true", "1400000001" and "6379" are accepted where a bool or an int
is meant (pydantic's lax mode); a boolean is never a number (shared.contracts.fields.Params). Every
bad field is reported at once; `shared.gateway` turns the errors into one sentence naming them.
"""
from __future__ import annotations

import re
from typing import Optional, Union

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from shared.room.base import MAX_ROOM_ID, Role, RoomRef
from shared.runtime import redact_value

from .fields import Params, check_url

DEFAULT_REDIS_PORT = 6379
# Bounds that keep every duration a finite, convertible number of seconds (a pusher multiplies
# them into timestamps and deadlines): a week of media per run, a seek of at most a year.
MAX_DURATION_S = 7 * 86_400
MAX_SEEK_S = 365 * 86_400

# Characters TRTC allows in a string room id (besides letters and digits).
_STR_ROOM_ID = re.compile(r"^[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{}|~,]{1,64}$")
_INT_ROOM_ID = re.compile(r"^[1-9][0-9]{0,9}$")


def _looks_like_int_room(room_id: Union[int, str]) -> bool:
    if isinstance(room_id, int):
        return 1 <= room_id <= MAX_ROOM_ID
    return bool(_INT_ROOM_ID.match(room_id)) and int(room_id) <= MAX_ROOM_ID


class PushParams(Params):
    """One push_stream request. Secrets are SecretStr: their repr never shows them."""

    # --- the seed's parameters ---
    videoSrc: str = Field(min_length=1, max_length=4096)
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
    redisDb: int = Field(default=0, ge=0, le=1023)

    @field_validator("videoSrc", mode="after")
    @classmethod
    def _video_src(cls, v: str) -> str:
        check_url(v)
        return v

    @field_validator("userSig", "redisPassword", mode="after")
    @classmethod
    def _remember_secret(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        # The logger scrubs these values from every later line, even inside free text.
        if v is not None:
            redact_value(v.get_secret_value())
        return v

    @field_validator("userSig", mode="after")
    @classmethod
    def _sig_not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("roomIdType", mode="after")
    @classmethod
    def _room_id_type(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v not in (0, 1):
            raise ValueError("must be 1 (32-bit integer room) or 0 (string room)")
        return v

    @field_validator("roomId", mode="after")
    @classmethod
    def _room_id(cls, v: Union[int, str], info: ValidationInfo) -> Union[int, str]:
        kind = info.data.get("roomIdType")
        if isinstance(v, str) and not v:
            raise ValueError("must not be empty")
        if kind == 1 or (kind is None and isinstance(v, int)):
            if not _looks_like_int_room(v):
                raise ValueError(f"an integer room id must be in 1..{MAX_ROOM_ID}")
            return int(v)
        if kind is None and _looks_like_int_room(v):
            return int(v)
        text = str(v)
        if not _STR_ROOM_ID.match(text):
            raise ValueError("a string room id is 1..64 characters of letters, digits and "
                             "!#$%&()+-:;<=.>?@[]^_{}|~, or space")
        return text

    @field_validator("userId", mode="after")
    @classmethod
    def _user_id(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_\-@.]+$", v):
            raise ValueError("must be letters, digits, underscore, hyphen, @ or dot")
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
            raise ValueError("is required when redis is true")
        return v or None

    @property
    def room(self) -> RoomRef:
        return RoomRef(self.roomId)

    @property
    def wants_video_encode(self) -> bool:
        """True when any encode parameter was given, which rules out H.264 passthrough."""
        return any(v is not None for v in (self.videoWidth, self.videoHeight, self.videoFps,
                                           self.videoBitrate, self.videoGop))
