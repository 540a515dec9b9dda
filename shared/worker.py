"""One way to run a background thread: every worker in the house follows this small protocol.

    w = SomeWorker(...)      # a Worker subclass; nothing runs yet
    w.start()                # the thread starts (once)
    ...                      # in run(): loop while not self.closing, sleep with self.pause(s)
    w.close()                # ask it to stop: idempotent, never blocks, safe from any thread
    w.join(timeout) -> bool  # True once the thread has ended (or never started)

As streamlink's segmented reader, worker and writer share one close(), a newcomer learns this once:
close() only asks; join() waits, bounded; a worker that must hand something back (a last record,
a file) does it in run()'s own finally, so that closing never races the work it stops. Threads are
daemons: a run that ends (SIGTERM, the time limit) never waits on a stuck read.
"""
from __future__ import annotations

import threading
from typing import Callable


class Worker:
    """A named daemon thread running `run()`, stopped by `close()` and waited for by `join()`."""

    def __init__(self, name: str):
        self.name = name
        self.closing = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:  # pragma: no cover - every worker overrides it
        raise NotImplementedError

    def start(self) -> "Worker":
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()

    def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when close() was called (the loop should end)."""
        return self.closing.wait(seconds)

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def spawn(target: Callable[[], object], name: str) -> Worker:
    """A one-shot worker for a function that needs no loop of its own (a final write, a leave)."""
    w = _Call(target, name)
    w.start()
    return w


class _Call(Worker):
    def __init__(self, target: Callable[[], object], name: str):
        super().__init__(name)
        self._target = target

    def run(self) -> None:
        self._target()
