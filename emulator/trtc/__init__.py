"""Emulated TRTC: rooms (models), the room server members connect to (server), and the TRTC actions
of Cloud API 3.0 (api). `RoomService` starts them together.

    service = RoomService().start()
    service.address            # "127.0.0.1:PORT" for ROOM_BACKEND=local, LOCAL_ROOM_ADDRESS=...
    service.usersig("alice")   # a UserSig valid in these rooms
    service.trtc_client()      # tencentcloud TrtcClient pointed at the Cloud API endpoint
    service.stop()
"""
from __future__ import annotations

import secrets
from typing import Any

from emulator.cloudapi import CloudApi
from . import signature as _usersig

from . import responses as api
from .models import DEFAULT_DISMISS_AFTER_S, Rooms
from .room_server import RoomServer

DEFAULT_SDK_APP_ID = 1400000001
DEFAULT_SDK_SECRET_KEY = "emulator-sdk-secret-key-0123456789abcdef"

__all__ = ["RoomService", "Rooms", "RoomServer", "DEFAULT_SDK_APP_ID", "DEFAULT_SDK_SECRET_KEY",
           "DEFAULT_DISMISS_AFTER_S"]


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
        api.register(cloud_api, self.rooms)

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
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.trtc.v20190722 import trtc_client

        cred = credential.Credential(secret_id or self.secret_id, secret_key or self.secret_key)
        http = HttpProfile(endpoint=self.cloud_api_endpoint, protocol="http", reqMethod=method, reqTimeout=10)
        return trtc_client.TrtcClient(cred, region, ClientProfile(httpProfile=http))


def usersig(user_id: str, sdk_app_id: int = DEFAULT_SDK_APP_ID, sdk_secret_key: str = DEFAULT_SDK_SECRET_KEY,
            expire_s: int = _usersig.DEFAULT_EXPIRE_S) -> str:
    """A UserSig valid in the emulator's rooms (what `python -m emulator usersig USER_ID` prints)."""
    return _usersig.generate(sdk_app_id, sdk_secret_key, user_id, expire_s=expire_s)
