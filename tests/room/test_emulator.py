"""The emulator's own edges: bad peers on the room server, the LocalRoom's connection errors, and
the TRTC actions' API 3.0 errors. Not part of the backend contract, so run once."""
from __future__ import annotations

import logging
import socket
import struct
import time

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.trtc.v20190722 import models as trtc_models

from emulator import media
from emulator.trtc import Rooms, RoomServer
from shared.room import (
    ERR_INVALID_ROOM_ID,
    ERR_INVALID_USER_ID,
    ERR_NETWORK_UNREACHABLE,
    ERR_REQUEST_SERVER_TIMEOUT,
    LEFT_TIMEOUT,
    EnterParams,
    RemoteAudio,
    Role,
    RoomClosed,
    RoomError,
    RoomRef,
    UserEntered,
    UserLeft,
    wire,
)
from shared.room.local import LocalRoom

from .conftest import WAIT_S, wait_for

_next_room = iter(range(800001, 900000))


class RawPeer:
    """A hand-driven connection to the room server, for saying things LocalRoom never would."""

    def __init__(self, address: str):
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
        self.decoder = wire.Decoder()

    def send(self, header: dict, payload: bytes = b"") -> None:
        self.sock.sendall(wire.encode(header, payload))

    def messages_until_closed(self) -> list[wire.Message]:
        """Everything the server says until it hangs up (fails if it does not within WAIT_S)."""
        out: list[wire.Message] = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            data = self.sock.recv(1 << 16)
            if not data:
                return out
            out += self.decoder.feed(data)
        raise AssertionError("the server did not close the connection")

    def enter(self, service, room, user: str) -> None:
        self.send({"t": "enter", "app": service.sdk_app_id, "room": room, "user": user,
                   "sig": service.usersig(user), "role": "anchor"})
        first = self.decoder.feed(self.sock.recv(1 << 16))
        assert first and first[0].type == "entered", first

    def close(self) -> None:
        self.sock.close()


def _local(service, user: str, room, role: Role = Role.ANCHOR) -> LocalRoom:
    host, _, port = service.address.rpartition(":")
    r = LocalRoom(host, int(port))
    r.enter(EnterParams(service.sdk_app_id, RoomRef(room), user, service.usersig(user), role=role, timeout=WAIT_S))
    return r


@pytest.fixture
def busy_room(room_service):
    """A room where `a` publishes audio and `b` listens; both exit at the end."""
    rid = next(_next_room)
    b = _local(room_service, "b", rid)
    a = _local(room_service, "a", rid)
    a.start_audio()
    yield rid, a, b
    a.exit()
    b.exit()


