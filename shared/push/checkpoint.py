"""A push's progress in Redis, so that a later push of the same source into the same room resumes.

One hash per (sdkAppId, room, videoSrc):

    trtc-push:{sdkAppId}:{room key}:{sha256(videoSrc)[:32]}
        position   seconds into the source of the last frame sent
        duration   the source's duration in seconds ("" for a live source)
        requestId  the push that owns the record (the newest one)
        status     running | stopped | terminated | time_limit | failed ...
        reason     why it stopped (removed, dismissed, superseded, ...), "" while running
        updatedAt  unix time of the write
        videoSrc   the source, for a person reading the record

A playlist push (videoSrc a list) also keeps one record for the whole list, so that a resumed
playlist push continues the same item at the same position (each item keeps its own record too):

    trtc-push:{sdkAppId}:{room key}:list:{sha256(json of the list)[:32]}
        item       index in the list of the item being played (or last played, after a switch away)
        loop       passes over the whole list finished (repeatNum)
        position   seconds into that item; duration: that item's; requestId, status, reason, updatedAt
        videoSrc   the list as JSON

The newest push claims the record; every later write is a compare-and-set on `requestId` (a Lua
script, atomic in Redis), so an older push that was superseded can never overwrite the newer one's
progress and learns that it was fenced. Writes happen on a background thread: a Redis that stops
answering mid-push costs the push nothing but a log line, and the record catches up once it is back.

Redis is reached through its one door (shared.redis): REDIS_ALLOWLIST checked on every connection,
and a Redis that cannot be reached is "unreachable" after the same time, whatever the far side did.
The keys are named in shared.redis.keys; the writer is a shared.worker.Worker.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from shared.redis.address import RedisAddress
from shared.redis.connection import RedisUnavailable, close_quietly, connect, redis_errors
from shared.redis.keys import checkpoint_key, playlist_key
from shared.room.base import RoomRef
from shared.runtime import RunLogger
from shared.settings import DEFAULT_CHECKPOINT_TTL_S, settings
from shared.worker import Worker

if TYPE_CHECKING:  # redis-py is loaded by the first connect (shared.redis.connection)
    import redis

WRITE_INTERVAL_S = 0.5  # "at least once a second", with room for one slow write
SOCKET_TIMEOUT_S = 0.5

# KEYS[1] record; ARGV: owner, ttl, then field/value pairs. The owner is written unconditionally:
# the newest push wins.
_CLAIM = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'requestId', ARGV[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# Write only while we own the record. A missing record (expired, or lost with a Redis that
# restarted without its data) is recreated: our progress is the newest there is.
# Returns 1 written, 0 fenced (another push owns it).
_SAVE = """
local owner = redis.call('HGET', KEYS[1], 'requestId')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'requestId', ARGV[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# Delete only our own record. Returns 1 deleted (or nothing there), 0 fenced.
_CLEAR = """
local owner = redis.call('HGET', KEYS[1], 'requestId')
if owner and owner ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


# What the pusher catches: the door's one exception (Redis cannot be used; the message says why).
CheckpointUnavailable = RedisUnavailable
__all__ = ["Checkpoint", "CheckpointUnavailable", "PlaylistCheckpoint", "Record", "checkpoint_key", "playlist_key"]


def checkpoint_ttl() -> int:
    return settings().checkpoint_ttl_seconds


@dataclass(frozen=True)
class Record:
    """What a previous push left behind."""

    position: float
    duration: Optional[float]
    request_id: str
    status: str
    reason: str
    updated_at: float
    item: Optional[int] = None  # a playlist's record: the item's index in the list
    loop: int = 0  # a playlist's record: passes over the whole list finished

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Optional["Record"]:
        try:
            position = float(h.get("position", ""))
        except ValueError:
            return None  # not a record of ours, or damaged: start fresh
        try:
            duration: Optional[float] = float(h["duration"]) if h.get("duration") else None
        except ValueError:
            duration = None
        try:
            updated = float(h.get("updatedAt") or 0)
        except ValueError:
            updated = 0.0
        try:
            item: Optional[int] = int(h["item"]) if h.get("item") else None
            loop = int(h.get("loop") or 0)
        except ValueError:
            return None
        return cls(position=max(0.0, position), duration=duration, request_id=h.get("requestId", ""),
                   status=h.get("status", ""), reason=h.get("reason", ""), updated_at=updated, item=item,
                   loop=max(0, loop))


class Checkpoint:
    """The record of one push. `connect()` checks Redis; `start()` claims and begins the writer."""

    def __init__(
        self,
        client: "redis.Redis",
        key: str,
        request_id: str,
        video_src: str,
        log: RunLogger,
        ttl_s: int = DEFAULT_CHECKPOINT_TTL_S,
        interval_s: float = WRITE_INTERVAL_S,
        where: str = "redis",
    ):
        self.client = client
        self.key = key
        self.request_id = request_id
        self.video_src = video_src
        self.log = log
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self.where = where
        self._claim = client.register_script(_CLAIM)
        self._save = client.register_script(_SAVE)
        self._clear = client.register_script(_CLEAR)
        self._lock = threading.Lock()
        self._position = 0.0
        self._duration: Optional[float] = None
        self._fenced = threading.Event()
        self._writer: Optional[_Writer] = None
        self._reachable = True
        self.on_fenced: Optional[Callable[[], None]] = None

    # --- setup ---------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        *,
        host: str,
        port: int,
        password: Optional[str],
        db: int,
        sdk_app_id: int,
        room: RoomRef,
        video_src: str,
        request_id: str,
        log: RunLogger,
        ttl_s: Optional[int] = None,
        interval_s: float = WRITE_INTERVAL_S,
        timeout_s: float = SOCKET_TIMEOUT_S,
        playlist: Optional[list[str]] = None,
    ) -> "Checkpoint":
        """A checkpoint on a Redis that answered a PING; CheckpointUnavailable otherwise.
        `playlist`: the whole list's record (a PlaylistCheckpoint; `video_src` is then ignored)."""
        address = RedisAddress(host=host, port=port, password=password, db=db)
        where = f"Redis at {host}:{port}/{db}"
        # One attempt per call: the writer's own ticks are the retries, and a dead Redis must not
        # hold the push loop or a stop for seconds of backoff (the door makes no retries).
        client = connect(address, timeout_s=timeout_s)
        ttl = checkpoint_ttl() if ttl_s is None else ttl_s
        if playlist is not None:
            return PlaylistCheckpoint(client, playlist_key(sdk_app_id, room, playlist), request_id,
                                      json.dumps(playlist), log, ttl_s=ttl, interval_s=interval_s, where=where)
        return cls(client, checkpoint_key(sdk_app_id, room, video_src), request_id, video_src, log,
                   ttl_s=ttl, interval_s=interval_s, where=where)

    def load(self) -> Optional[Record]:
        """The previous push's record, if any (read once, before the push starts)."""
        try:
            h = self.client.hgetall(self.key)
        except redis_errors() as e:
            raise RedisUnavailable(f"{self.where} failed to read {self.key} ({type(e).__name__})") from None
        # decode_responses=True: the hash is str -> str (redis-py's stubs say bytes | str).
        return Record.from_hash(cast("dict[str, str]", h)) if h else None

    def start(self, position: float, duration: Optional[float]) -> None:
        """Claim the record for this push (fencing any older one) and start the background writer."""
        with self._lock:
            self._position, self._duration = position, duration
        try:
            self._claim(keys=[self.key], args=[self.request_id, self.ttl_s, *self._fields("running", "")])
        except redis_errors() as e:
            raise RedisUnavailable(f"{self.where} failed to write {self.key} ({type(e).__name__})") from None
        self._writer = _Writer(self)
        self._writer.start()

    # --- while pushing -------------------------------------------------------------------------

    def update(self, position: float) -> None:
        """Cheap: remember the position; the writer thread sends it."""
        with self._lock:
            self._position = position

    @property
    def fenced(self) -> bool:
        """True once a newer push owns the record: this push must stop without writing."""
        return self._fenced.is_set()

    @property
    def started(self) -> bool:
        return self._writer is not None

    @property
    def reachable(self) -> bool:
        return self._reachable

    def _fields(self, status: str, reason: str) -> list[Any]:
        with self._lock:
            position, duration = self._position, self._duration
        return ["position", f"{position:.3f}", "duration", "" if duration is None else f"{duration:.3f}",
                "status", status, "reason", reason, "updatedAt", f"{time.time():.3f}",
                "videoSrc", self.video_src, *self._more_fields()]

    def _more_fields(self) -> list[Any]:
        return []

    def _write(self, status: str, reason: str) -> bool:
        """One compare-and-set. True written; False fenced; raises redis errors."""
        ok = self._save(keys=[self.key], args=[self.request_id, self.ttl_s, *self._fields(status, reason)])
        if int(ok) == 1:
            return True
        if not self._fenced.is_set():
            self._fenced.set()
            self.log.warning("checkpoint: a newer push owns the record; stopping without writing",
                             key=self.key)
            if self.on_fenced:
                self.on_fenced()
        return False

    def _tick(self) -> None:
        """One write of the writer (every interval): updatedAt tells a reader the push is alive."""
        try:
            self._write("running", "")
            if not self._reachable:
                self._reachable = True
                self.log.info("checkpoint: redis is back; progress written", key=self.key,
                              position=round(self._position, 3))
        except redis_errors() as e:
            if self._reachable:
                self._reachable = False
                self.log.warning("checkpoint: redis unreachable; still pushing, retrying every tick",
                                 key=self.key, error=type(e).__name__)

    # --- stopping ------------------------------------------------------------------------------

    def finish(self, status: str, reason: str, position: Optional[float] = None, clear: bool = False,
               budget_s: float = 5.0) -> str:
        """The last write: the final position (or clearing the record at the end of the source).

        Retries until `budget_s` runs out if Redis is away. Returns what happened: "saved",
        "cleared", "fenced" or "unsaved".
        """
        deadline = time.monotonic() + budget_s
        if self._writer is not None:
            self._writer.close()
            # Only waits when the writer is inside a write (at most one socket timeout).
            self._writer.join(timeout=min(SOCKET_TIMEOUT_S + 0.1, budget_s))
        if position is not None:
            with self._lock:
                self._position = position
        if self._fenced.is_set():
            return "fenced"
        last_error = ""
        while True:  # at least one attempt, then retries while the budget allows a whole one
            try:
                if clear:
                    if int(self._clear(keys=[self.key], args=[self.request_id])) == 1:
                        return "cleared"
                    self._fenced.set()
                    return "fenced"
                return "saved" if self._write(status, reason) else "fenced"
            except redis_errors() as e:
                last_error = type(e).__name__
            if deadline - time.monotonic() < SOCKET_TIMEOUT_S + 0.2:
                break
            time.sleep(0.2)
        self.log.error("checkpoint: could not write the final position; redis unreachable",
                       key=self.key, position=round(self._position, 3), error=last_error)
        return "unsaved"

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        close_quietly(self.client)


class _Writer(Worker):
    """The checkpoint's background writer: one compare-and-set every interval until closed or fenced."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__("checkpoint-writer")
        self.checkpoint = checkpoint

    def run(self) -> None:
        cp = self.checkpoint
        while not self.pause(cp.interval_s):
            if cp.fenced:
                return
            cp._tick()


class PlaylistCheckpoint(Checkpoint):
    """The whole list's record: which item plays, where in it, and how many passes over the list are
    done. Written (and fenced) exactly as a source's record; `at()` moves it to another item."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._item = 0
        self._loop = 0

    def at(self, item: int, loop: int, position: float, duration: Optional[float]) -> None:
        """The list now plays `item` (of pass `loop`) from `position`; written with the next tick."""
        with self._lock:
            self._item, self._loop, self._position, self._duration = item, loop, position, duration

    def _more_fields(self) -> list[Any]:
        with self._lock:
            return ["item", str(self._item), "loop", str(self._loop)]
