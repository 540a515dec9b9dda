"""The control channel: how push_control reaches a running push and hears back, through the push's Redis.

A push that has a Redis (`redis` true, or the function's REDIS_URL) registers itself when it
starts, refreshes the registration while it runs and removes it when it ends. push_control finds
it there, leaves a command in its inbox and waits for the answer; the push takes commands between
frames and answers each with its state. Keys, beside the checkpoints (`trtc-push:{sdkAppId}:...`);
the keys of one push share the hash tag `{requestId}`, so that every script touches one slot:

    trtc-push:run:{<requestId>}           hash    the running push: requestId, sdkAppId, room, userId,
                                                  startedAt, updatedAt, state (JSON), checkpoint ("1"/"0"),
                                                  supersededBy (set when the same user entered again)
    trtc-push:inbox:{<requestId>}         list    commands not yet taken, each "<redis ms> <json>"
    trtc-push:reply:{<requestId>}:<id>    list    the push's answer to command <id> ({"statusCode", "body"})
    trtc-push:ended:{<requestId>}         hash    why the push ended (reason, endedAt, supersededBy), for a
                                                  helpful 404; kept ENDED_TTL_S
    trtc-push:user:<sdkAppId>:<room key>:<userId>  string  the newest push of that user in that room

The run, inbox and user keys expire REGISTRY_TTL_S after the last heartbeat (every HEARTBEAT_S),
so a push that died without unregistering is gone within seconds.

One command (`send`, push_control's side), answered within ANSWER_BUDGET_S (2 s) of the call:
  1. find the push: by requestId, or the user key gives the requestId; no run record -> 404 (the
     ended record, when there is one, says how it ended; a superseded push -> 404 naming the newer);
  2. deliver it in one script, atomic against the push's unregistering: only while the run record
     exists and is not superseded, RPUSH "<Redis TIME in ms> <json>" (the time stamp lets the push
     know, on Redis's clock, how much of the budget is left);
  3. wait (BLPOP) for the reply until the budget runs out -> the push's own status and body;
  4. no reply: LREM the command. Removed: the push never took it (stalled, or dying) -> 409, and
     nothing can apply it later. Not removed: the push took it, and a push never applies a command
     past its deadline (ControlInbox.expire_overdue) -> 409 as well.
Redis failing anywhere -> 503. 409 rather than 504 for a silent push: the contract's answers are
200/400/404/409/503, and a push that cannot answer in time cannot apply the command.

The push's side is ControlInbox: a reader thread BLPOPs the inbox and hands commands to the push
loop through a local queue, so `poll()` never waits on the network; a writer thread sends answers
and heartbeats, so a slow or absent Redis never holds the loop (as the checkpoint writer does).
"""
from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.contracts.control import ACTIONS, ControlParams
from shared.contracts.redis_config import RedisAddress
from shared.failures import Failure, Kind
from shared.gateway import KIND_OF_STATUS
from shared.room.base import RoomRef
from shared.runtime import Invocation, RunLogger, get_logger

KEY_PREFIX = "trtc-push"
ANSWER_BUDGET_S = 2.0  # the contract: push_control answers within 2 s
ANSWER_MARGIN_S = 0.1  # kept for answering once the wait is over (LREM, serialising, returning)
APPLY_BUDGET_S = 1.5  # at most this long for the push to apply a command and answer
REPLY_MARGIN_S = 0.15  # the push's answer travelling back through Redis
MIN_APPLY_BUDGET_S = 0.2  # less than this left after finding the push: refuse rather than send
REGISTRY_TTL_S = 10
HEARTBEAT_S = 2.0
ENDED_TTL_S = 600
REPLY_TTL_S = 30
READ_WAIT_S = 0.5  # the reader's BLPOP timeout: how long a close() may wait for it
SOCKET_TIMEOUT_S = 0.5
MAX_QUEUE_SHOWN = 100

STATUS_PLAYING = "playing"
STATUS_PAUSED = "paused"