def _still_relays(a: LocalRoom, b: LocalRoom, pts: int) -> None:
    a.send_audio(media.tone(pts // 20))
    wait_for(b, lambda e: isinstance(e, RemoteAudio) and e.frame.pts_ms == pts)


@pytest.mark.parametrize("garbage", [
    pytest.param(struct.pack("!IH", 7, 5) + b"nope!", id="header-not-json"),
    pytest.param(struct.pack("!IH", 2 + 9, 9) + b'{"x": 1} ', id="no-type"),
    pytest.param(struct.pack("!IH", 2 + 10, 10) + b'{"t":"zz"}', id="unknown-type"),
    pytest.param(struct.pack("!I", 9 << 20), id="oversized"),
    pytest.param(wire.encode({"t": "a", "pts": "soon"}, b"x"), id="bad-timestamp"),
])
def test_malformed_message_closes_only_that_connection(room_service, busy_room, garbage, caplog):
    rid, a, b = busy_room
    peer = RawPeer(room_service.address)
    peer.enter(room_service, rid, "rogue")
    wait_for(b, lambda e: e == UserEntered("rogue"))
    with caplog.at_level(logging.WARNING, logger="emulator.trtc.room_server"):
        peer.sock.sendall(garbage)
        said = peer.messages_until_closed()
    peer.close()
    assert said and said[-1].type == "error" and said[-1].header["msg"]
    assert any("closing connection rogue@" in r.getMessage() for r in caplog.records)
    wait_for(b, lambda e: e == UserLeft("rogue", LEFT_TIMEOUT))
    # Everyone else carries on.
    _still_relays(a, b, 1000)
    assert a.closed is None and b.closed is None


def test_lost_connection_is_reported_as_timeout(room_service, busy_room):
    rid, a, b = busy_room
    peer = RawPeer(room_service.address)
    peer.enter(room_service, rid, "flaky")
    wait_for(b, lambda e: e == UserEntered("flaky"))
    peer.close()
    wait_for(b, lambda e: e == UserLeft("flaky", LEFT_TIMEOUT))


def test_messages_before_entering_are_refused(room_service):
    peer = RawPeer(room_service.address)
    peer.send({"t": "a", "pts": 0}, b"opus")
    said = peer.messages_until_closed()
    peer.close()
    assert said[-1].type == "error" and "before 'enter'" in said[-1].header["msg"]


@pytest.mark.parametrize("room,user,code", [
    (0, "alice", ERR_INVALID_ROOM_ID),
    ("", "alice", ERR_INVALID_ROOM_ID),
    (True, "alice", ERR_INVALID_ROOM_ID),
    (5, "", ERR_INVALID_USER_ID),
    (5, "x" * 33, ERR_INVALID_USER_ID),
])
def test_entry_with_invalid_ids_is_refused_with_trtc_codes(room_service, room, user, code):
    peer = RawPeer(room_service.address)
    peer.send({"t": "enter", "app": room_service.sdk_app_id, "room": room, "user": user,
               "sig": room_service.usersig(user or "x"), "role": "anchor"})
    said = peer.messages_until_closed()
    peer.close()
    assert said[-1].type == "error" and said[-1].header["code"] == code


def test_connection_that_never_enters_is_closed():
    server = RoomServer(Rooms({1400000001: "k"}), enter_within=0.3).start()
    try:
        peer = RawPeer(server.address)
        said = peer.messages_until_closed()
        peer.close()
        assert said[-1].type == "error" and "no 'enter'" in said[-1].header["msg"]
    finally:
        server.stop()


def test_unreachable_server_fails_with_network_code():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    room = LocalRoom("127.0.0.1", port)
    with pytest.raises(RoomError) as err:
        room.enter(EnterParams(1400000001, RoomRef(1), "a", "sig", timeout=2))
    assert err.value.code == ERR_NETWORK_UNREACHABLE
    assert f"127.0.0.1:{port}" in str(err.value)


def test_silent_server_fails_with_timeout_code():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        host, port = listener.getsockname()
        room = LocalRoom(host, port)
        started = time.monotonic()
        with pytest.raises(RoomError) as err:
            room.enter(EnterParams(1400000001, RoomRef(1), "a", "sig", timeout=0.5))
    assert err.value.code == ERR_REQUEST_SERVER_TIMEOUT
    assert time.monotonic() - started < WAIT_S


def test_send_before_enter_and_wrong_audio_are_clear_errors(room_service):
    host, _, port = room_service.address.rpartition(":")
    with pytest.raises(RoomError, match="enter"):
        LocalRoom(host, int(port)).send_audio(media.tone(0))
    room = _local(room_service, "a", next(_next_room))
    try:
        room.start_audio()
        with pytest.raises(RoomError, match="20 ms"):
            room.send_audio(media.tone(0, channels=2))
    finally:
        room.exit()


# --- the TRTC actions on Cloud API 3.0 ----------------------------------------------------------


def _request(cls, **fields):
    req = cls()
    req._deserialize(fields)
    return req


def _api_error(call) -> str:
    with pytest.raises(TencentCloudSDKException) as err:
        call()
    return err.value.get_code()


def test_wrong_credentials_get_an_auth_failure(room_service):
    req = _request(trtc_models.DismissRoomRequest, SdkAppId=room_service.sdk_app_id, RoomId=1)
    wrong_key = room_service.trtc_client(secret_key="not-the-key")
    assert _api_error(lambda: wrong_key.DismissRoom(req)) == "AuthFailure.SignatureFailure"
    wrong_id = room_service.trtc_client(secret_id="AKIDnobody", secret_key="x")
    assert _api_error(lambda: wrong_id.DismissRoom(req)) == "AuthFailure.SecretIdNotFound"


def test_api_parameter_errors(room_service):
    client = room_service.trtc_client()
    app = room_service.sdk_app_id
    free = next(_next_room)
    assert _api_error(lambda: client.DismissRoom(_request(trtc_models.DismissRoomRequest, SdkAppId=app, RoomId=free))) \
        == "FailedOperation.RoomNotExist"
    assert _api_error(lambda: client.DismissRoom(_request(trtc_models.DismissRoomRequest, SdkAppId=app))) \
        == "MissingParameter.RoomId"
    assert _api_error(lambda: client.RemoveUser(_request(trtc_models.RemoveUserRequest, SdkAppId=app, RoomId=free))) \
        == "MissingParameter.UserIds"
    assert _api_error(lambda: client.RemoveUser(_request(
        trtc_models.RemoveUserRequest, SdkAppId=app, RoomId=free, UserIds=[f"u{i}" for i in range(11)]))) \
        == "InvalidParameter.UserIds"
    assert _api_error(lambda: client.DismissRoom(_request(trtc_models.DismissRoomRequest, SdkAppId=7, RoomId=free))) \
        == "InvalidParameter.SdkAppId"
    assert _api_error(lambda: client.DismissRoom(_request(
        trtc_models.DismissRoomRequest, SdkAppId=app, RoomId=1 << 33))) == "InvalidParameter.RoomId"


def test_remove_user_in_integer_room_leaves_the_string_room_alone(room_service):
    app = room_service.sdk_app_id
    in_int = _local(room_service, "u", 4242)
    in_str = _local(room_service, "u", "4242")
    try:
        room_service.trtc_client().RemoveUser(_request(
            trtc_models.RemoveUserRequest, SdkAppId=app, RoomId=4242, UserIds=["u"]))
        wait_for(in_int, lambda e: isinstance(e, RoomClosed))
        assert in_str.closed is None
        assert room_service.rooms.user_ids(app, "4242") == ["u"]
    finally:
        in_int.exit()
        in_str.exit()


def test_remove_user_as_a_get_request(room_service):
    rid = next(_next_room)
    a, b = _local(room_service, "a", rid), _local(room_service, "b", rid)
    try:
        room_service.trtc_client(method="GET").RemoveUser(_request(
            trtc_models.RemoveUserRequest, SdkAppId=room_service.sdk_app_id, RoomId=rid, UserIds=["a", "b"]))
        for room in (a, b):
            closed, _ = wait_for(room, lambda e: isinstance(e, RoomClosed))
            assert closed.code == -205
        assert room_service.rooms.get(room_service.sdk_app_id, rid) is None
    finally:
        a.exit()
        b.exit()
