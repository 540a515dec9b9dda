"""The push's frames read on their own thread, a few ahead of the push loop.

The loop never blocks inside a source read, so a stalled source (which only fails after its read
timeout) cannot delay SIGTERM, a room closing or the time limit; decoding (and a resume's bridge
re-encoding) also overlaps the pacing sleeps.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

from shared.media.source import MediaSource, SourceError
from shared.worker import Worker

NOTHING_YET = object()  # nothing arrived within the wait
END_OF_SOURCE = object()  # every pass has been read


def close_quietly(source: MediaSource) -> None:
    try:
        source.close()
    except Exception:  # closing is best effort once the result is decided
        pass


class FrameReader(Worker):
    """Runs `frames` (the source's, see shared.push.start) on a worker into a short queue.

    close() asks it to stop (a read in progress finishes first: a source is never closed under
    its own read); `release()` hands the source's closing to it when that read is still running."""

    def __init__(self, frames: Iterator[Any], source: MediaSource, depth: int = 8):
        super().__init__("source-reader")
        self._frames = frames
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._lock = threading.Lock()
        self._done = False
        self._close_source = False
        self._source = source

    def run(self) -> None:
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
            self._put(END_OF_SOURCE)
        except SourceError as e:
            self._put(e)
        except Exception as e:  # PyAV can raise what the source did not foresee: still a source failure
            self._put(SourceError(f"videoSrc {self._source.info.url}: reading failed: {type(e).__name__}: {e}"))
        finally:
            with self._lock:
                self._done = True
                close = self._close_source
            if close:
                close_quietly(self._source)

    def _put(self, item: Any) -> bool:
        while not self.closing.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self, timeout: float) -> Any:
        """A frame, a PassEnd, END_OF_SOURCE, a SourceError, or NOTHING_YET after `timeout`."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return NOTHING_YET

    def stop(self) -> None:
        """close(), and a short wait for the worker to end."""
        self.close()
        self.join(0.3)

    def release(self, source: MediaSource) -> bool:
        """True if the caller may close the source now; else the reader closes it when its read ends."""
        self.close()
        with self._lock:
            if self._done or not self.alive:  # ended, or never started
                return True
            self._close_source = True
            return False