class ControlUnavailable(Exception):
    """Redis could not be reached or refused us; the message says where and why."""


# --- keys ------------------------------------------------------------------------------------------


def run_key(request_id: str) -> str:
    return f"{KEY_PREFIX}:run:{{{request_id}}}"


def inbox_key(request_id: str) -> str:
    return f"{KEY_PREFIX}:inbox:{{{request_id}}}"


def reply_key(request_id: str, command_id: str) -> str:
    return f"{KEY_PREFIX}:reply:{{{request_id}}}:{command_id}"


def ended_key(request_id: str) -> str:
    return f"{KEY_PREFIX}:ended:{{{request_id}}}"


def user_key(sdk_app_id: int, room: RoomRef, user_id: str) -> str:
    return f"{KEY_PREFIX}:user:{sdk_app_id}:{room.key}:{user_id}"


# KEYS: run, inbox. ARGV: the command's JSON, inbox ttl.
# Returns {1, stored} delivered, {2, supersededBy} superseded, {0} no such push.
_DELIVER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local newer = redis.call('HGET', KEYS[1], 'supersededBy')
if newer then return {2, newer} end
local t = redis.call('TIME')
local stored = tostring(t[1] * 1000 + math.floor(t[2] / 1000)) .. ' ' .. ARGV[1]
redis.call('RPUSH', KEYS[2], stored)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
return {1, stored}
"""

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

# KEYS: the previous push's run. ARGV: the newer requestId. Marks it only while it is registered.
_SUPERSEDE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'supersededBy', ARGV[1]) end
return 1
"""


def connect(address: RedisAddress, *, timeout_s: float = SOCKET_TIMEOUT_S,
            socket_timeout_s: Optional[float] = None) -> "redis.Redis":
    """A client on a Redis that answered a PING; ControlUnavailable otherwise. One attempt per call,
    no backoff: a dead Redis must cost a control call or a push loop no more than a timeout."""
    client = redis.Redis(
        host=address.host, port=address.port, password=address.password or None, db=address.db,
        socket_timeout=socket_timeout_s or timeout_s, socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0), retry_on_timeout=False, decode_responses=True, health_check_interval=0,
    )
    try:
        client.ping()
    except redis.AuthenticationError as e:
        client.close()
        raise ControlUnavailable(f"{address.where} refused the password (redisPassword): {e}") from None
    except redis.ResponseError as e:
        client.close()
        raise ControlUnavailable(f"{address.where} refused us: {e}") from None
    except (redis.RedisError, OSError) as e:
        client.close()
        raise ControlUnavailable(f"{address.where} is unreachable: {e}") from None
    return client


def _hash(client: "redis.Redis", key: str) -> dict[str, str]:
    # decode_responses=True: redis-py's types cannot say so.
    return cast(dict[str, str], client.hgetall(key))


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _fields(mapping: Mapping[str, str]) -> Any:
    return dict(mapping)  # a mapping redis-py's stubs accept for hset


# --- what travels ----------------------------------------------------------------------------------


@dataclass
class PushState:
    """What a push tells about itself: in every answer, and in its registry record."""

    status: str = STATUS_PLAYING  # playing | paused
    video_src: Optional[str] = None  # the current source (as it may be shown: no query or userinfo)
    position: float = 0.0  # seconds into the current source
    queue: list[str] = field(default_factory=list)  # sources to play next, in order
    volume: int = 100

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "videoSrc": self.video_src, "position": round(self.position, 3),
                "queue": list(self.queue[:MAX_QUEUE_SHOWN]), "volume": self.volume}


