"""TRTC rooms: state and behaviour, no I/O.

A member reaches the outside world only through its `Sink` (the server gives each connection one).
Everything here is guarded by one lock, because the room server's loop and the Cloud API's HTTP
threads (RemoveUser, DismissRoom) both act on the same rooms.

As in TRTC, only anchors are visible to the others: an audience member gets events and media but
nobody is told that it entered or left.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Union

from shared.room import wire
from shared.room.base import (
    ERR_BANNED_BY_SERVER,
    ERR_INVALID_PARAMETER,
    ERR_INVALID_ROOM_ID,
    ERR_INVALID_SDK_APP_ID,
    ERR_INVALID_USER_ID,
    ERR_INVALID_USER_SIG,
    EVERY_STREAM,
    LEFT_KICKED,
    CloseReason,
    Role,
    RoomRef,
    Subscription,
)
from shared.room.wire import Message

from . import signature as usersig
from .exceptions import EnterError, NoSuchRoom

log = logging.getLogger("emulator.trtc")

DEFAULT_DISMISS_AFTER_S = 300.0
MAX_USER_ID_BYTES = 32  # TRTC: userId up to 32 bytes


class Sink(Protocol):
    """Where a member's messages go. `send` may be called from any thread and must not block."""

    def send(self, message: Message) -> None: ...

    def close(self) -> None:
        """Close after what was sent so far has gone out."""


@dataclass(eq=False)
class Member:
    user_id: str
    role: Role
    sink: Sink
    receive: Subscription = EVERY_STREAM
    audio_on: bool = False
    video_on: bool = False
    room: "RoomState | None" = None

    @property
    def is_anchor(self) -> bool:
        return self.role is Role.ANCHOR


@dataclass(eq=False)
class RoomState:
    sdk_app_id: int
    ref: RoomRef
    members: dict[str, Member] = field(default_factory=dict)
    # monotonic time since when the room has had no anchor; None while it has one
    anchorless_since: float | None = None
    created_at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[int, str]:
        return (self.sdk_app_id, self.ref.key)

    def anchors(self) -> list[Member]:
        return [m for m in self.members.values() if m.is_anchor]

    def others(self, member: Member) -> list[Member]:
        return [m for m in self.members.values() if m is not member]


def _closed(reason: CloseReason, code: int, message: str) -> Message:
    return Message({"t": wire.CLOSED, "reason": reason.value, "code": code, "msg": message})


def _user_left(user_id: str, reason: int) -> Message:
    return Message({"t": wire.USER_LEFT, "u": user_id, "r": reason})


