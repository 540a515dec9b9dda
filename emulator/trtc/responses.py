"""TRTC 2019-07-22 on the Cloud API 3.0 endpoint: RemoveUser(ByStrRoomId), DismissRoom(ByStrRoomId),
routed by urls.py.

Parameters are checked the way the service checks them and refused with its error codes
(MissingParameter.*, InvalidParameter.*, FailedOperation.RoomNotExist); the rooms do the rest.
"""
from __future__ import annotations

from typing import Any, Mapping

from emulator.cloudapi import CloudApiResponse
from shared.room.base import MAX_ROOM_ID, RoomRef

from .exceptions import NoSuchRoom, room_not_exist
from .models import Rooms

MAX_USERS_PER_REMOVE = 10


class TrtcResponse(CloudApiResponse):
    MISSING = "MissingParameter.{name}"
    INVALID = "InvalidParameter.{name}"

    def __init__(self, rooms: Rooms, params: Mapping[str, Any]):
        super().__init__(params)
        self.rooms = rooms

    # --- parameters TRTC reads its own way ----------------------------------------------------

    def _sdk_app_id(self) -> int:
        value = self.get_int_param("SdkAppId", required=True)
        if value not in self.rooms.apps:
            raise self.invalid("SdkAppId", f"`SdkAppId` {value} is not an application of this account.")
        return value

    def _room(self, string_room: bool) -> RoomRef:
        value = self.get_param("RoomId", required=True)
        code = "InvalidParameter.StrRoomId" if string_room else None
        if string_room:
            if not isinstance(value, str):
                raise self.invalid("RoomId", f"`RoomId` must be a string of 1..64 bytes (got {value!r}).", code)
        else:
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.invalid("RoomId", f"`RoomId` must be an integer in 1..{MAX_ROOM_ID} (got {value!r}).")
        try:
            return RoomRef(value)
        except ValueError as e:
            raise self.invalid("RoomId", f"`RoomId` is invalid: {e}.", code) from None

    def _user_ids(self) -> list[str]:
        users = self.get_list_param("UserIds", required=True, what="a non-empty list of user ids",
                                    each=lambda u: isinstance(u, str) and u)
        if len(users) > MAX_USERS_PER_REMOVE:
            raise self.invalid("UserIds", f"`UserIds` may name at most {MAX_USERS_PER_REMOVE} users "
                                          f"(got {len(users)}).")
        return users

    # --- the actions ----------------------------------------------------------------------------

    def _remove_user(self, string_room: bool) -> dict[str, Any]:
        app = self._sdk_app_id()
        room = self._room(string_room)
        users = self._user_ids()
        try:
            self.rooms.remove_users(app, room, users)
        except NoSuchRoom:
            raise room_not_exist(room.id) from None
        return {}

    def _dismiss_room(self, string_room: bool) -> dict[str, Any]:
        app = self._sdk_app_id()
        room = self._room(string_room)
        try:
            self.rooms.dismiss(app, room)
        except NoSuchRoom:
            raise room_not_exist(room.id) from None
        return {}

    def remove_user(self) -> dict[str, Any]:
        return self._remove_user(string_room=False)

    def remove_user_by_str_room_id(self) -> dict[str, Any]:
        return self._remove_user(string_room=True)

    def dismiss_room(self) -> dict[str, Any]:
        return self._dismiss_room(string_room=False)

    def dismiss_room_by_str_room_id(self) -> dict[str, Any]:
        return self._dismiss_room(string_room=True)