@dataclass(frozen=True)
class Command:
    """One control call, as the push loop gets it from `ControlInbox.poll()`."""

    id: str
    action: str  # switch | enqueue | pause | resume | volume | stop | status
    sources: tuple[str, ...] = ()  # switch: one; enqueue: one or more, in order
    seek_second: Optional[float] = None  # switch only
    volume: Optional[int] = None  # volume only
    deadline: float = 0.0  # time.monotonic() after which it must not be applied (refused instead)
    received: float = 0.0  # time.monotonic() when the push took it
    sent_ms: int = 0  # Redis time when push_control delivered it (for latency: its clock, not ours)
    reply_to: str = ""

    @property
    def video_src(self) -> Optional[str]:
        return self.sources[0] if self.sources else None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    @classmethod
    def parse(cls, stored: str, redis_now_ms: int, request_id: str) -> "Command":
        """From the inbox's "<sent ms> <json>"; ValueError if it is not one of ours."""
        sent, _, text = stored.partition(" ")
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("action") not in ACTIONS:
            raise ValueError("not a command")
        sent_ms = int(sent)
        budget_ms = int(body.get("budgetMs") or 0)
        now = time.monotonic()
        left_s = (sent_ms + budget_ms - redis_now_ms) / 1000.0
        src = body.get("videoSrc")
        sources = tuple([src] if isinstance(src, str) else src or ())
        return cls(id=str(body["id"]), action=str(body["action"]), sources=sources,
                   seek_second=body.get("seekSecond"), volume=body.get("volume"), deadline=now + left_s,
                   received=now, sent_ms=sent_ms, reply_to=reply_key(request_id, str(body["id"])))


_WAKE = "wake"  # put into the inbox at close so that the reader's BLPOP returns at once


def failure(reason: str, message: str, **extra: Any) -> dict[str, Any]:
    """The body of every answer but 200 (the shape shared.gateway gives a 400)."""
    return {"status": "failed", "reason": reason, "message": message, **extra}


# --- the push's side -------------------------------------------------------------------------------


