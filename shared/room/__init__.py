"""The room layer: `open_room()` gives the backend chosen by the environment.

ROOM_BACKEND=trtc (the default in a deployment) is Tencent's service through `liteav`;
ROOM_BACKEND=local is the emulator's room server at LOCAL_ROOM_ADDRESS (host:port).
The trtc backend's own settings (LITEAV_LOG_LEVEL, TRTC_PUSH_SCENE, TRTC_RECORD_SCENE) are checked
here too, so that a wrong one fails the first call, not a run part-way.
"""
from __future__ import annotations

import importlib.util
import os

from .base import *  # noqa: F401,F403  (the room vocabulary is this package's public API)
from .base import Room

BACKENDS = ("trtc", "local")


class RoomConfigError(ValueError):
    """The environment does not name a usable room backend."""


def backend_from_env(env: "os._Environ[str] | dict[str, str] | None" = None) -> tuple[str, str | None]:
    """(backend, local address) from the environment, or RoomConfigError saying what is wrong."""
    env = os.environ if env is None else env
    backend = (env.get("ROOM_BACKEND") or "trtc").strip().lower()
    if backend not in BACKENDS:
        raise RoomConfigError(f"ROOM_BACKEND={backend!r} is not one of {', '.join(BACKENDS)}")
    address = None
    if backend == "trtc" and importlib.util.find_spec("liteav") is None:
        # Found without importing it: loading liteav is left to the moment a room is opened.
        raise RoomConfigError("ROOM_BACKEND=trtc needs Tencent's liteav package, which is not installed "
                              "(deploy it with the dependency layers, or set ROOM_BACKEND=local for the emulator)")
    if backend == "trtc":
        from .trtc import check_env  # the module itself does not import liteav

        try:
            check_env(env)
        except ValueError as e:
            raise RoomConfigError(str(e)) from None
    if backend == "local":
        address = (env.get("LOCAL_ROOM_ADDRESS") or "").strip()
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RoomConfigError(
                f"ROOM_BACKEND=local needs LOCAL_ROOM_ADDRESS=host:port (got {address!r})")
    return backend, address


def open_room(env: "dict[str, str] | None" = None) -> Room:
    """A new, not yet entered room of the configured backend. liteav is imported only for trtc."""
    backend, address = backend_from_env(env)
    if backend == "local":
        from .local import LocalRoom

        assert address is not None
        host, _, port = address.rpartition(":")
        return LocalRoom(host, int(port))
    from .trtc import TRTCRoom

    return TRTCRoom(env=os.environ if env is None else env)
