"""The template's parameters for a function that joins a room as its own member (record_stream,
recognize_stream): SdkAppId, RoomId / StrRoomId, UserId, UserSig, one rule each; and the checks
of a Callback URL (shared.contracts.lifecycle's one rule) and of a comma-separated list of user ids,
which both functions also take.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from shared.room.base import MAX_ROOM_ID, RoomRef
from shared.secrets import redact_value

from .fields import STR_ROOM_ID, USER_ID, Params
from .lifecycle import callback_url

__all__ = ["RoomMember", "callback_url", "comma_list", "user_ids"]


def comma_list(v: Any) -> Any:
    """A form or query string carries "a,b,c"."""
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return v


def user_ids(v: Optional[list[str]]) -> Optional[list[str]]:
    if v is not None:
        bad = [u for u in v if not USER_ID.match(u)]
        if bad:
            raise ValueError(f"not user ids: {', '.join(repr(u) for u in bad[:5])}")
    return v


class RoomMember(Params):
    """The room and the function's own member in it. A subclass's fields follow these five."""

    SdkAppId: int = Field(gt=0, lt=1 << 32)
    RoomId: Optional[int] = None
    # Declared after RoomId so that its check sees whether RoomId was given (validation order).
    StrRoomId: Optional[str] = Field(default=None, validate_default=True)
    UserId: str
    UserSig: SecretStr

    @field_validator("RoomId", mode="after")
    @classmethod
    def _room_id(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and not 1 <= v <= MAX_ROOM_ID:
            raise ValueError(f"an integer room id must be in 1..{MAX_ROOM_ID}")
        return v

    @field_validator("StrRoomId", mode="before")
    @classmethod
    def _str_room_id_type(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("StrRoomId", mode="after")
    @classmethod
    def _str_room_id(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        v = v or None
        if v is not None and not STR_ROOM_ID.match(v):
            raise ValueError("a string room id is 1..64 characters of letters, digits and "
                             "!#$%&()+-:;<=.>?@[]^_{}|~, or space")
        # RoomId absent (rather than invalid, which leaves it out of info.data) and no StrRoomId.
        if v is None and "RoomId" in info.data and info.data["RoomId"] is None:
            raise ValueError("RoomId (integer) or StrRoomId (string) is required")
        return v

    @field_validator("UserId", mode="after")
    @classmethod
    def _user_id(cls, v: str) -> str:
        if not USER_ID.match(v):
            raise ValueError("must be 1..32 letters, digits, underscore, hyphen, @ or dot")
        return v

    @field_validator("UserSig", mode="after")
    @classmethod
    def _user_sig(cls, v: SecretStr) -> SecretStr:
        redact_value(v.get_secret_value())  # scrubbed from every later log line
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v

    @property
    def room(self) -> RoomRef:
        """The integer room when RoomId is given (it wins), else the string room."""
        room = self.RoomId if self.RoomId is not None else self.StrRoomId
        assert room is not None  # the model's validator requires one of the two
        return RoomRef(room)
