"""The room layer: `open_room()` gives the backend chosen by the environment.

ROOM_BACKEND=trtc (the default in a deployment) is Tencent's service through `liteav`;
ROOM_BACKEND=local is the emulator's room server at LOCAL_ROOM_ADDRESS (host:port).
The trtc backend's own settings (LITEAV_LOG_LEVEL, TRTC_PUSH_SCENE, TRTC_RECORD_SCENE) are checked
here too, so that a wrong one fails the first call, not a run part-way.
"""
from __future__ import annotations

import importlib.util

from shared.settings import ConfigError, settings

from .base import *  # noqa: F401,F403  (the room vocabulary is this package's public API)
from .base import Room


class RoomConfigError(ConfigError):
    """The environment does not name a usable room backend."""


def backend_from_env() -> tuple[str, str | None]:
    """(backend, local address) from the settings, or a ValueError saying what is wrong.

    Checks every setting (shared/settings.py) too: this is the functions' preflight."""
    s = settings()
    if s.room_backend == "trtc" and importlib.util.find_spec("liteav") is None:
        # Found without importing it: loading liteav is left to the moment a room is opened.
        raise RoomConfigError("ROOM_BACKEND=trtc needs Tencent's liteav package, which is not installed "
                              "(use the project's container image, or set ROOM_BACKEND=local for the emulator)")
    return s.room_backend, s.local_room_address


def open_room() -> Room:
    """A new, not yet entered room of the configured backend. liteav is imported only for trtc."""
    backend, address = backend_from_env()
    if backend == "local":
        from .local import LocalRoom

        assert address is not None
        host, _, port = address.rpartition(":")
        return LocalRoom(host, int(port))
    from .trtc import TRTCRoom

    return TRTCRoom()
