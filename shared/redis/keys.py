"""Every key the project keeps in Redis: the whole `trtc-push:*` keyspace, in one file.

Checkpoints (shared.push.checkpoint), one hash per (sdkAppId, room, videoSrc), and one per playlist:

    trtc-push:<sdkAppId>:<room key>:<sha256(videoSrc)[:32]>          hash  a source's progress
    trtc-push:<sdkAppId>:<room key>:list:<sha256(json list)[:32]>    hash  a playlist's progress

The control channel (shared.push.control). The keys of one push share the hash tag `{requestId}`, so
that every script touches one slot of a cluster:

    trtc-push:run:{<requestId>}           hash    the running push (its registration)
    trtc-push:inbox:{<requestId>}         list    commands not yet taken, each "<redis ms> <json>"
    trtc-push:reply:{<requestId>}:<id>    list    the push's answer to command <id>
    trtc-push:ended:{<requestId>}         hash    why the push ended (for a helpful 404)
    trtc-push:user:<sdkAppId>:<room key>:<userId>  string  the newest push of that user in that room

Idempotent starts (shared.events.idempotency), one per IdempotencyKey, kept 24 h (SET NX EX):

    trtc-push:idem:<function>:<sdkAppId>:<digest of the key>    string  {"RequestId", "Fingerprint", "At"}

A room is anything with a `key` (shared.room.RoomRef): this module stays below the room package.
"""
from __future__ import annotations

import hashlib
import json
from typing import Protocol

PREFIX = "trtc-push"


class Room(Protocol):
    @property
    def key(self) -> str: ...


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def checkpoint_key(sdk_app_id: int, room: Room, video_src: str) -> str:
    return f"{PREFIX}:{sdk_app_id}:{room.key}:{_digest(video_src)}"


def playlist_key(sdk_app_id: int, room: Room, sources: list[str]) -> str:
    return f"{PREFIX}:{sdk_app_id}:{room.key}:list:{_digest(json.dumps(sources))}"


def run_key(request_id: str) -> str:
    return f"{PREFIX}:run:{{{request_id}}}"


def inbox_key(request_id: str) -> str:
    return f"{PREFIX}:inbox:{{{request_id}}}"


def reply_key(request_id: str, command_id: str) -> str:
    return f"{PREFIX}:reply:{{{request_id}}}:{command_id}"


def ended_key(request_id: str) -> str:
    return f"{PREFIX}:ended:{{{request_id}}}"


def user_key(sdk_app_id: int, room: Room, user_id: str) -> str:
    return f"{PREFIX}:user:{sdk_app_id}:{room.key}:{user_id}"


def idempotency_key(function: str, sdk_app_id: int, digest: str) -> str:
    return f"{PREFIX}:idem:{function}:{sdk_app_id}:{digest}"
