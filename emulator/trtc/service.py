"""The TRTC service as one thing to start and stop: the rooms (models.Rooms), the room server members
connect to (room_server.RoomServer), and TRTC's actions on a Cloud API endpoint (urls.register).

    service = RoomService().start()
    service.address            # "127.0.0.1:PORT" for ROOM_BACKEND=local, LOCAL_ROOM_ADDRESS=...
    service.usersig("alice")   # a UserSig valid in these rooms
    service.trtc_client()      # tencentcloud TrtcClient pointed at the Cloud API endpoint
    service.stop()
"""
from __future__ import annotations

import secrets
from typing import Any

from emulator.clients import trtc_client
from emulator.cloudapi import CloudApi

from . import signature as _usersig, urls
from .models import DEFAULT_DISMISS_AFTER_S, Rooms
from .room_server import RoomServer

DEFAULT_SDK_APP_ID = 1400000001
DEFAULT_SDK_SECRET_KEY = "emulator-sdk-secret-key-0123456789abcdef"


class RoomService:
    """The room server plus the TRTC actions on a Cloud API endpoint (its own unless one is given)."""

    def __init__(self, sdk_app_id: int = DEFAULT_SDK_APP_ID, sdk_secret_key: str = DEFAULT_SDK_SECRET_KEY,
                 *, host: str = "127.0.0.1", port: int = 0, dismiss_after: float = DEFAULT_DISMISS_AFTER_S,
                 cloud_api: CloudApi | None = None, secret_id: str | None = None, secret_key: str | None = None,
                 apps: dict[int, str] | None = None):
        self.sdk_app_id = int(sdk_app_id)
        self.sdk_secret_key = sdk_secret_key
        self.rooms = Rooms({**(apps or {}), self.sdk_app_id: sdk_secret_key}, dismiss_after=dismiss_after)
        self.server = RoomServer(self.rooms, host=host, port=port)
        self._own_api = cloud_api is None
        if cloud_api is None:
            cloud_api = CloudApi(secret_id or "AKIDemulator" + secrets.token_hex(8),
                                 secret_key or secrets.token_hex(16), host=host)
        self.cloud_api = cloud_api
        urls.register(cloud_api, self.rooms)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "RoomService":
        self.server.start()
        if self._own_api:
            self.cloud_api.start()
        return self

    def stop(self) -> None:
        if self._own_api:
            self.cloud_api.stop()
        self.server.stop()

    def __enter__(self) -> "RoomService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what clients need -------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def env(self) -> dict[str, str]:
        return {"ROOM_BACKEND": "local", "LOCAL_ROOM_ADDRESS": self.address}

    @property
    def cloud_api_endpoint(self) -> str:
        return self.cloud_api.endpoint

    @property
    def secret_id(self) -> str:
        return self.cloud_api.secret_id

    @property
    def secret_key(self) -> str:
        return self.cloud_api.secret_key

    def usersig(self, user_id: str, expire_s: int = _usersig.DEFAULT_EXPIRE_S) -> str:
        return _usersig.generate(self.sdk_app_id, self.sdk_secret_key, user_id, expire_s=expire_s)

    def trtc_client(self, secret_id: str | None = None, secret_key: str | None = None,
                    region: str = "ap-guangzhou", method: str = "POST") -> Any:
        """A real tencentcloud TrtcClient talking to this endpoint over plain HTTP."""
        return trtc_client(self.cloud_api.info, secret_id=secret_id or self.secret_id,
                           secret_key=secret_key or self.secret_key, region=region, method=method, timeout=10)
