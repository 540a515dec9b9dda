"""TRTC 2019-07-22 on the Cloud API 3.0 endpoint: RemoveUser(ByStrRoomId), DismissRoom(ByStrRoomId).

Parameters are checked the way the service checks them and refused with its error codes
(MissingParameter, InvalidParameter.*, FailedOperation.RoomNotExist); the rooms do the rest.
"""
from __future__ import annotations

from typing import Any, Callable

from emulator.cloudapi import ApiError, CloudApi
from shared.room.base import MAX_ROOM_ID, RoomRef

from .models import NoSuchRoom, Rooms

SERVICE = "trtc"
VERSION = "2019-07-22"
MAX_USERS_PER_REMOVE = 10


def _sdk_app_id(params: dict[str, Any], rooms: Rooms) -> int:
    if "SdkAppId" not in params:
        raise ApiError("MissingParameter.SdkAppId", "The request is missing the required parameter `SdkAppId`.")
    value = params["SdkAppId"]
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError("InvalidParameter.SdkAppId", f"`SdkAppId` must be an integer (got {value!r}).")
    if value not in rooms.apps:
        raise ApiError("InvalidParameter.SdkAppId", f"`SdkAppId` {value} is not an application of this account.")
    return value


def _room(params: dict[str, Any], string_room: bool) -> RoomRef:
    if "RoomId" not in params:
        raise ApiError("MissingParameter.RoomId", "The request is missing the required parameter `RoomId`.")
    value = params["RoomId"]
    if string_room:
        if not isinstance(value, str):
            raise ApiError("InvalidParameter.StrRoomId", f"`RoomId` must be a string of 1..64 bytes (got {value!r}).")
    else:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError("InvalidParameter.RoomId", f"`RoomId` must be an integer in 1..{MAX_ROOM_ID} (got {value!r}).")
    try:
        return RoomRef(value)
    except ValueError as e:
        code = "InvalidParameter.StrRoomId" if string_room else "InvalidParameter.RoomId"
        raise ApiError(code, f"`RoomId` is invalid: {e}.") from None


def _user_ids(params: dict[str, Any]) -> list[str]:
    if "UserIds" not in params:
        # A GET request flattens the list into UserIds.0, UserIds.1, ...
        flat = sorted((k for k in params if k.startswith("UserIds.") and k[8:].isdigit()), key=lambda k: int(k[8:]))
        if flat:
            params = {**params, "UserIds": [params[k] for k in flat]}
    if "UserIds" not in params:
        raise ApiError("MissingParameter.UserIds", "The request is missing the required parameter `UserIds`.")
    value = params["UserIds"]
    if not isinstance(value, list) or not value or not all(isinstance(u, str) and u for u in value):
        raise ApiError("InvalidParameter.UserIds", "`UserIds` must be a non-empty list of user ids.")
    if len(value) > MAX_USERS_PER_REMOVE:
        raise ApiError("InvalidParameter.UserIds", f"`UserIds` may name at most {MAX_USERS_PER_REMOVE} users (got {len(value)}).")
    return value


def _room_not_exist(room: RoomRef) -> ApiError:
    return ApiError("FailedOperation.RoomNotExist", f"The room {room.id!r} does not exist.")


def actions(rooms: Rooms) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    def remove(string_room: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def action(params: dict[str, Any]) -> dict[str, Any]:
            app = _sdk_app_id(params, rooms)
            room = _room(params, string_room)
            users = _user_ids(params)
            try:
                rooms.remove_users(app, room, users)
            except NoSuchRoom:
                raise _room_not_exist(room) from None
            return {}
        return action

    def dismiss(string_room: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def action(params: dict[str, Any]) -> dict[str, Any]:
            app = _sdk_app_id(params, rooms)
            room = _room(params, string_room)
            try:
                rooms.dismiss(app, room)
            except NoSuchRoom:
                raise _room_not_exist(room) from None
            return {}
        return action

    return {
        "RemoveUser": remove(False),
        "RemoveUserByStrRoomId": remove(True),
        "DismissRoom": dismiss(False),
        "DismissRoomByStrRoomId": dismiss(True),
    }


def register(cloud_api: CloudApi, rooms: Rooms) -> None:
    cloud_api.register(SERVICE, VERSION, actions(rooms))
