"""The room server: TCP on 127.0.0.1 speaking shared.room.wire, one connection per member.

The wire is parsed here and nowhere else; what a message does is `models.Rooms`' business. A peer
that sends something malformed or oversized is logged and disconnected; nobody else notices more
than that member leaving.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from shared.room import wire
from shared.room.base import ERR_FAILED, LEFT_NORMALLY, LEFT_TIMEOUT, CloseReason, Subscription
from shared.room.wire import Message, WireError

from .exceptions import EnterError
from .models import Member, Rooms

log = logging.getLogger("emulator.trtc.room_server")

# A member that stops reading gets its media dropped rather than buffered without bound.
MAX_BUFFERED = 16 << 20
# A connection that has not asked to enter by then is closed.
ENTER_WITHIN_S = 10.0
# A member the server puts out (replaced, removed, dismissed) is told why, then the server stops
# writing and waits this long for the member to hang up: closing at once, while the member is still
# sending, answers its next packet with a reset, which throws away the unread reason on its side.
GOODBYE_WITHIN_S = 5.0


def _int(header: dict[str, Any], key: str) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"'{key}' must be an integer in a '{header.get('t')}' message")
    return value


class _Connection(asyncio.Protocol):
    """One member's connection; also its models.Sink."""

    def __init__(self, server: "RoomServer"):
        self._server = server
        self._rooms = server.rooms
        self._loop = server.loop
        self._decoder = wire.Decoder(server.max_message)
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self.member: Member | None = None
        self._dropping = False
        self._enter_timer: asyncio.TimerHandle | None = None
        self._goodbye: asyncio.TimerHandle | None = None  # set once the server has put the member out

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._server.connections.add(self)
        self._enter_timer = self._loop.call_later(self._server.enter_within, self._enter_overdue)

    def _enter_overdue(self) -> None:
        if self.member is None and self._transport is not None and not self._transport.is_closing():
            self._reject(f"no 'enter' within {self._server.enter_within:g} s")

    def data_received(self, data: bytes) -> None:
        if self._goodbye is not None:
            return  # put out: what it still sends is read and dropped, so that it never sees a reset
        try:
            for message in self._decoder.feed(data):
                self._handle(message)
                if self._transport is None or self._transport.is_closing():
                    return
        except WireError as e:
            self._reject(f"malformed message: {e}")
        except Exception as e:  # a bug must cost one connection, never the server
            log.exception("room server failed on a message from %s", self._peer)
            self._reject(f"internal error: {e}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        if self._enter_timer is not None:
            self._enter_timer.cancel()
        if self._goodbye is not None:
            self._goodbye.cancel()
        if self.member is not None:
            self._rooms.leave(self.member, LEFT_TIMEOUT)
        self._transport = None

    # --- Sink --------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        if threading.get_ident() == self._server.loop_thread_id:
            self._write(message)
        else:
            self._loop.call_soon_threadsafe(self._write, message)

    def close(self) -> None:
        """The member was put out (its `closed` message is already queued): say goodbye, see GOODBYE_WITHIN_S."""
        if threading.get_ident() == self._server.loop_thread_id:
            self._say_goodbye()
        else:
            self._loop.call_soon_threadsafe(self._say_goodbye)

    def _say_goodbye(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._goodbye is not None:
            return
        self._goodbye = self._loop.call_later(self._server.goodbye_within, self._close_transport)
        if transport.can_write_eof():
            transport.write_eof()  # after what is queued: the member reads why, then the end
        else:
            self._close_transport()

    def _write(self, message: Message) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if message.type in (wire.AUDIO, wire.VIDEO) and transport.get_write_buffer_size() > MAX_BUFFERED:
            if not self._dropping:
                log.warning("%s is not reading; dropping media for it", self._who())
                self._dropping = True
            return
        self._dropping = False
        transport.write(message.encode())

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- messages ----------------------------------------------------------------------------

    def _who(self) -> str:
        return f"{self.member.user_id}@{self._peer}" if self.member else self._peer

    def _reject(self, why: str) -> None:
        log.warning("closing connection %s: %s", self._who(), why)
        self._write(Message({"t": wire.ERROR, "code": ERR_FAILED, "msg": why}))
        self._close_transport()

    def _handle(self, message: Message) -> None:
        h = message.header
        t = message.type
        member = self.member
        if member is None:
            if t != wire.ENTER:
                raise WireError(f"'{t}' before 'enter'")
            self._enter(h)
            return
        if t == wire.AUDIO:
            self._rooms.relay(member, Message({"t": t, "pts": _int(h, "pts")}, message.payload))
        elif t == wire.VIDEO:
            header: dict[str, Any] = {"t": t, "pts": _int(h, "pts"), "k": 1 if h.get("k") else 0}
            if h.get("dts") is not None:
                header["dts"] = _int(h, "dts")
            codec = h.get("c", wire.DEFAULT_VIDEO_CODEC)
            if codec not in wire.VIDEO_CODECS:
                raise WireError(f"'c' must be one of {', '.join(wire.VIDEO_CODECS)} in a 'v' message, not {codec!r}")
            if codec != wire.DEFAULT_VIDEO_CODEC:
                header["c"] = codec
            self._rooms.relay(member, Message(header, message.payload))
        elif t in (wire.AUDIO_START, wire.VIDEO_START):
            if not self._rooms.start_media(member, "a" if t == wire.AUDIO_START else "v"):
                log.info("%s is not an anchor; its %s is not published", self._who(), t)
        elif t == wire.KEY_FRAME:
            target = h.get("u")
            if not isinstance(target, str):
                raise WireError("'u' must be a string in a 'kf' message")
            self._rooms.request_key_frame(member, target)
        elif t == wire.EXIT:
            self._rooms.leave(member, LEFT_NORMALLY)
            self.member = None
            self._write(Message({"t": wire.CLOSED, "reason": CloseReason.EXITED.value, "code": 0, "msg": "exited"}))
            self._close_transport()
        else:
            raise WireError(f"unknown message type '{t}'")

    def _enter(self, h: dict[str, Any]) -> None:
        if self._enter_timer is not None:
            self._enter_timer.cancel()
        try:
            receive = Subscription.from_wire(h.get("recv"))
        except (TypeError, ValueError) as e:
            raise WireError(f"'recv' of an enter message is not a subscription: {e}") from None
        try:
            self.member = self._rooms.enter(h.get("app"), h.get("room"), h.get("user"), h.get("sig"),
                                            h.get("role", "anchor"), self, receive=receive)
        except EnterError as e:
            log.info("entry refused for %r from %s: %s (%s)", h.get("user"), self._peer, e.message, e.code)
            self._write(Message({"t": wire.ERROR, "code": e.code, "msg": e.message}))
            self._close_transport()


class RoomServer:
    """The room server on its own event-loop thread; start() returns once it is listening."""

    def __init__(self, rooms: Rooms, host: str = "127.0.0.1", port: int = 0,
                 max_message: int = wire.MAX_MESSAGE, sweep_interval: float | None = None,
                 enter_within: float = ENTER_WITHIN_S, goodbye_within: float = GOODBYE_WITHIN_S):
        self.rooms = rooms
        self.enter_within = enter_within
        self.goodbye_within = goodbye_within
        self.host = host
        self.port = port
        self.max_message = max_message
        self.sweep_interval = sweep_interval or max(0.05, min(1.0, rooms.dismiss_after / 10))
        self.loop = asyncio.new_event_loop()
        self.loop_thread_id: int | None = None
        self.connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "RoomServer":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self.loop_thread_id = threading.get_ident()
            asyncio.set_event_loop(self.loop)
            try:
                self._server = self.loop.run_until_complete(
                    self.loop.create_server(lambda: _Connection(self), self.host, self.port))
                self.port = self._server.sockets[0].getsockname()[1]
                self._sweeper = self.loop.create_task(self._sweep())
            except BaseException as e:  # reported to start()'s caller
                failure.append(e)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="trtc-room-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        log.info("room server listening on %s", self.address)
        return self

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                self.rooms.sweep()
            except Exception:
                log.exception("idle room sweep failed")

    def stop(self) -> None:
        if self._thread is None:
            return

        async def shutdown() -> None:
            if self._sweeper:
                self._sweeper.cancel()
            if self._server:
                self._server.close()
            for conn in list(self.connections):
                conn._close_transport()
            await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self._thread = None
            if not self.loop.is_running():
                self.loop.close()