class ControlInbox:
    """A running push's end of the channel. The push loop calls, on its own thread:

        inbox = ControlInbox.register(address, request_id=..., sdk_app_id=..., room=..., user_id=...,
                                      state=PushState(...), log=log)      # once, after entering the room
        for command in inbox.poll(): ...                                   # every iteration; never blocks
        inbox.ack(command, state, **extra)  /  inbox.refuse(command, 409, "reason", "message")
        inbox.expire_overdue()      # every iteration: commands past their deadline, refused for you
        inbox.publish_state(state)  # whenever it changes (cheap: sent with the next heartbeat)
        inbox.close("end_of_source")                                       # once, at the end

    Every call returns at once: Redis is written by the inbox's own threads. A command must be
    answered (ack or refuse) before `command.deadline`; one that is not is refused by
    `expire_overdue()`, and the loop must then not apply it (its caller has been told 409).
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
        self._stopping = threading.Event()
        self._closed = False
        self._end_reason = ""
        self._reachable = True
        self.commands = 0
        self._reader = threading.Thread(target=self._read, name="control-reader", daemon=True)
        self._writer = threading.Thread(target=self._write, name="control-writer", daemon=True)

    # --- starting ------------------------------------------------------------------------------

    @classmethod
    def register(cls, address: RedisAddress, *, request_id: str, sdk_app_id: int, room: RoomRef, user_id: str,
                 state: PushState, log: RunLogger, checkpoint: bool = False, ttl_s: int = REGISTRY_TTL_S,
                 heartbeat_s: float = HEARTBEAT_S, read_wait_s: float = READ_WAIT_S,
                 timeout_s: float = SOCKET_TIMEOUT_S) -> "ControlInbox":
        """Register the push (the newest push of this user in this room: an older one is marked
        superseded) and start taking commands. ControlUnavailable if Redis cannot be used."""
        client = connect(address, timeout_s=timeout_s)
        try:
            reader = connect(address, timeout_s=timeout_s, socket_timeout_s=read_wait_s + 1.0)
        except ControlUnavailable:
            client.close()
            raise
        user = user_key(sdk_app_id, room, user_id)
        now = f"{time.time():.3f}"
        record = {"requestId": request_id, "sdkAppId": str(sdk_app_id), "room": room.key, "userId": user_id,
                  "startedAt": now, "updatedAt": now, "state": json.dumps(state.to_json()),
                  "checkpoint": "1" if checkpoint else "0"}
        inbox = cls(client, reader, address=address, request_id=request_id, user=user, record=record, log=log,
                    ttl_s=ttl_s, heartbeat_s=heartbeat_s, read_wait_s=read_wait_s)
        try:
            previous = _text(client.get(user))
            pipe = client.pipeline(transaction=True)
            pipe.delete(run_key(request_id), inbox_key(request_id))
            pipe.hset(run_key(request_id), mapping=_fields(record))
            pipe.expire(run_key(request_id), ttl_s)
            pipe.set(user, request_id, ex=ttl_s)
            pipe.execute()
            if previous and previous != request_id:
                client.register_script(_SUPERSEDE)(keys=[run_key(previous)], args=[request_id])
                log.info("control: an older push of this user in this room is superseded", previousRequestId=previous)
        except (redis.RedisError, OSError) as e:
            client.close()
            reader.close()
            raise ControlUnavailable(f"{address.where} failed to register the push: {e}") from None
        inbox._reader.start()
        inbox._writer.start()
        log.info("control: taking commands", redis=address.where, key=run_key(request_id))
        return inbox

    # --- the push loop's calls -----------------------------------------------------------------

    def poll(self) -> list[Command]:
        """The commands taken since the last call, oldest first (never blocks)."""
        out: list[Command] = []
        while True:
            try:
                command = self._incoming.get_nowait()
            except queue.Empty:
                break
            with self._lock:
                self._pending[command.id] = command
            out.append(command)
        return out

    def ack(self, command: Command, state: PushState, **extra: Any) -> None:
        """Answer 200: the command was applied; `state` is the push's state after it; `extra` fields
        (JSON-serialisable) go into the answer beside it (a switch's latency, say)."""
        if command.expired:
            self.log.warning("control: acknowledged after its deadline; its caller was answered 409",
                             commandId=command.id, action=command.action)
        self.publish_state(state)
        self._answer(command, 200, {"applied": True, "requestId": self.request_id, "state": state.to_json(), **extra})

    def refuse(self, command: Command, status_code: int, reason: str, message: str) -> None:
        """Answer `status_code` (409: cannot apply it; 400: a bad argument only the push could see)."""
        self._answer(command, status_code, failure(reason, message, requestId=self.request_id))

    def expire_overdue(self) -> list[Command]:
        """The commands taken but not answered whose deadline has passed: refused here with 409 and
        returned, so that the loop drops whatever it started for them."""
        now = time.monotonic()
        with self._lock:
            overdue = [c for c in self._pending.values() if now >= c.deadline]
        for command in overdue:
            self.refuse(command, 409, "not_applied",
                        f"the push could not {command.action} within the time a control call has "
                        f"({ANSWER_BUDGET_S:g} s); nothing was changed")
        return overdue

    def publish_state(self, state: PushState) -> None:
        """Remember the push's state for its registry record (written with the next heartbeat)."""
        text = json.dumps(state.to_json())
        with self._lock:
            self._state = text

    def close(self, reason: str, timeout_s: float = 1.0) -> None:
        """Unregister (leaving why the push ended), and refuse every command not yet answered with
        409: the push is ending. Idempotent; waits at most `timeout_s` for Redis (what is left then
        is done by the inbox's thread, or expires by itself)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._end_reason = reason
            pending = list(self._pending.values())
        self._stopping.set()
        while True:  # taken but never polled
            try:
                pending.append(self._incoming.get_nowait())
            except queue.Empty:
                break
        for command in pending:
            self._ending(command)
        self._outgoing.put(None)
        # The writer sends those answers, wakes and waits for the reader, then unregisters.
        self._writer.join(timeout=timeout_s)
        if not self._writer.is_alive():
            for c in (self.client, self._reader_client):
                try:
                    c.close()
                except redis.RedisError:
                    pass

    # --- the threads ---------------------------------------------------------------------------

    def _answer(self, command: Command, status_code: int, body: dict[str, Any]) -> None:
        with self._lock:
            self._pending.pop(command.id, None)
        self._outgoing.put((command.reply_to, {"statusCode": status_code, "body": body},
                            max(command.deadline, time.monotonic()) + 1.0))

    def _ending(self, command: Command) -> None:
        self._answer(command, 409, failure(
            "ending", f"the push is ending ({self._end_reason}); nothing was applied", requestId=self.request_id))

    def _read(self) -> None:
        """Take commands off the inbox as they come (BLPOP), stamped with what is left of their budget."""
        key = inbox_key(self.request_id)
        while not self._stopping.is_set():
            try:
                got = self._reader_client.blpop([key], timeout=self.read_wait_s)
                if got is None or got[1] == _WAKE:
                    continue
                seconds, micros = self._reader_client.time()
                now_ms = int(seconds) * 1000 + int(micros) // 1000
            except (redis.RedisError, OSError) as e:
                self._unreachable(e)
                self._stopping.wait(0.2)
                continue
            try:
                command = Command.parse(str(got[1]), now_ms, self.request_id)
            except (ValueError, KeyError, TypeError):
                self.log.warning("control: dropped something in the inbox that is not a command", key=key)
                continue
            self.commands += 1
            self.log.info("control: command taken", commandId=command.id, action=command.action,
                          budgetMs=round(command.remaining() * 1000))
            with self._lock:
                closed = self._closed
                if not closed:
                    self._incoming.put(command)
            if closed:
                self._ending(command)  # close() has run: nobody will poll it

    def _write(self) -> None:
        """Send answers as they come and heartbeat every `heartbeat_s`; at the end, unregister."""
        next_beat = time.monotonic() + self.heartbeat_s
        while not self._stopping.is_set():
            try:
                item = self._outgoing.get(timeout=max(0.0, next_beat - time.monotonic()))
            except queue.Empty:
                self._heartbeat()
                next_beat = time.monotonic() + self.heartbeat_s
                continue
            if item is not None:
                self._send_answer(*item)
        self._flush()
        try:  # wake the reader out of its BLPOP rather than wait for its timeout
            self.client.lpush(inbox_key(self.request_id), _WAKE)
        except (redis.RedisError, OSError):
            pass
        self._reader.join(timeout=self.read_wait_s + 0.5)
        self._flush()  # what the reader took while stopping
        self._finish()
        self._flush()

    def _flush(self) -> None:
        while True:
            try:
                item = self._outgoing.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._send_answer(*item)

    def _send_answer(self, key: str, answer: dict[str, Any], give_up_at: float) -> None:
        if self._stopping.is_set():
            give_up_at = min(give_up_at, time.monotonic() + 0.3)  # ending: nobody waits much longer
        while True:
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.rpush(key, json.dumps(answer, default=str))
                pipe.expire(key, REPLY_TTL_S)
                pipe.execute()
                return
            except (redis.RedisError, OSError) as e:
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
        except (redis.RedisError, OSError) as e:
            self._unreachable(e)

    def _finish(self) -> None:
        try:
            left = self._unregister(keys=[run_key(self.request_id), inbox_key(self.request_id),
                                          ended_key(self.request_id)],
                                    args=[self.request_id, self._end_reason, f"{time.time():.3f}", ENDED_TTL_S])
            self._user_release(keys=[self.user], args=[self.request_id])
        except (redis.RedisError, OSError) as e:
            self.log.warning("control: could not unregister; the registration expires by itself",
                             error=f"{type(e).__name__}: {e}", ttlSeconds=self.ttl_s)
            return
        for stored in left or []:
            if stored == _WAKE:
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
                             redis=self.address.where, error=f"{type(e).__name__}: {e}")


# --- push_control's side ---------------------------------------------------------------------------


def send(params: ControlParams, *, started: Optional[float] = None,
         log: Optional[RunLogger] = None) -> tuple[int, dict[str, Any]]:
    """Deliver the call's command to the running push it names and wait for its answer.

    Returns (HTTP status, body) as the contract has them: 200 {"applied": true, "requestId",
    "state", ...}; 404 no running push matches; 409 the push cannot apply it (its reason, or: the
    call names no Redis and the function has no REDIS_URL, so no push it could mean can be
    controlled; or no answer in time); 503 Redis unreachable. Within ANSWER_BUDGET_S of `started`
    (time.monotonic(); default now)."""
    started = time.monotonic() if started is None else started
    log = log or get_logger()
    answer_by = started + ANSWER_BUDGET_S - ANSWER_MARGIN_S
    address = params.redis_address
    if address is None:
        return 409, failure("no_redis", "the push has no Redis that push_control knows of: a push can be "
                            "controlled only when it has one (redis true, or REDIS_URL), and this call names "
                            "none (redisHost) while push_control has no REDIS_URL")
    try:
        client = connect(address, socket_timeout_s=ANSWER_BUDGET_S + 0.5)
    except ControlUnavailable as e:
        return 503, failure("redis_unavailable", f"{e}; nothing was sent")
    try:
        return _round_trip(client, params, address, answer_by, log)
    except (redis.RedisError, OSError) as e:
        return 503, failure("redis_unavailable", f"{address.where} failed mid-call: {type(e).__name__}: {e}")
    finally:
        client.close()


def _not_found(client: "redis.Redis", params: ControlParams, address: RedisAddress,
               request_id: Optional[str]) -> tuple[int, dict[str, Any]]:
    where = (f" in {address.where} (a push is found only in the Redis it runs with: redisHost/redisPort/redisDb "
             "of its call, or REDIS_URL)")
    if request_id:
        ended = _hash(client, ended_key(request_id))
        if ended.get("supersededBy"):
            return 404, failure("superseded", f"push {request_id} was superseded by push {ended['supersededBy']} "
                                "(the same userId entered the room again); control that one",
                                requestId=request_id, supersededBy=ended["supersededBy"])
        if ended:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(ended.get("endedAt") or 0)))
            return 404, failure("not_running", f"push {request_id} is no longer running: it ended at {when} "
                                f"({ended.get('reason') or 'unknown'})", requestId=request_id,
                                endedReason=ended.get("reason"))
    return 404, failure("not_running", f"no running push matches: {params.target()}{where}",
                        **({"requestId": request_id} if request_id else {}))


def _round_trip(client: "redis.Redis", params: ControlParams, address: RedisAddress, answer_by: float,
                log: RunLogger) -> tuple[int, dict[str, Any]]:
    request_id = params.requestId
    if request_id is None:
        assert params.sdkAppId is not None and params.room is not None and params.userId is not None
        request_id = _text(client.get(user_key(params.sdkAppId, params.room, params.userId)))
        if not request_id:
            return _not_found(client, params, address, None)
    record = _hash(client, run_key(request_id))
    if not record:
        return _not_found(client, params, address, request_id)
    if record.get("supersededBy"):
        newer = record["supersededBy"]
        return 404, failure("superseded", f"push {request_id} was superseded by push {newer} (the same userId "
                            "entered the room again); control that one", requestId=request_id, supersededBy=newer)
    mismatch = _mismatch(params, record)
    if mismatch:
        return 404, failure("not_running", f"push {request_id} is running, but {mismatch}", requestId=request_id)

    budget_s = min(APPLY_BUDGET_S, answer_by - time.monotonic() - REPLY_MARGIN_S)
    if budget_s < MIN_APPLY_BUDGET_S:
        return 409, failure("not_acknowledged", "no time was left to send the command (Redis answered slowly); "
                            "nothing was sent", requestId=request_id)
    command_id = uuid.uuid4().hex
    command: dict[str, Any] = {"id": command_id, "action": params.action, "budgetMs": int(budget_s * 1000)}
    if params.videoSrc is not None:
        command["videoSrc"] = params.videoSrc
    if params.seekSecond is not None:
        command["seekSecond"] = params.seekSecond
    if params.volume is not None:
        command["volume"] = params.volume
    delivered = client.register_script(_DELIVER)(keys=[run_key(request_id), inbox_key(request_id)],
                                                  args=[json.dumps(command), REGISTRY_TTL_S])
    if int(delivered[0]) == 0:
        return _not_found(client, params, address, request_id)
    if int(delivered[0]) == 2:
        return 404, failure("superseded", f"push {request_id} was superseded by push {delivered[1]}; control "
                            "that one", requestId=request_id, supersededBy=delivered[1])
    stored = delivered[1]
    log.info("control: command sent", requestId=request_id, action=params.action, commandId=command_id,
             budgetMs=command["budgetMs"])
    replies = reply_key(request_id, command_id)
    got = _wait_for_reply(client, replies, answer_by)
    if got is None:
        if int(client.lrem(inbox_key(request_id), 1, stored)) == 1:
            return 409, failure("not_acknowledged", f"push {request_id} did not take the command within "
                                f"{ANSWER_BUDGET_S:g} s (it may be stalled or ending); it was withdrawn and "
                                "nothing was changed", requestId=request_id)
        got = _wait_for_reply(client, replies, time.monotonic() + 0.02)  # it may have come meanwhile
        if got is None:
            return 409, failure("not_acknowledged", f"push {request_id} took the command but did not answer within "
                                f"{ANSWER_BUDGET_S:g} s; a push never applies a command past its deadline, so "
                                "nothing was changed (ask with action status)", requestId=request_id)
    try:
        answer = json.loads(got[1])
        status, body = int(answer["statusCode"]), answer["body"]
        if not isinstance(body, dict) or not 200 <= status <= 599:
            raise ValueError(status)
    except (ValueError, KeyError, TypeError):
        return 409, failure("not_acknowledged", f"push {request_id} answered with something that is not an "
                            "answer", requestId=request_id)
    return status, body


BLOCK_GRANULARITY_S = 0.12  # Redis may end a BLPOP up to its cron tick (100 ms at hz 10) late


def _wait_for_reply(client: "redis.Redis", key: str, until: float) -> Optional[tuple[str, str]]:
    """The reply, or None at `until` (time.monotonic()): BLPOP for most of the wait, then short
    polls, so that Redis's coarse timeout cannot push the answer past the budget."""
    block_s = until - time.monotonic() - BLOCK_GRANULARITY_S
    if block_s > 0.05:
        got = client.blpop([key], timeout=block_s)
        if got is not None:
            return str(got[0]), str(got[1])
    while True:
        value = client.lpop(key)
        if value is not None:
            return key, str(value)
        if time.monotonic() + 0.01 >= until:
            return None
        time.sleep(0.01)


def _mismatch(params: ControlParams, record: dict[str, str]) -> str:
    """When both requestId and the user are given, they must name the same push."""
    if params.requestId is None:
        return ""
    wrong = []
    if params.sdkAppId is not None and str(params.sdkAppId) != record.get("sdkAppId"):
        wrong.append(f"in sdkAppId {record.get('sdkAppId')}, not {params.sdkAppId}")
    if params.room is not None and params.room.key != record.get("room"):
        wrong.append(f"in room {record.get('room')}, not {params.room.key}")
    if params.userId is not None and params.userId != record.get("userId"):
        wrong.append(f"as userId {record.get('userId')}, not {params.userId}")
    return "; ".join(wrong)


def run_control(params: ControlParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """shared.gateway's `work` for push_control: the 200 body, or a Failure with the status."""
    status, body = send(params, started=inv.started, log=log)
    elapsed_ms = round((time.monotonic() - inv.started) * 1000, 1)
    if status == 200:
        log.info("control applied", action=params.action, requestId=body.get("requestId"), ms=elapsed_ms,
                 state=body.get("state"))
        return body
    extra = {k: v for k, v in body.items() if k not in ("status", "reason", "message")}
    raise Failure(str(body.get("message") or "refused"), str(body.get("reason") or "refused"),
                  KIND_OF_STATUS.get(status, Kind.INTERNAL), extra=extra)
