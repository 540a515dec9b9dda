"""The recogniser in processes of its own: pocketsphinx holds the GIL for as long as it decodes (a
sentence's last pass: half a second and more on a busy machine), and in the cloud's process that
froze every room, the students' voices and the other sessions with it: audio arriving late, then
silence filled in by the client, then a sentence heard as nonsense. In a worker process it only
takes a core.

    pool = WorkerPool()                       # AsrBackend.pool: one per service
    rec = RemoteRecogniser(pool, hotwords)    # what a session uses, as recogniser.Recogniser
    rec.begin(); rec.feed(pcm); rec.partial(); rec.end(offset_ms); rec.close()
    pool.close()                              # the service stops

A worker serves one session at a time and is lent to the next one afterwards (its process and
decoders stay: loading the model takes ~0.5 s). Feeding is one-way; `partial` and `end` wait for
the answer (the pipe keeps the order).
"""
from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from shared.asr import wire
from shared.asr.wire import Word

from .exceptions import AsrError

START_TIMEOUT_S = 60.0  # a worker's first answer (it loads the model)
ANSWER_TIMEOUT_S = 30.0


class RecogniserGone(AsrError):
    """The worker process died or stopped answering: the session ends with the service's 5000."""

    def __init__(self, why: str):
        super().__init__(wire.BACKEND_ERROR, f"backend error: {why}")


def _serve(conn: Connection) -> None:
    """The worker: one recogniser.Recogniser at a time, driven by messages."""
    import signal

    from .recogniser import DecoderPool, Recogniser

    # Ctrl-C reaches the whole process group: the service stops its workers itself (WorkerPool.close,
    # or multiprocessing's daemon clean-up when the cloud's process ends).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    decoders = DecoderPool()
    decoders.warm()  # the model loaded before the first session
    conn.send(("ready", None))
    rec: Recogniser | None = None
    while True:
        try:
            op, arg = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if op == "open":
                rec = Recogniser(decoders, arg)
            elif op == "begin":
                assert rec is not None
                rec.begin()
            elif op == "feed":
                assert rec is not None
                rec.feed(arg)
            elif op == "partial":
                assert rec is not None
                conn.send(("ok", rec.partial()))
            elif op == "end":
                assert rec is not None
                conn.send(("ok", [(w.word, w.start_time, w.end_time) for w in rec.end(arg)]))
            elif op == "close":
                if rec is not None:
                    rec.close()
                rec = None
            elif op == "quit":
                return
        except Exception as e:  # the session sees it at its next question
            if op in ("partial", "end"):
                conn.send(("error", f"{type(e).__name__}: {e}"))


class Worker:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), name="asr-recogniser", daemon=True)
        self.process.start()
        child.close()
        self._ask_ready()

    def _ask_ready(self) -> None:
        if not self.conn.poll(START_TIMEOUT_S):
            self.stop()
            raise RecogniserGone("the recogniser process did not start")
        self.conn.recv()

    def send(self, op: str, arg: Any = None) -> None:
        try:
            self.conn.send((op, arg))
        except (OSError, ValueError) as e:
            raise RecogniserGone(f"the recogniser process is gone: {e}") from None

    def ask(self, op: str, arg: Any = None) -> Any:
        self.send(op, arg)
        try:
            if not self.conn.poll(ANSWER_TIMEOUT_S):
                raise RecogniserGone(f"the recogniser process did not answer {op!r}")
            status, value = self.conn.recv()
        except (EOFError, OSError) as e:
            raise RecogniserGone(f"the recogniser process is gone: {e}") from None
        if status != "ok":
            raise RecogniserGone(f"the recogniser failed: {value}")
        return value

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        try:
            self.conn.send(("quit", None))
        except (OSError, ValueError):
            pass
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


class WorkerPool:
    """Recogniser processes lent to sessions, one session each at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[Worker] = []
        self._all: list[Worker] = []
        self._closed = False

    def take(self) -> Worker:
        with self._lock:
            while self._free:
                worker = self._free.pop()
                if worker.alive:
                    return worker
                worker.stop()  # died while idle: its pipe closed
        worker = Worker()  # outside the lock: it takes a second
        with self._lock:
            self._all.append(worker)
            if self._closed:
                worker.stop()
                raise RecogniserGone("the speech recognition service stopped")
        return worker

    def give(self, worker: Worker) -> None:
        with self._lock:
            if not self._closed and worker.alive:
                self._free.append(worker)
                return
        worker.stop()

    def warm(self) -> None:
        """Start one worker now (it loads the model) so that the first session does not wait for it."""
        self.give(self.take())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all, self._free = self._all, [], []
        for w in workers:
            w.stop()


class RemoteRecogniser:
    """recogniser.Recogniser's interface, run in a worker of `pool`."""

    def __init__(self, pool: WorkerPool, hotwords: list[str]):
        self._pool = pool
        self._worker: Worker | None = pool.take()
        self._worker.send("open", list(hotwords))

    def _w(self) -> Worker:
        if self._worker is None:
            raise RecogniserGone("the recogniser was closed")
        return self._worker

    def begin(self) -> None:
        self._w().send("begin")

    def feed(self, pcm: bytes) -> None:
        self._w().send("feed", bytes(pcm))

    def partial(self) -> str:
        return str(self._w().ask("partial"))

    def end(self, offset_ms: int) -> list[Word]:
        return [Word(w, a, b) for w, a, b in self._w().ask("end", offset_ms)]

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.send("close")
            self._pool.give(worker)
