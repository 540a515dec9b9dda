"""The push's end of the control channel: its registration, its inbox and its answers (and their Lua).

A push that has a Redis (`redis` true, or the function's REDIS_URL) registers itself when it starts
(shared.redis.keys names the keys), refreshes the registration while it runs and removes it when it
ends, leaving why it ended. The registration keeps salted hashes of what its starter holds
(shared.push.control.proof), never the secrets. The run, inbox and user keys expire REGISTRY_TTL_S
after the last heartbeat (every HEARTBEAT_S), so a push that died without unregistering is gone
within seconds.

Two workers (shared.worker): a reader BLPOPs the inbox and hands commands to the push loop through a
local queue, so `poll()` never waits on the network; a writer sends answers and heartbeats, so a
slow or absent Redis never holds the loop (as the checkpoint writer does). Redis is reached through
its one door (shared.redis.connection): REDIS_ALLOWLIST holds for the registration as for any call.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union, cast

from shared.failures import Kind
from shared.redis.address import RedisAddress
from shared.redis.connection import RedisUnavailable, close_quietly, connect, failed, redis_errors, where
from shared.redis.keys import ended_key, inbox_key, run_key, user_key
from shared.room.base import RoomRef
from shared.runtime import RunLogger
from shared.worker import Worker

from . import proof
from .commands import (
    ANSWER_BUDGET_S,
    ENDED_TTL_S,
    HEARTBEAT_S,
    MAX_QUEUE,
    READ_WAIT_S,
    REGISTRY_TTL_S,
    REPLY_TTL_S,
    SOCKET_TIMEOUT_S,
    Command,
    PushState,
    applied_answer,
    failure,
    refused_answer,
)

if TYPE_CHECKING:  # redis-py is loaded by the first connect (shared.redis.connection)
    import redis

# The pusher's name for the door's one exception.
ControlUnavailable = RedisUnavailable

# A push the same user replaced in the room leaves the user key naming it (it expires with the TTL):
# the newer push, registering a moment later, finds it there and marks it superseded.
REPLACED = "replaced"
WAKE = "wake"  # put into the inbox at close so that the reader's BLPOP returns at once
# A refusal given as a status number (the pusher's older calls) is read as the kind it meant.
_KIND_OF_NUMBER = {400: Kind.INVALID, 404: Kind.NOT_FOUND, 409: Kind.CONFLICT, 503: Kind.UNAVAILABLE}

# KEYS: run, inbox, ended. ARGV: requestId, reason, endedAt, ended ttl.
# Returns the commands still in the inbox (the push will never take them).
_UNREGISTER = """
local newer = redis.call('HGET', KEYS[1], 'supersededBy')
redis.call('DEL', KEYS[1])
local left = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'requestId', ARGV[1], 'reason', ARGV[2], 'endedAt', ARGV[3])
if newer then redis.call('HSET', KEYS[3], 'supersededBy', newer) end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[4]))
return left
"""

# KEYS: run, inbox. ARGV: ttl, state, updatedAt. Returns 1 refreshed, 0 the record is gone.
_REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updatedAt', ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
return 1
"""

# KEYS: user. ARGV: requestId, ttl, mode ("refresh": only while ours; "claim_if_free": set when absent).
_USER = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2])) return 1 end
if ARGV[3] == 'claim_if_free' and not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2])) return 1
end
return 0
"""

# KEYS: user. ARGV: requestId. Delete only while it names us.
_USER_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: the previous push's run, its ended record. ARGV: the newer requestId. Marks whichever is
# there: the previous push may already have ended (the room replaced it before we registered).
_SUPERSEDE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'supersededBy', ARGV[1]) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'supersededBy', ARGV[1]) end
return 1
"""



def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _fields(mapping: Mapping[str, str]) -> Any:
    return dict(mapping)  # a mapping redis-py's stubs accept for hset


