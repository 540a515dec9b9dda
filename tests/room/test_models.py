"""The rooms' behaviour on its own (no sockets): a recording sink and a hand-driven clock."""
from __future__ import annotations

from emulator.trtc import signature as usersig
from emulator.trtc.models import Rooms
from shared.room import NO_MEDIA, RoomRef
from shared.room.wire import Message

APP, KEY = 1400000001, "k" * 32


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.closed = False

    def send(self, message) -> None:
        self.messages.append({**message.header, "payload": message.payload} if message.payload else message.header)

    def close(self) -> None:
        self.closed = True

    def types(self) -> list[str]:
        return [m["t"] for m in self.messages]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _enter(rooms: Rooms, user: str, room=7, role: str = "anchor") -> tuple:
    sink = Recorder()
    return rooms.enter(APP, room, user, usersig.generate(APP, KEY, user), role, sink), sink


def test_room_without_anchor_is_dismissed_exactly_after_the_idle_time():
    clock = Clock()
    rooms = Rooms({APP: KEY}, dismiss_after=300, clock=clock)
    viewer, viewer_sink = _enter(rooms, "viewer", role="audience")
    anchor, _ = _enter(rooms, "anchor")
    clock.now += 1000  # an anchor is there: nothing happens however long
    assert rooms.sweep() == []
    rooms.leave(anchor, 0)
    clock.now += 299.9
    assert rooms.sweep() == []
    clock.now += 0.1
    assert [s.ref for s in rooms.sweep()] == [RoomRef(7)]
    assert viewer_sink.messages[-1]["t"] == "closed" and viewer_sink.messages[-1]["reason"] == "dismissed"
    assert viewer_sink.closed and rooms.get(APP, 7) is None


def test_media_is_relayed_as_sent_to_everyone_but_the_sender_and_non_receivers():
    rooms = Rooms({APP: KEY})
    a, a_sink = _enter(rooms, "a")
    b, b_sink = _enter(rooms, "b")
    mute_sink = Recorder()
    rooms.enter(APP, 7, "mute", usersig.generate(APP, KEY, "mute"), "audience", mute_sink, receive=NO_MEDIA)
    assert rooms.relay(a, Message({"t": "v", "pts": 40, "k": 1}, b"\x00\x00\x00\x01\x65access-unit"))
    assert b_sink.messages[-1] == {"t": "v", "pts": 40, "k": 1, "u": "a", "payload": b"\x00\x00\x00\x01\x65access-unit"}
    assert "v" not in a_sink.types() and "v" not in mute_sink.types()


def test_empty_room_is_forgotten_and_the_same_id_starts_afresh():
    rooms = Rooms({APP: KEY})
    a, _ = _enter(rooms, "a")
    rooms.leave(a, 0)
    assert rooms.get(APP, 7) is None
    _, sink = _enter(rooms, "b")
    assert sink.types() == ["entered"]
