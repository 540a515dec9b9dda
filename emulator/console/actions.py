"""The console's buttons. Each goes through the same code as the API a client would call: the SCF
action TerminateAsyncEvent, TRTC's RemoveUser / DismissRoom (validation and error codes included),
and the API Gateway for starting a function, as the seeds' Postman step does."""
from __future__ import annotations

from typing import Any

import requests

from emulator.cloudapi import ApiError
from emulator.scf import urls as scf_api
from emulator.scf.exceptions import ScfError
from emulator.scf.models import Scf
from emulator.trtc import signature as usersig, urls as trtc_api
from emulator.trtc.models import Rooms

MAX_USER_ID_BYTES = 32


class ActionError(Exception):
    """Refused, with the API's own error code and message; `status` is the console's HTTP answer."""

    def __init__(self, code: str, message: str, status: int = 409):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


def _status_for(code: str) -> int:
    if code.startswith(("ResourceNotFound", "FailedOperation.RoomNotExist")):
        return 404
    if code.startswith(("MissingParameter", "InvalidParameter")):
        return 400
    return 409


def _call(action: Any, params: dict[str, Any]) -> dict[str, Any]:
    # What the page left out is missing, as in a request without it (MissingParameter, not Invalid).
    params = {k: v for k, v in params.items() if v is not None}
    try:
        return dict(action(params))
    except ApiError as e:
        raise ActionError(e.code, e.message, _status_for(e.code)) from None


class Actions:
    def __init__(self, scf: Scf, rooms: Rooms, gateway_url: str, sdk_app_id: int, sdk_secret_key: str):
        self._scf_actions = scf_api.actions(scf)
        self._trtc_actions = trtc_api.actions(rooms)
        self._scf = scf
        self.gateway_url = gateway_url
        self.sdk_app_id, self._sdk_secret_key = sdk_app_id, sdk_secret_key

    def terminate(self, request_id: str, grace: bool) -> dict[str, Any]:
        """TerminateAsyncEvent for the run, by its function's name (GraceShutdown: SIGTERM, else a kill)."""
        try:
            name = self._scf.get(request_id).function.name
        except ScfError:
            raise ActionError("ResourceNotFound.AsyncEvent", f"No run with request id `{request_id}`.", 404) from None
        return _call(self._scf_actions["TerminateAsyncEvent"],
                     {"FunctionName": name, "InvokeRequestId": request_id, "GraceShutdown": bool(grace)})

    def remove_users(self, sdk_app_id: Any, room_id: Any, string_room: bool, user_ids: Any) -> dict[str, Any]:
        action = "RemoveUserByStrRoomId" if string_room else "RemoveUser"
        return _call(self._trtc_actions[action], {"SdkAppId": sdk_app_id, "RoomId": room_id, "UserIds": user_ids})

    def dismiss(self, sdk_app_id: Any, room_id: Any, string_room: bool) -> dict[str, Any]:
        action = "DismissRoomByStrRoomId" if string_room else "DismissRoom"
        return _call(self._trtc_actions[action], {"SdkAppId": sdk_app_id, "RoomId": room_id})

    def usersig(self, user_id: Any) -> str:
        if not isinstance(user_id, str) or not 1 <= len(user_id.encode()) <= MAX_USER_ID_BYTES:
            raise ActionError("InvalidParameter.UserId", f"a user id is 1..{MAX_USER_ID_BYTES} bytes (got {user_id!r})", 400)
        return usersig.generate(self.sdk_app_id, self._sdk_secret_key, user_id)

    def start(self, function: str, body: bytes) -> dict[str, Any]:
        """POST the body to the gateway, as a client does; the answer as the gateway gave it."""
        if function not in self._scf.functions:
            raise ActionError("ResourceNotFound.Function", f"The function `{function}` does not exist.", 404)
        try:
            r = requests.post(f"{self.gateway_url}/{function}", data=body,
                              headers={"Content-Type": "application/json"}, timeout=10)
        except requests.RequestException as e:
            raise ActionError("FailedOperation.Gateway", f"the gateway did not answer: {e}", 502) from None
        return {"statusCode": r.status_code, "requestId": r.headers.get("x-scf-reqid"), "body": r.text}
