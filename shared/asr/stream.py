"""One anchor's speech to the recognition service, for as long as the anchor is recognised.

    feed(pcm16k) --> buffer --> 40 ms chunks at 1:1 real time --> AsrConnection --> on_result(...)

The service wants audio at real time, and closes a connection that goes quiet (or sends faster):
so each whole 40 ms chunk goes out as it is fed (on the feeding thread: the room's audio comes at
real time already, and a thread woken every 20 ms to send costs more CPU than the sending), silence
when the anchor sends nothing (muted, or between frames: the stream's own thread fills it in while
it waits for the service's answers), and the buffered audio at up to CATCH_UP_MS ahead of the clock
after a pause of its own.
A connection that drops is opened again with a new voice_id; the audio of the sentence it was
cutting (and whatever arrived meanwhile) is sent again, so that nothing after the drop is lost.
A refusal that a new connection cannot cure (wire.FATAL_CODES: bad UserSig or keys, the
concurrency limit) ends the stream with that error.

Times: `Sentence.start_ms`/`end_ms` are ms of this anchor's stream (every byte sent, silence
included, from its first), across connections; `clip()` cuts that stream's audio.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from websockets.exceptions import ConnectionClosed

from shared.runtime import RunLogger
from shared.worker import Worker

from . import wire
from .client import AsrConnection, AsrCredentials, AsrError, AsrOptions

CATCH_UP_MS = 2000  # lead over the clock allowed while a backlog drains (the service allows 3 s)
# How far behind the clock the stream may fall before silence fills in: audio that is only late
# (a busy machine, network jitter) must not get silence inserted, which would split a sentence.
JITTER_MS = 600
MAX_BUFFER_MS = 30_000  # audio kept while the service cannot be reached; older audio is dropped
KEEP_MS = 120_000  # stream audio kept for clips and for sending again after a drop
REPLAY_BEFORE_MS = 500  # sent again before the drop point when no sentence was open
END_WAIT_S = 8.0  # for the last sentence after {"type": "end"} (the recogniser decodes it)
# How long the stream's thread waits for the service's answers before it looks whether silence is due.
ANSWER_WAIT_S = 0.1
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Sentence:
    """A recognised sentence (final) or the words heard so far (not final)."""

    index: int
    start_ms: int
    end_ms: int
    text: str
    final: bool
    voice_id: str


@dataclass
class _Link:
    """The live connection, as both threads send on it (under AnchorStream._send_lock)."""

    conn: AsrConnection
    started: float  # the clock when it opened: its audio is due at 1:1 from here
    pending: bytearray  # audio to send again first (after a drop); already in the ring
    sent_ms: int = 0
    broken: BaseException | None = None  # the send that failed (the reader sees it too)


class AnchorStream(Worker):
    def __init__(self, anchor: str, creds: AsrCredentials, options: AsrOptions, log: RunLogger,
                 on_result: Callable[[str, Sentence], None], on_error: Callable[[str, AsrError], None],
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(f"asr-{anchor}")
        self.anchor, self.creds, self.options, self.log = anchor, creds, options, log
        self._on_result, self._on_error = on_result, on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()  # held while sending on the link: one sender at a time
        self._link: _Link | None = None
        self._buffer = bytearray()  # fed, not yet sent
        self._ring = bytearray()  # sent (the stream), the last KEEP_MS of it
        self._ring_start_ms = 0
        self._next_index = 0
        self._open_from_ms: int | None = None  # stream ms where the sentence being spoken began
        self.error: AsrError | None = None
        self.voice_ids: list[str] = []
        self.connections = 0

    # --- the room side -------------------------------------------------------------------------

    def feed(self, pcm: bytes) -> None:
        """16 kHz mono s16le audio of the anchor, as it arrives: whole chunks are sent at once."""
        with self._lock:
            self._buffer += pcm
            excess = len(self._buffer) - MAX_BUFFER_MS * wire.BYTES_PER_MS
            if excess > 0:
                del self._buffer[:excess]
        self._send()

    def _send(self) -> None:
        """Send what is due on the live connection (the replay, whole chunks fed, silence once the
        anchor has been quiet for JITTER_MS), at most CATCH_UP_MS ahead of the clock. A failed send
        marks the link broken; the stream's thread reconnects."""
        with self._send_lock:
            link = self._link
            if link is None or link.broken is not None:
                return
            elapsed_ms = int((self._clock() - link.started) * 1000)
            try:
                while link.sent_ms < elapsed_ms + CATCH_UP_MS:
                    chunk = self._next_chunk(link.pending, behind_ms=elapsed_ms - link.sent_ms)
                    if chunk is None:
                        break
                    link.conn.send_audio(chunk)
                    link.sent_ms += wire.CHUNK_MS
            except (ConnectionClosed, OSError) as e:
                link.broken = e

    @property
    def stream_ms(self) -> int:
        with self._lock:
            return self._ring_start_ms + len(self._ring) // wire.BYTES_PER_MS

    def clip(self, start_ms: int, end_ms: int) -> bytes:
        """The stream's audio from start_ms to end_ms (what is still kept of it)."""
        with self._lock:
            a = max(0, (start_ms - self._ring_start_ms) * wire.BYTES_PER_MS)
            b = max(0, (end_ms - self._ring_start_ms) * wire.BYTES_PER_MS)
            return bytes(self._ring[a:b])

    # --- the service side ----------------------------------------------------------------------

    def run(self) -> None:
        failures = 0
        replay = b""
        while not self.closing.is_set():
            try:
                conn = AsrConnection.open(self.creds, self.options)
            except AsrError as e:
                if e.fatal:
                    self._fail(e)
                    return
                failures += 1
                self.log.warning("speech recognition unreachable; retrying", anchor=self.anchor, error=str(e))
                if self.pause(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]):
                    return
                continue
            failures = 0
            self.connections += 1
            self.voice_ids.append(conn.voice_id)
            self.log.info("speech recognition connected", anchor=self.anchor, voice_id=conn.voice_id,
                          replay_ms=len(replay) // wire.BYTES_PER_MS)
            try:
                replay = self._serve(conn, replay)
            except AsrError as e:
                if e.fatal:
                    self._fail(e)
                    return
                self.log.warning("speech recognition connection ended; reconnecting", anchor=self.anchor,
                                 voice_id=conn.voice_id, error=str(e))
            finally:
                conn.close()

    def _fail(self, e: AsrError) -> None:
        self.error = e
        self.log.error("speech recognition refused this anchor", anchor=self.anchor, code=e.code, error=e.explain())
        self._on_error(self.anchor, e)

    def _serve(self, conn: AsrConnection, replay: bytes) -> bytes:
        """Stream until closed (returns b"") or the connection drops (returns the audio to send again)."""
        base_ms = self.stream_ms - len(replay) // wire.BYTES_PER_MS  # stream ms of this connection's 0
        link = _Link(conn, self._clock(), bytearray(replay))
        with self._send_lock:
            self._link = link  # from now on, feed() sends on it
        try:
            while True:
                if self.closing.is_set():
                    self._unlink(link)
                    self._finish(conn, link.pending, base_ms)
                    return b""
                self._send()  # the replay, and silence while nothing is fed
                if link.broken is not None:
                    raise link.broken
                self._answers(conn, conn.poll(ANSWER_WAIT_S), base_ms)
        except (ConnectionClosed, OSError) as e:
            return self._replay(f"{type(e).__name__}: {e}")
        except AsrError as e:
            if e.fatal:
                raise
            return self._replay(str(e))
        finally:
            self._unlink(link)

    def _unlink(self, link: _Link) -> None:
        with self._send_lock:  # once it returns, no send is under way on `link`
            if self._link is link:
                self._link = None

    def _next_chunk(self, pending: bytearray, behind_ms: int) -> bytes | None:
        """The next 40 ms to send: the replay, then fed audio, else silence when behind the clock
        (with the part-chunk the anchor left before going quiet at its start)."""
        if pending:
            chunk = bytes(pending[:wire.CHUNK_BYTES])
            del pending[:wire.CHUNK_BYTES]
            return chunk.ljust(wire.CHUNK_BYTES, b"\0")
        with self._lock:
            if len(self._buffer) >= wire.CHUNK_BYTES:
                chunk = bytes(self._buffer[:wire.CHUNK_BYTES])
                del self._buffer[:wire.CHUNK_BYTES]
            elif behind_ms > JITTER_MS:
                # nothing (more) from the anchor, muted or quiet: silence keeps the service's clock
                chunk = bytes(self._buffer).ljust(wire.CHUNK_BYTES, b"\0")
                self._buffer.clear()
            else:
                return None
            self._ring += chunk
            excess = len(self._ring) - KEEP_MS * wire.BYTES_PER_MS
            if excess > 0:
                del self._ring[:excess]
                self._ring_start_ms += excess // wire.BYTES_PER_MS
        return chunk

    def _replay(self, why: str) -> bytes:
        """What to send again on the next connection: the open sentence, else the last moments."""
        end = self.stream_ms
        start = self._open_from_ms if self._open_from_ms is not None else end - REPLAY_BEFORE_MS
        self.log.warning("speech recognition connection dropped", anchor=self.anchor, error=why,
                         replay_from_ms=max(start, 0))
        self._open_from_ms = None
        return self.clip(max(start, 0), end)

    def _finish(self, conn: AsrConnection, pending: bytearray, base_ms: int) -> None:
        """Send what is left, then {"type": "end"}, and take the answers up to the final one."""
        try:
            while True:
                chunk = self._next_chunk(pending, behind_ms=0)
                if chunk is None:
                    break
                conn.send_audio(chunk)
            conn.send_end()
            deadline = self._clock() + END_WAIT_S
            while self._clock() < deadline:
                if self._answers(conn, conn.poll(0.2), base_ms):
                    return
        except (ConnectionClosed, OSError, AsrError) as e:
            self.log.warning("speech recognition ended early", anchor=self.anchor, error=str(e))

    def _answers(self, conn: AsrConnection, messages: list[dict], base_ms: int) -> bool:
        """Handle the service's answers; True at the final one. AsrError on an error answer."""
        for msg in messages:
            code = int(msg.get("code", 0))
            if code != 0:
                raise AsrError(code, str(msg.get("message", "")))
            if "result" in msg:
                try:
                    result = wire.Result.from_json(msg["result"])
                except (ValueError, TypeError):
                    continue
                self._result(conn, result, base_ms)
            if msg.get("final") == 1:
                return True
        return False

    def _result(self, conn: AsrConnection, r: wire.Result, base_ms: int) -> None:
        start, end = base_ms + r.start_time, base_ms + r.end_time
        if r.slice_type == wire.SLICE_START:
            self._open_from_ms = start
            return
        final = r.slice_type == wire.SLICE_END
        if final:
            self._open_from_ms = None
            if not r.voice_text_str.strip():
                return  # noise the recogniser heard no word in
        sentence = Sentence(self._next_index, start, end, r.voice_text_str, final, conn.voice_id)
        if final:
            self._next_index += 1
        self._on_result(self.anchor, sentence)
