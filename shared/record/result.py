"""A recording's result, one shape whichever way it ended: the run's own end and a recovery both
build it here (the seed's keys first, in the order the result has always had them).

    {"SdkAppId", "RoomId", "UserId", "StrRoomId", "Files": [file_entry(...)], "status", "Reason",
     "Message", "RequestId", "CallbackId"}
    file_entry: {"UserId", "RecordFile", "Status", "Message", "Duration", "StartTime"} + what the
                file's outputs add (LocalPath for what is kept)
"""
from __future__ import annotations

from typing import Any

from .callback import with_callback_id

MESSAGE_OK = "success"
# The result's "status": "failed" ends the run FAILED (SCF's async event status, as push_stream's).
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"


def file_entry(user_id: str, duration_s: float, start_ms: int, made: dict[str, Any],
               message_ok: str = MESSAGE_OK) -> dict[str, Any]:
    """One Files[] entry from what the file's outputs made (RecordFile, Status, Message, ...)."""
    entry = {"UserId": user_id, "RecordFile": made["RecordFile"], "Status": made["Status"],
             "Message": message_ok if made["Status"] == 1 else made["Message"],
             "Duration": round(duration_s, 3), "StartTime": start_ms}
    entry.update({k: v for k, v in made.items() if k not in entry})
    return entry


def run_result(*, sdk_app_id: int, room_id: int, user_id: str, str_room_id: str, files: list[dict[str, Any]],
               reason: str, message: str, request_id: str, status: str = STATUS_FINISHED) -> dict[str, Any]:
    """The result returned, POSTed to Callback and kept in the state bucket (with its CallbackId)."""
    return with_callback_id({
        "SdkAppId": sdk_app_id,
        "RoomId": room_id,
        "UserId": user_id,
        "StrRoomId": str_room_id,
        "Files": files,
        "status": status,
        "Reason": reason,
        "Message": message,
        "RequestId": request_id,
    })
