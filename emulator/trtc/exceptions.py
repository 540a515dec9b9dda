"""TRTC's errors: a refused entry keeps the room's own error code (-3320 invalid UserSig, ...), and
the Cloud API actions answer with TRTC's codes (FailedOperation.RoomNotExist, ...)."""
from __future__ import annotations

from typing import Any

from emulator.cloudapi import ApiError


class EnterError(Exception):
    """The room refused an entry; `code` is TRTC's (shared.room.base ERR_*)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class NoSuchRoom(KeyError):
    pass


def room_not_exist(room_id: Any) -> ApiError:
    return ApiError("FailedOperation.RoomNotExist", f"The room {room_id!r} does not exist.")
