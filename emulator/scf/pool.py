"""Warm instances of a synchronous function, as SCF keeps them between calls.

SCF runs a function's calls in an instance that stays up after a call (its imports done, module
state kept) and reuses it for the next one; the local cloud did the cold start on every call (a
fresh Python process, ~0.6 s for push_control), which is most of a control round trip. A
`WarmPool` keeps, per synchronous function:

- at most `size` instances (`python -m emulator.scf.runner --warm FD`), each running one call at
  a time; one spare is started ahead (at once, and again whenever none is left idle), so that a
  call finds its imports done;
- an instance is ended, and never reused, after a call that raised, timed out or was terminated,
  when it crashed, when a file of the code it imported changed (mtimes it reported when ready,
  checked as it is taken), and when it has been idle for `idle_s`;
- a call that finds every pooled instance busy gets an instance of its own, ended after the call
  (the bound holds; SCF would scale out, here the machine is small).

Asynchronous functions keep a process per run (models.Scf), which TerminateAsyncEvent kills.
Why not the image entry server's spare worker (deploy/image/server.py): that one runs one call per
process by design (the role's keys go into the process's environment per call), and it is
standard-library code shipped in the image; this pool reuses an instance for many calls.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from deploy.image.server import reap, start_with_pipe
from shared.worker import Worker

from .runner import WARM_CODE_ROOT, WARM_HANDLER

log = logging.getLogger("emulator.scf.pool")

DEFAULT_SIZE = 2
DEFAULT_IDLE_S = 600.0
START_LIMIT_S = 30.0  # an instance that has not imported its function by then is broken


@dataclass(eq=False)
class Instance:
    """One warm process and the pipe it answers on."""

    proc: subprocess.Popen[bytes]
    reply_fd: int
    pooled: bool
    started: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    files: dict[str, int] | None = None  # None until it said it is ready
    calls: int = 0
    _buffer: bytes = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def read_message(self, timeout: float | None) -> dict[str, Any] | None:
        """The next line on the reply pipe; None after `timeout`; EOFError when it died."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.reply_fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.reply_fd, 65536)
            if not chunk:
                raise EOFError(f"instance {self.pid} closed its pipe")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message = json.loads(line)
        return message if isinstance(message, dict) else None

    def wait_ready(self, timeout: float) -> bool:
        if self.files is None:
            try:
                message = self.read_message(timeout)
            except EOFError:
                return False
            if message is None or not message.get("ready"):
                return False
            self.files = {str(k): int(v) for k, v in (message.get("files") or {}).items()}
        return True

    def stale(self) -> bool:
        """A file it imported changed (or went) since it imported it."""
        for path, mtime in (self.files or {}).items():
            try:
                if os.stat(path).st_mtime_ns != mtime:
                    return True
            except OSError:
                return True
        return False

    def end(self) -> None:
        """Kill it and whatever it started (its own session), and reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        reap(self.proc, self.reply_fd)


class WarmPool:
    """The warm instances of one function; thread-safe."""

    def __init__(self, name: str, args: list[str], cwd: str, env: Mapping[str, str], code_root: str,
                 handler: str, *, size: int = DEFAULT_SIZE, idle_s: float = DEFAULT_IDLE_S):
        self.name, self.args, self.cwd = name, args, cwd
        self.env = {**env, WARM_CODE_ROOT: code_root, WARM_HANDLER: handler}
        self.size = max(1, size)
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._idle: list[Instance] = []  # most recently used last
        self._busy: set[Instance] = set()
        self._closed = False
        self.started_count = 0  # every instance ever started (the tests read it)
        self._reaper = _Reaper(self)

    def start(self) -> "WarmPool":
        self._top_up()
        self._reaper.start()
        return self

    # --- instances --------------------------------------------------------------------------

    def _spawn(self, pooled: bool) -> Instance:
        # Its own session: ending it ends what its handler started too. Its output until the
        # first call (import-time prints) is dropped; each call's goes to that run's log.
        proc, read_fd = start_with_pipe([*self.args, "--warm"], cwd=self.cwd, env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.started_count += 1
        log.debug("warm instance %d of %s started (pooled: %s)", proc.pid, self.name, pooled)
        return Instance(proc, read_fd, pooled)

    def _top_up(self) -> None:
        """One spare idle (ready or importing) while there is room in the bound."""
        with self._lock:
            if self._closed or self._idle or len(self._busy) >= self.size:
                return
            self._idle.append(self._spawn(pooled=True))

    def count(self) -> int:
        """Pooled instances alive now (idle or busy), the bound's measure."""
        with self._lock:
            return sum(1 for i in [*self._idle, *self._busy] if i.pooled)

    def pids(self) -> list[int]:
        with self._lock:
            return [i.pid for i in [*self._idle, *self._busy]]

    def take(self) -> Instance:
        """A ready instance, marked busy: the most recently used idle one that is alive and whose code
        has not changed, else a fresh one (pooled while the bound allows, else for this call only)."""
        discarded: list[Instance] = []
        try:
            for _attempt in range(3):
                with self._lock:
                    if self._closed:
                        raise RuntimeError("the local cloud is shutting down")
                    instance = self._idle.pop() if self._idle else None
                    if instance is None:
                        pooled = sum(1 for i in self._busy if i.pooled) < self.size
                        instance = self._spawn(pooled)
                    self._busy.add(instance)
                if instance.alive() and instance.wait_ready(START_LIMIT_S) and not instance.stale():
                    return instance
                with self._lock:
                    self._busy.discard(instance)
                discarded.append(instance)
                if instance.files is None and instance.calls == 0 and not instance.alive():
                    # A fresh instance that died before it was ready: the next would too.
                    rc = instance.proc.wait()
                    raise RuntimeError(f"the warm instance of {self.name} exited with code {rc} before it was ready")
            raise RuntimeError(f"no warm instance of {self.name} became ready (its code keeps changing?)")
        finally:
            for old in discarded:
                old.end()

    def give_back(self, instance: Instance, healthy: bool) -> None:
        """After a call: back to idle when it returned normally and is pooled; else ended."""
        instance.calls += 1
        instance.last_used = time.monotonic()
        with self._lock:
            self._busy.discard(instance)
            keep = healthy and instance.pooled and not self._closed and instance.alive()
            if keep:
                self._idle.append(instance)
        if not keep:
            instance.end()
        self._top_up()

    def expire(self, now: float | None = None) -> int:
        """End the instances idle longer than `idle_s`; how many. A spare is started again."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [i for i in self._idle if now - i.last_used > self.idle_s or not i.alive()]
            self._idle = [i for i in self._idle if i not in old]
        for instance in old:
            instance.end()
        if old:
            self._top_up()
        return len(old)

    def close(self) -> None:
        self._reaper.close()
        with self._lock:
            self._closed = True
            everyone = [*self._idle, *self._busy]
            self._idle, self._busy = [], set()
        for instance in everyone:
            instance.end()
        self._reaper.join(2.0)


class _Reaper(Worker):
    """Ends idle instances past their lifetime."""

    def __init__(self, pool: WarmPool):
        super().__init__(f"scf-warm-{pool.name}")
        self.pool = pool

    def run(self) -> None:
        while not self.pause(min(5.0, max(0.2, self.pool.idle_s / 4))):
            self.pool.expire()
