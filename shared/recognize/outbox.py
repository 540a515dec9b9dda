"""What a recognition sends out while it runs, in order and off the room loop: sentence callbacks go
through the run's sender (shared.outbox: signed and retried as record_stream's result, in order per
URL, so the result POSTed last arrives after every sentence), clip uploads through this worker."""
from __future__ import annotations

import queue
from typing import Any, Callable

from shared.outbox import Outbox as Sender, Ticket
from shared.runtime import RunLogger
from shared.worker import Worker

SENTENCE_TRIES = 3  # a sentence's callback is retried less than the result (the next one follows)


class Outbox(Worker):
    def __init__(self, callback: str | None, log: RunLogger, deadline: float | None, sender: Sender | None = None):
        super().__init__("recognize-outbox")
        self.callback, self.log, self.deadline = callback, log, deadline
        self._own = sender is None  # built without its run's sender (a test): one of its own
        self.sender = sender or Sender(log=log, deadline=deadline, name="recognize-callback")
        self._tasks: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self.posted = 0
        self.failed = 0

    def start(self) -> "Outbox":
        super().start()
        if self._own:
            self.sender.start()
        return self

    def post(self, body: dict[str, Any]) -> None:
        if self.callback:
            ticket = self.sender.put(self.callback, body, what="sentence", tries=SENTENCE_TRIES, on_settled=self._count)
            if ticket is None:
                self.failed += 1

    def post_result(self, body: dict[str, Any], deadline: float) -> bool:
        """The run's result, after every sentence (same URL, so in order); True once delivered."""
        if not self.callback:
            return True
        import time

        if not self.sender.alive and self._own:
            self.sender.start()
        ticket = self.sender.put(self.callback, body, what="callback", essential=True)
        ok = bool(ticket is not None and ticket.wait(max(0.0, deadline - time.monotonic())))
        if self._own:
            self.sender.finish(deadline)
        return ok

    def _count(self, ticket: Ticket) -> None:
        if ticket.delivered:
            self.posted += 1
        else:
            self.failed += 1

    def do(self, task: Callable[[], Any]) -> None:
        self._tasks.put(task)

    def run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception as e:  # one failed upload must not stop the ones after it
                self.log.error("a recognition output failed", error=f"{type(e).__name__}: {e}")

    def close(self) -> None:
        """Finish what is queued, then end (join to wait for it)."""
        super().close()
        self._tasks.put(None)
