"""The room contract suite runs against both backends: `local` (LocalRoom on the emulator's room
server) and `trtc` (TRTCRoom over the fake liteav SDK, which itself runs on the emulator's rooms).
"""
from __future__ import annotations

from typing import Callable

import pytest

from shared.room import Room

BACKENDS = ["local", "trtc"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def room_factory(backend: str, address: str) -> Callable[[], Room]:
    host, _, port = address.rpartition(":")
    if backend == "local":
        from shared.room.local import LocalRoom

        return lambda: LocalRoom(host, int(port))
    from tests.fakes.liteav_fake import make_trtc_room

    return lambda: make_trtc_room(host, int(port))


@pytest.fixture
def new_room(backend: str, room_service) -> Callable[[], Room]:
    """A not-yet-entered room of the backend under test on the session's room service."""
    return room_factory(backend, room_service.address)
