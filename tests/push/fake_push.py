"""A push-side loop that uses ControlInbox as the pusher will (poll each iteration, ack or refuse,
expire what is overdue, close at the end), minus the media: for tests of the control channel."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Optional

from shared.contracts.control import ControlParams
from shared.failures import Failure, Kind
from shared.gateway import HTTP_STATUS, failed_result
from shared.push.control import Command, ControlInbox, PushState
from shared.push.control.caller import send
from shared.redis.address import RedisAddress
from shared.room import RoomRef
from shared.runtime import get_logger

APP = 1400000001
SIG = "usersig-of-the-fake-push-" + "s" * 40  # what the fake push was "started" with
TOKEN = "control-token-of-the-fake-push"


def answer(params: ControlParams, started: Optional[float] = None) -> tuple[int, dict[str, Any]]:
    """push_control's answer to `params` as its edge gives it: (HTTP status, body)."""
    try:
        return 200, send(params, started=started)
    except Failure as e:
        return HTTP_STATUS[e.kind], failed_result(e.reason, e.message, **e.extra)


class FakePush:
    """A push loop on its own thread: what phase 2's pusher does with the inbox, minus the media."""

    def __init__(self, address: RedisAddress, room: RoomRef, user: str = "pusher", request_id: str | None = None,
                 answer: bool = True, expire: bool = True,
                 refuse: Optional[Callable[[Command], Optional[tuple[Kind, str, str]]]] = None, **register: Any):
        self.request_id = request_id or f"req-{uuid.uuid4().hex[:12]}"
        self.state = PushState(video_src="/lesson-1.mp4", position=12.5)
        self.answer = answer
        self.expire = expire
        self.refuse = refuse
        self.seen: list[Command] = []
        self.expired: list[Command] = []
        self.poll_seconds: list[float] = []
        self.inbox = ControlInbox.register(address, request_id=self.request_id, sdk_app_id=APP, room=room,
                                           user_id=user, state=self.state, log=get_logger(self.request_id),
                                           **{"user_sig": SIG, "control_token": TOKEN, **register})
        self._stop = threading.Event()
        self._polling = threading.Event()
        self._polling.set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._polling.is_set():
                t0 = time.monotonic()
                commands = self.inbox.poll()
                self.poll_seconds.append(time.monotonic() - t0)
                for c in commands:
                    self.seen.append(c)
                    if self.answer:
                        self._apply(c)
                if self.expire:
                    self.expired += self.inbox.expire_overdue()
            time.sleep(0.01)

    def _apply(self, c: Command) -> None:
        refusal = self.refuse(c) if self.refuse else None
        if refusal:
            self.inbox.refuse(c, *refusal)
            return
        s = self.state
        if c.action == "switch":
            s.video_src, s.position = c.video_src, c.seek_second or 0.0
        elif c.action == "enqueue":
            s.queue += list(c.sources)
        elif c.action == "pause":
            s.status = "paused"
        elif c.action == "resume":
            s.status = "playing"
        elif c.action == "volume":
            s.volume = c.volume
        self.inbox.ack(c, s, switches=1 if c.action == "switch" else 0)

    def stop_polling(self) -> None:
        self._polling.clear()

    def close(self, reason: str = "end_of_source") -> None:
        self._stop.set()
        self._thread.join(2)
        self.inbox.close(reason)