class ControlInbox:
    """A running push's end of the channel. The push loop calls, on its own thread:

        inbox = ControlInbox.register(address, request_id=..., sdk_app_id=..., room=..., user_id=...,
                                      state=PushState(...), log=log, user_sig=..., control_token=...)
        for command in inbox.poll(): ...                                   # every iteration; never blocks
        inbox.ack(command, state, **extra)  /  inbox.refuse(command, Kind.CONFLICT, "reason", "message")
        inbox.expire_overdue()      # every iteration: commands past their deadline, refused for you
        inbox.publish_state(state)  # whenever it changes (cheap: sent with the next heartbeat)
        inbox.close("end_of_source")                                       # once, at the end

    Every call returns at once: Redis is written by the inbox's own workers. A command must be
    answered (ack or refuse) before `command.deadline`; one that is not is refused by
    `expire_overdue()`, and the loop must then not apply it (its caller has been told: conflict).
    An enqueue that would take the queue past MAX_QUEUE is refused here and never reaches the loop.
    """

    def __init__(self, client: "redis.Redis", reader: "redis.Redis", *, address: RedisAddress, request_id: str,
                 user: str, record: dict[str, str], log: RunLogger, ttl_s: int = REGISTRY_TTL_S,
                 heartbeat_s: float = HEARTBEAT_S, read_wait_s: float = READ_WAIT_S):
        self.client = client
        self._reader_client = reader
        self.address = address
        self.request_id = request_id
        self.user = user
        self.log = log
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.read_wait_s = read_wait_s
        self._record = record
        self._unregister = client.register_script(_UNREGISTER)
        self._refresh = client.register_script(_REFRESH)
        self._user = client.register_script(_USER)
        self._user_release = client.register_script(_USER_RELEASE)
        self._incoming: queue.Queue[Command] = queue.Queue()
        # Answers to send: (reply key, answer, give up at); None wakes the writer to stop.
        self._outgoing: queue.Queue[Optional[tuple[str, dict[str, Any], float]]] = queue.Queue()
        self._pending: dict[str, Command] = {}
        self._lock = threading.Lock()
        self._state = record.get("state") or "{}"
        self._queued = 0  # sources in the push's queue, as it last told (an enqueue adds before its ack)
        self._closed = False
        self._end_reason = ""
        self._reachable = True
        self.commands = 0
        self._reader = _Reader(self)
        self._writer = _Writer(self)

    # --- starting ------------------------------------------------------------------------------

    @classmethod
    def register(cls, address: RedisAddress, *, request_id: str, sdk_app_id: int, room: RoomRef, user_id: str,
                 state: PushState, log: RunLogger, checkpoint: bool = False, user_sig: Optional[str] = None,
                 control_token: Optional[str] = None, ttl_s: int = REGISTRY_TTL_S,
                 heartbeat_s: float = HEARTBEAT_S, read_wait_s: float = READ_WAIT_S,
                 timeout_s: float = SOCKET_TIMEOUT_S) -> "ControlInbox":
        """Register the push (the newest push of this user in this room: an older one is marked
        superseded) and start taking commands. RedisUnavailable (ControlUnavailable) if Redis cannot
        be used or REDIS_ALLOWLIST refuses it: then nothing was written there.

        `user_sig` / `control_token`: what a control call must present (kept as salted hashes only);
        a push registered with neither cannot be controlled."""
        client = connect(address, timeout_s=timeout_s)
        try:
            reader = connect(address, timeout_s=timeout_s, socket_timeout_s=read_wait_s + 1.0)
        except RedisUnavailable:
            close_quietly(client)
            raise
        user = user_key(sdk_app_id, room, user_id)
        now = f"{time.time():.3f}"
        record = {"requestId": request_id, "sdkAppId": str(sdk_app_id), "room": room.key, "userId": user_id,
                  "startedAt": now, "updatedAt": now, "state": json.dumps(state.to_json()),
                  "checkpoint": "1" if checkpoint else "0", **proof.registration_fields(user_sig, control_token)}
        inbox = cls(client, reader, address=address, request_id=request_id, user=user, record=record, log=log,
                    ttl_s=ttl_s, heartbeat_s=heartbeat_s, read_wait_s=read_wait_s)
        inbox._queued = len(state.queue)
        try:
            previous = _text(client.get(user))
            pipe = client.pipeline(transaction=True)
            pipe.delete(run_key(request_id), inbox_key(request_id))
            pipe.hset(run_key(request_id), mapping=_fields(record))
            pipe.expire(run_key(request_id), ttl_s)
            pipe.set(user, request_id, ex=ttl_s)
            pipe.execute()
            if previous and previous != request_id:
                client.register_script(_SUPERSEDE)(keys=[run_key(previous), ended_key(previous)],
                                                   args=[request_id])
                log.info("control: an older push of this user in this room is superseded", previousRequestId=previous)
        except redis_errors() as e:
            close_quietly(client)
            close_quietly(reader)
            raise RedisUnavailable(failed(address, e, "register the push")) from None
        inbox._reader.start()
        inbox._writer.start()
        log.info("control: taking commands", redis=address.where, key=run_key(request_id))
        return inbox

    # --- the push loop's calls -----------------------------------------------------------------

    def poll(self) -> list[Command]:
        """The commands taken since the last call, oldest first (never blocks). An enqueue past
        MAX_QUEUE is refused here (conflict) and not returned."""
        out: list[Command] = []
        while True:
            try:
                command = self._incoming.get_nowait()
            except queue.Empty:
                break
            if command.action == "enqueue" and not self._room_in_queue(command):
                continue
            with self._lock:
                self._pending[command.id] = command
            out.append(command)
        return out

    def _room_in_queue(self, command: Command) -> bool:
        with self._lock:
            queued = self._queued
            fits = queued + len(command.sources) <= MAX_QUEUE
            if fits:
                self._queued += len(command.sources)  # counted now: the next enqueue of this poll sees it
        if not fits:
            self.refuse(command, Kind.CONFLICT, "queue_full",
                        f"the push's queue holds at most {MAX_QUEUE} sources (MAX_QUEUE); it has {queued} and "
                        f"this enqueue adds {len(command.sources)}; nothing was added")
        return fits

    def ack(self, command: Command, state: PushState, **extra: Any) -> None:
        """Answer: the command was applied; `state` is the push's state after it; `extra` fields
        (JSON-serialisable) go into the answer beside it (a switch's latency, say)."""
        if command.expired:
            self.log.warning("control: acknowledged after its deadline; its caller was told it was not applied",
                             commandId=command.id, action=command.action)
        self.publish_state(state)
        self._answer(command, applied_answer({"applied": True, "requestId": self.request_id,
                                              "state": state.to_json(), **extra}))

    def refuse(self, command: Command, kind: Union[Kind, int], reason: str, message: str) -> None:
        """Answer that the command was not applied: Kind.CONFLICT (cannot apply it now) or
        Kind.INVALID (a bad argument only the push could see). A status number (409, 400) is read
        as the kind it stands for."""
        if not isinstance(kind, Kind):
            kind = _KIND_OF_NUMBER.get(kind, Kind.CONFLICT)
        self._answer(command, refused_answer(kind, failure(reason, message, requestId=self.request_id)))

    def expire_overdue(self) -> list[Command]:
        """The commands taken but not answered whose deadline has passed: refused here (conflict)
        and returned, so that the loop drops whatever it started for them."""
        now = time.monotonic()
        with self._lock:
            overdue = [c for c in self._pending.values() if now >= c.deadline]
        for command in overdue:
            self.refuse(command, Kind.CONFLICT, "not_applied",
                        f"the push could not {command.action} within the time a control call has "
                        f"({ANSWER_BUDGET_S:g} s); nothing was changed")
        return overdue

    def publish_state(self, state: PushState) -> None:
        """Remember the push's state for its registry record (written with the next heartbeat)."""
        text = json.dumps(state.to_json())
        with self._lock:
            self._state = text
            self._queued = len(state.queue)

    def close(self, reason: str, timeout_s: float = 1.0) -> None:
        """Unregister (leaving why the push ended), and refuse every command not yet answered: the
        push is ending. Idempotent; waits at most `timeout_s` for Redis (what is left then is done by
        the inbox's writer, or expires by itself)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._end_reason = reason
            pending = list(self._pending.values())
        self._reader.close()
        self._writer.close()
        while True:  # taken but never polled
            try:
                pending.append(self._incoming.get_nowait())
            except queue.Empty:
                break
        for command in pending:
            self._ending(command)
        self._outgoing.put(None)
        # The writer sends those answers, wakes and waits for the reader, then unregisters.
        if self._writer.join(timeout=timeout_s):
            close_quietly(self.client)
            close_quietly(self._reader_client)

    # --- what the workers do -------------------------------------------------------------------

    def _answer(self, command: Command, answer: dict[str, Any]) -> None:
        with self._lock:
            self._pending.pop(command.id, None)
        self._outgoing.put((command.reply_to, answer, max(command.deadline, time.monotonic()) + 1.0))

    def _ending(self, command: Command) -> None:
        self._answer(command, refused_answer(Kind.CONFLICT, failure(
            "ending", f"the push is ending ({self._end_reason}); nothing was applied", requestId=self.request_id)))

    def _take(self, stored: str, now_ms: int) -> None:
        """One command off the inbox, stamped with what is left of its budget, handed to the loop."""
        try:
            command = Command.parse(stored, now_ms, self.request_id)
        except (ValueError, KeyError, TypeError):
            self.log.warning("control: dropped something in the inbox that is not a command",
                             key=inbox_key(self.request_id))
            return
        self.commands += 1
        self.log.info("control: command taken", commandId=command.id, action=command.action,
                      budgetMs=round(command.remaining() * 1000))
        with self._lock:
            closed = self._closed
            if not closed:
                self._incoming.put(command)
        if closed:
            self._ending(command)  # close() has run: nobody will poll it

    def _flush(self) -> None:
        while True:
            try:
                item = self._outgoing.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._send_answer(*item)

    def _send_answer(self, key: str, answer: dict[str, Any], give_up_at: float) -> None:
        if self._writer.closing.is_set():
            give_up_at = min(give_up_at, time.monotonic() + 0.3)  # ending: nobody waits much longer
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.rpush(key, json.dumps(answer, default=str))
                pipe.expire(key, REPLY_TTL_S)
                pipe.execute()
                return
            except redis_errors() as e:
                self._unreachable(e)
                if time.monotonic() + 0.1 >= give_up_at:
                    self.log.error("control: could not send an answer; redis unreachable", key=key)
                    return
                time.sleep(0.1)

    def _heartbeat(self) -> None:
        with self._lock:
            state = self._state
        try:
            alive = int(self._refresh(keys=[run_key(self.request_id), inbox_key(self.request_id)],
                                      args=[self.ttl_s, state, f"{time.time():.3f}"]))
            if not alive:
                # Gone (Redis restarted empty, or a stall longer than the TTL): register again, taking
                # the user key back only if no newer push holds it.
                pipe = self.client.pipeline(transaction=True)
                pipe.hset(run_key(self.request_id), mapping=_fields({**self._record, "state": state,
                                                                     "updatedAt": f"{time.time():.3f}"}))
                pipe.expire(run_key(self.request_id), self.ttl_s)
                pipe.execute()
                self.log.warning("control: the registration was gone; registered again")
            mode = "refresh" if alive else "claim_if_free"
            self._user(keys=[self.user], args=[self.request_id, self.ttl_s, mode])
            if not self._reachable:
                self._reachable = True
                self.log.info("control: redis is back", redis=self.address.where)
        except redis_errors() as e:
            self._unreachable(e)

    def _finish(self) -> None:
        try:
            left = self._unregister(keys=[run_key(self.request_id), inbox_key(self.request_id),
                                          ended_key(self.request_id)],
                                    args=[self.request_id, self._end_reason, f"{time.time():.3f}", ENDED_TTL_S])
            if self._end_reason != REPLACED:
                self._user_release(keys=[self.user], args=[self.request_id])
        except redis_errors() as e:
            self.log.warning("control: could not unregister; the registration expires by itself",
                             error=type(e).__name__, ttlSeconds=self.ttl_s)
            return
        for stored in left or []:
            if stored == WAKE:
                continue
            try:
                command = Command.parse(stored, 0, self.request_id)
            except (ValueError, KeyError, TypeError):
                continue
            self._ending(command)

    def _unreachable(self, e: BaseException) -> None:
        if self._reachable:
            self._reachable = False
            self.log.warning("control: redis unreachable; the push goes on, commands wait",
                             redis=where(self.address), error=type(e).__name__)


class _Reader(Worker):
    """Takes commands off the inbox as they come (BLPOP), on its own connection."""

    def __init__(self, inbox: ControlInbox):
        super().__init__("control-reader")
        self.inbox = inbox

    def run(self) -> None:
        inbox = self.inbox
        client, key = inbox._reader_client, inbox_key(inbox.request_id)
        while not self.closing.is_set():
            try:
                got = client.blpop([key], timeout=inbox.read_wait_s)
                if got is None or got[1] == WAKE:
                    continue
                seconds, micros = client.time()
                now_ms = int(seconds) * 1000 + int(micros) // 1000
            except redis_errors() as e:
                inbox._unreachable(e)
                self.pause(0.2)
                continue
            inbox._take(str(cast(Any, got)[1]), now_ms)


class _Writer(Worker):
    """Sends answers as they come and heartbeats every `heartbeat_s`; once closed, wakes the reader,
    waits for it, answers what it took meanwhile, and unregisters."""

    def __init__(self, inbox: ControlInbox):
        super().__init__("control-writer")
        self.inbox = inbox

    def run(self) -> None:
        inbox = self.inbox
        next_beat = time.monotonic() + inbox.heartbeat_s
        while not self.closing.is_set():
            try:
                item = inbox._outgoing.get(timeout=max(0.0, next_beat - time.monotonic()))
            except queue.Empty:
                inbox._heartbeat()
                next_beat = time.monotonic() + inbox.heartbeat_s
                continue
            if item is not None:
                inbox._send_answer(*item)
        inbox._flush()
        try:  # wake the reader out of its BLPOP rather than wait for its timeout
            inbox.client.lpush(inbox_key(inbox.request_id), WAKE)
        except redis_errors():
            pass
        inbox._reader.join(timeout=inbox.read_wait_s + 0.5)
        inbox._flush()  # what the reader took while stopping
        inbox._finish()
        inbox._flush()
