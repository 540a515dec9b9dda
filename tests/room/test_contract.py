"""The room contract: what every room backend does, checked against a running emulator."""
from __future__ import annotations

import itertools

import pytest

from shared.room import EnterParams, Role, RoomRef, UserEntered

_room_ids = itertools.count(1000)


def test_entering_works_and_others_see_the_anchor(new_room, room_service):
    room_id = next(_room_ids)
    a, b = new_room(), new_room()
    b.enter(EnterParams(room_service.sdk_app_id, RoomRef(room_id), "b", room_service.usersig("b")))
    a.enter(EnterParams(room_service.sdk_app_id, RoomRef(room_id), "a", room_service.usersig("a")))
    try:
        assert b.poll(5) == UserEntered("a")
        assert room_service.rooms.user_ids(room_service.sdk_app_id, room_id) == ["a", "b"]
    finally:
        a.exit()
        b.exit()
