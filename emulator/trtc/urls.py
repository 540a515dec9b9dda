"""Which TRTC action the Cloud API endpoint runs for a request: service `trtc`, version 2019-07-22,
and each action's TrtcResponse method. (Members reach the rooms over room_server.py's TCP protocol.)"""
from __future__ import annotations

from typing import Any, Callable

from emulator.cloudapi import CloudApi, action_handlers

from .models import Rooms
from .responses import TrtcResponse

SERVICE = "trtc"
VERSION = "2019-07-22"
ACTIONS: dict[str, Callable[[TrtcResponse], dict[str, Any]]] = {
    "RemoveUser": TrtcResponse.remove_user,
    "RemoveUserByStrRoomId": TrtcResponse.remove_user_by_str_room_id,
    "DismissRoom": TrtcResponse.dismiss_room,
    "DismissRoomByStrRoomId": TrtcResponse.dismiss_room_by_str_room_id,
}


def actions(rooms: Rooms) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    return action_handlers(ACTIONS, lambda params: TrtcResponse(rooms, params))


def register(cloud_api: CloudApi, rooms: Rooms) -> None:
    cloud_api.register(SERVICE, VERSION, actions(rooms))
