"""The same user entering twice: the push that was there first ends `replaced`, every time, however
busy it was sending when the room pushed it out (a frame in flight must not turn it into a room error)."""
from __future__ import annotations

import threading
from typing import Any

from functions.push_stream.index import main_handler
from shared.room import EnterParams, Role, RoomRef
from shared.room.local import LocalRoom

from .conftest import APP, new_room, params_for, poll_until

RUNS = 30


def _enter_twice(push_env, subscribe, clip10, run: int) -> dict[str, Any]:
    """A push into a new room, then the same user entering from another client: the push's result."""
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    out: dict[str, Any] = {}

    def push() -> None:
        # Looping, so that it is still sending whenever the second entry comes; bounded all the same.
        params = params_for(push_env, clip10, room, repeatNum=-1, maxDuration=120)
        out["result"] = main_handler(params, {"request_id": f"req-dup-{run}"})

    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    assert sub.wait_for(lambda g: len(g.video_pts) >= 2 + run % 5, timeout=10)
    host, _, port = push_env.address.rpartition(":")
    second = LocalRoom(host, int(port))
    second.enter(EnterParams(APP, RoomRef(room), "pusher", push_env.usersig("pusher"), role=Role.ANCHOR))
    try:
        assert poll_until(lambda: "result" in out, timeout=10)
    finally:
        second.exit()
    thread.join(5)
    return out["result"]


def test_a_second_entry_of_the_same_user_always_ends_the_first_push_replaced(push_env, subscribe, clip10,
                                                                              monkeypatch):
    # The push sends as fast as it can: a frame is in flight whenever the room puts it out.
    monkeypatch.setenv("PACING_SPEED", "64")
    results = [_enter_twice(push_env, subscribe, clip10, run) for run in range(RUNS)]
    outcomes = [(r["status"], r["reason"], r.get("message")) for r in results]
    assert [o[:2] for o in outcomes] == [("stopped", "replaced")] * RUNS, outcomes
