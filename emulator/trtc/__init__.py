"""Emulated TRTC: rooms (models), the room server members connect to (room_server), and the TRTC
actions of Cloud API 3.0 (responses, routed by urls). `RoomService` (service) starts them together.

    service = RoomService().start()
    service.address            # "127.0.0.1:PORT" for ROOM_BACKEND=local, LOCAL_ROOM_ADDRESS=...
    service.usersig("alice")   # a UserSig valid in these rooms
    service.trtc_client()      # tencentcloud TrtcClient pointed at the Cloud API endpoint
    service.stop()
"""
from __future__ import annotations

from . import signature as _usersig
from .models import DEFAULT_DISMISS_AFTER_S, Rooms
from .room_server import RoomServer
from .service import DEFAULT_SDK_APP_ID, DEFAULT_SDK_SECRET_KEY, RoomService

__all__ = ["RoomService", "Rooms", "RoomServer", "DEFAULT_SDK_APP_ID", "DEFAULT_SDK_SECRET_KEY",
           "DEFAULT_DISMISS_AFTER_S"]


def usersig(user_id: str, sdk_app_id: int = DEFAULT_SDK_APP_ID, sdk_secret_key: str = DEFAULT_SDK_SECRET_KEY,
            expire_s: int = _usersig.DEFAULT_EXPIRE_S) -> str:
    """A UserSig valid in the emulator's rooms (what `python -m emulator usersig USER_ID` prints)."""
    return _usersig.generate(sdk_app_id, sdk_secret_key, user_id, expire_s=expire_s)