class Rooms:
    """Every room of every application the emulator hosts."""

    def __init__(self, apps: dict[int, str], dismiss_after: float = DEFAULT_DISMISS_AFTER_S,
                 clock: Callable[[], float] = time.monotonic):
        self.apps = dict(apps)  # sdkAppId -> secret key
        self.dismiss_after = float(dismiss_after)
        self._clock = clock
        self._lock = threading.RLock()
        self.rooms: dict[tuple[int, str], RoomState] = {}
        # Called with every relayed media packet (the console's live figures and watch page). A tap
        # runs under the lock on the room server's thread: it must only count and queue.
        self.taps: list[Callable[[RoomState, str, Message], None]] = []

    # --- lookups (for the API and for tests) -------------------------------------------------

    def get(self, sdk_app_id: int, room: Union[int, str, RoomRef]) -> RoomState | None:
        ref = room if isinstance(room, RoomRef) else RoomRef(room)
        with self._lock:
            return self.rooms.get((int(sdk_app_id), ref.key))

    def user_ids(self, sdk_app_id: int, room: Union[int, str, RoomRef]) -> list[str]:
        with self._lock:
            state = self.get(sdk_app_id, room)
            return sorted(state.members) if state else []

    def snapshot(self) -> list[dict[str, Any]]:
        """Every room and its members as plain data, read under the lock (for the console)."""
        now, wall = self._clock(), time.monotonic()  # created_at is on the monotonic clock
        with self._lock:
            return [{"sdkAppId": s.sdk_app_id, "roomId": s.ref.id, "strRoom": s.ref.is_string, "key": s.ref.key,
                     "ageS": round(wall - s.created_at, 1),
                     "anchorlessS": None if s.anchorless_since is None else round(now - s.anchorless_since, 1),
                     "members": [{"userId": m.user_id, "role": m.role.value, "audio": m.audio_on,
                                  "video": m.video_on, "receivesMedia": m.receive.any}
                                 for m in s.members.values()]}
                    for s in self.rooms.values()]

    # --- entering and leaving ----------------------------------------------------------------

    def _admit(self, sdk_app_id: Any, room_id: Any, user_id: Any, user_sig: Any, role: Any) -> tuple[RoomRef, Role]:
        """The room and the role of an entry whose every field is right; EnterError with TRTC's code."""
        if isinstance(sdk_app_id, bool) or not isinstance(sdk_app_id, int) or sdk_app_id not in self.apps:
            raise EnterError(ERR_INVALID_SDK_APP_ID, f"sdkAppId {sdk_app_id!r} is not an application of this emulator")
        try:
            ref = RoomRef(room_id)
        except ValueError as e:
            raise EnterError(ERR_INVALID_ROOM_ID, f"invalid room id {room_id!r}: {e}") from None
        if not isinstance(user_id, str) or not user_id or len(user_id.encode()) > MAX_USER_ID_BYTES:
            raise EnterError(ERR_INVALID_USER_ID, f"userId must be 1..{MAX_USER_ID_BYTES} bytes (got {user_id!r})")
        try:
            role = Role(role)
        except ValueError:
            raise EnterError(ERR_INVALID_PARAMETER, f"role must be anchor or audience (got {role!r})") from None
        if not isinstance(user_sig, str):
            raise EnterError(ERR_INVALID_USER_SIG, "UserSig must be a string")
        try:
            usersig.verify(user_sig, sdk_app_id, self.apps[sdk_app_id], user_id)
        except usersig.UserSigError as e:
            raise EnterError(ERR_INVALID_USER_SIG, f"invalid UserSig: {e}") from None
        return ref, role

    def enter(self, sdk_app_id: Any, room_id: Any, user_id: Any, user_sig: Any, role: Any, sink: Sink,
              receive: Subscription = EVERY_STREAM) -> Member:
        """Verify and admit; raise EnterError with TRTC's code. Tells the room and the newcomer."""
        ref, role = self._admit(sdk_app_id, room_id, user_id, user_sig, role)
        member = Member(user_id, role, sink, receive=receive)
        with self._lock:
            key = (sdk_app_id, ref.key)
            state = self.rooms.get(key)
            if state is None:
                state = self.rooms[key] = RoomState(sdk_app_id, ref, anchorless_since=self._clock())
                log.info("room %s of app %s created", ref, sdk_app_id)
            old = state.members.get(user_id)
            if old is not None:
                # TRTC lets the newest client in and pushes the earlier one out.
                self._drop(old, LEFT_KICKED, _closed(CloseReason.REPLACED, ERR_BANNED_BY_SERVER,
                                                       f"user {user_id} entered the room from another client"))
                state = self.rooms.setdefault(key, state)
            member.room = state
            state.members[user_id] = member
            member.sink.send(Message({"t": wire.ENTERED, "room": ref.id, "user": user_id, "role": role.value}))
            # The newcomer learns about the anchors already there, as TRTC does.
            for other in state.others(member):
                if other.is_anchor:
                    member.sink.send(Message({"t": wire.USER_ENTERED, "u": other.user_id}))
                    if other.audio_on:
                        member.sink.send(Message({"t": wire.AUDIO_AVAILABLE, "u": other.user_id, "on": True}))
                    if other.video_on:
                        member.sink.send(Message({"t": wire.VIDEO_AVAILABLE, "u": other.user_id, "on": True}))
            if member.is_anchor:
                state.anchorless_since = None
            elif state.anchorless_since is None and not state.anchors():
                state.anchorless_since = self._clock()
            if member.is_anchor:
                self._tell_others(member, Message({"t": wire.USER_ENTERED, "u": user_id}))
        log.info("%s entered room %s of app %s as %s", user_id, ref, sdk_app_id, role.value)
        return member

    def leave(self, member: Member, reason: int) -> None:
        """The member is gone (exit: LEFT_NORMALLY, lost connection: LEFT_TIMEOUT). Idempotent."""
        with self._lock:
            self._drop(member, reason, None)

    def _drop(self, member: Member, reason: int, closed: Message | None) -> None:
        state = member.room
        if state is None or state.members.get(member.user_id) is not member:
            return
        del state.members[member.user_id]
        member.room = None
        if closed is not None:
            member.sink.send(closed)
            member.sink.close()
        if member.is_anchor:
            if member.audio_on:
                self._tell_others(member, Message({"t": wire.AUDIO_AVAILABLE, "u": member.user_id, "on": False}), state)
            if member.video_on:
                self._tell_others(member, Message({"t": wire.VIDEO_AVAILABLE, "u": member.user_id, "on": False}), state)
            self._tell_others(member, _user_left(member.user_id, reason), state)
        if not state.members:
            self.rooms.pop(state.key, None)
            log.info("room %s of app %s is empty and gone", state.ref, state.sdk_app_id)
        elif not state.anchors() and state.anchorless_since is None:
            state.anchorless_since = self._clock()
        log.info("%s left room %s (reason %s)", member.user_id, state.ref, reason)

    def _tell_others(self, member: Member, message: Message, state: RoomState | None = None) -> None:
        state = state or member.room
        if state is None:
            return
        for other in state.others(member):
            other.sink.send(message)

    # --- publishing --------------------------------------------------------------------------

    def start_media(self, member: Member, kind: str) -> bool:
        """An anchor opened its audio ("a") or video ("v") channel; False for an audience."""
        with self._lock:
            if member.room is None or not member.is_anchor:
                return False
            attr = "audio_on" if kind == "a" else "video_on"
            if not getattr(member, attr):
                setattr(member, attr, True)
                t = wire.AUDIO_AVAILABLE if kind == "a" else wire.VIDEO_AVAILABLE
                self._tell_others(member, Message({"t": t, "u": member.user_id, "on": True}))
            return True

    def relay(self, member: Member, message: Message) -> bool:
        """Forward an anchor's media packet, as sent, to every other member that takes media."""
        with self._lock:
            state = member.room
            if state is None or not member.is_anchor:
                return False
            out = Message({**message.header, "u": member.user_id}, message.payload)
            video = message.type == wire.VIDEO
            for other in state.members.values():
                if other is not member and other.receive.takes(member.user_id, video):
                    other.sink.send(out)
            for tap in self.taps:
                try:
                    tap(state, member.user_id, out)
                except Exception:  # a looker's bug never costs the room its media
                    log.exception("a media tap failed")
            return True

    def request_key_frame(self, member: Member, target_user: str) -> bool:
        with self._lock:
            state = member.room
            target = state.members.get(target_user) if state else None
            if target is None or target is member:
                return False
            target.sink.send(Message({"t": wire.KEY_FRAME_REQUESTED, "from": member.user_id}))
            return True

    # --- the service's own actions -----------------------------------------------------------

    def remove_users(self, sdk_app_id: int, room: RoomRef, user_ids: list[str]) -> list[str]:
        """RemoveUser: those present are pushed out (-205) and the room told (reason 2)."""
        with self._lock:
            state = self.rooms.get((sdk_app_id, room.key))
            if state is None:
                raise NoSuchRoom(room.key)
            removed = []
            for uid in user_ids:
                member = state.members.get(uid)
                if member is not None:
                    self._drop(member, LEFT_KICKED, _closed(CloseReason.REMOVED, ERR_BANNED_BY_SERVER,
                                                            "removed from the room by the server"))
                    removed.append(uid)
            return removed

    def dismiss(self, sdk_app_id: int, room: RoomRef, why: str = "the room was dismissed") -> None:
        """DismissRoom: everyone is told and the room is gone."""
        with self._lock:
            state = self.rooms.pop((sdk_app_id, room.key), None)
            if state is None:
                raise NoSuchRoom(room.key)
            members = list(state.members.values())
            state.members.clear()
            message = _closed(CloseReason.DISMISSED, 0, why)
            for member in members:
                member.room = None
                member.sink.send(message)
                member.sink.close()
        log.info("room %s of app %s dismissed: %s", room, sdk_app_id, why)

    def sweep(self) -> list[RoomState]:
        """Dismiss rooms that have had no anchor for `dismiss_after` seconds; returns them."""
        now = self._clock()
        with self._lock:
            idle = [s for s in self.rooms.values()
                    if s.anchorless_since is not None and now - s.anchorless_since >= self.dismiss_after]
            for state in idle:
                self.dismiss(state.sdk_app_id, state.ref,
                             f"no anchor in the room for {self.dismiss_after:g} s")
        return idle
