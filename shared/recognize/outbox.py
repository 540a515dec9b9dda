"""What a recognition sends out while it runs, in order and off the room loop: sentence callbacks
(signed and retried as record_stream's, shared.record.callback) and clip uploads."""
from __future__ import annotations

import queue
from typing import Any, Callable

from shared.record.callback import post_result
from shared.runtime import RunLogger
from shared.worker import Worker

SENTENCE_TRIES = 3  # a sentence's callback is retried less than the result (the next one follows)


class Outbox(Worker):
    def __init__(self, callback: str | None, log: RunLogger, deadline: float | None):
        super().__init__("recognize-outbox")
        self.callback, self.log, self.deadline = callback, log, deadline
        self._tasks: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self.posted = 0
        self.failed = 0

    def post(self, body: dict[str, Any]) -> None:
        if self.callback:
            self._tasks.put(lambda: self._post(body))

    def do(self, task: Callable[[], Any]) -> None:
        self._tasks.put(task)

    def _post(self, body: dict[str, Any]) -> None:
        assert self.callback is not None
        if post_result(self.callback, body, tries=SENTENCE_TRIES, backoff=0.5, max_backoff=2.0,
                       deadline=self.deadline, log=self.log):
            self.posted += 1
        else:
            self.failed += 1

    def run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception as e:  # one failed upload or post must not stop the ones after it
                self.log.error("a recognition output failed", error=f"{type(e).__name__}: {e}")

    def close(self) -> None:
        """Finish what is queued, then end (join to wait for it)."""
        super().close()
        self._tasks.put(None)
