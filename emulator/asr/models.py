"""The emulated real-time speech recognition service's state: accounts' sessions and what each
session has heard. No protocol here (responses.py speaks the WebSocket).

A session takes 16 kHz mono s16le audio as it arrives and answers with the service's results:
a sentence starts (slice_type 0) when the audio's energy rises, is heard (1, the general model's
unstable text, when `partial`), and ends (2, the recognised text and its words) after
`vad_silence_time` ms below the threshold. It refuses what the real service refuses: audio faster
than real time (beyond a lead of `lead_ms`), no audio for `idle_timeout_s`, and more sessions of
one account than `max_concurrency`.
"""
from __future__ import annotations

import itertools
import threading
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable

from shared.asr import wire

from . import exceptions
from .recogniser import hotword_list
from .workers import RemoteRecogniser, WorkerPool

DEFAULT_MAX_CONCURRENCY = 20  # the documented default per account
DEFAULT_IDLE_TIMEOUT_S = 15.0  # 4008: "no audio for 15 s"
DEFAULT_LEAD_MS = 3000  # 4000: "at most 3 s of audio within 1 s"
DEFAULT_VAD_SILENCE_MS = 1000
MIN_VAD_SILENCE_MS, MAX_VAD_SILENCE_MS = 240, 2000
MAX_SENTENCE_MS = 60_000
VAD_FRAME_MS = 20
SPEECH_RMS = 300  # s16 amplitude above which a 20 ms frame is speech
SPEECH_FRAMES_TO_START = 2
PRE_ROLL_MS = 200  # audio kept from before the start, so the first phoneme is not cut
PARTIAL_EVERY_MS = 400
ENGINES = ("16k_zh", "16k_en", "16k_zh_edu", "16k_en_edu", "16k_zh_en", "16k_zh_large", "16k_zh_dialect",
           "16k_multi_lang", "16k_ca", "16k_ja", "16k_ko", "16k_zh_medical")


@dataclass
class SessionParams:
    engine_model_type: str
    vad_silence_ms: int = DEFAULT_VAD_SILENCE_MS
    hotwords: list[str] = field(default_factory=list)
    word_info: bool = False
    partial: bool = True

    @classmethod
    def parse(cls, params: dict[str, Any]) -> "SessionParams":
        """The request's parameters (v2's query or v3's `params` block), checked as the service does."""
        engine = str(params.get("engine_model_type") or "")
        if engine not in ENGINES:
            raise exceptions.invalid(f"engine_model_type {engine!r} is not one of {', '.join(ENGINES)}")
        fmt = str(params.get("voice_format", "1"))
        if fmt != "1":
            raise exceptions.invalid(f"voice_format {fmt!r}: this service takes 1 (pcm) only")
        vad = params.get("vad_silence_time")
        try:
            vad_ms = DEFAULT_VAD_SILENCE_MS if vad in (None, "", 0, "0") else int(vad)
        except (TypeError, ValueError):
            raise exceptions.invalid(f"vad_silence_time {vad!r} is not a number") from None
        if not MIN_VAD_SILENCE_MS <= vad_ms <= MAX_VAD_SILENCE_MS:
            raise exceptions.invalid(f"vad_silence_time must be {MIN_VAD_SILENCE_MS}..{MAX_VAD_SILENCE_MS} ms")
        try:
            word_info = int(params.get("word_info") or 0) > 0
        except (TypeError, ValueError):
            raise exceptions.invalid("word_info is not a number") from None
        return cls(engine, vad_ms, hotword_list(str(params.get("hotword_list") or "")), word_info)


Emit = Callable[[dict[str, Any]], None]


class Session:
    """One recognition stream (one voice_id)."""

    def __init__(self, backend: "AsrBackend", app: str, voice_id: str, params: SessionParams, emit: Emit,
                 clock: Callable[[], float] = time.monotonic):
        self.backend, self.app, self.voice_id, self.params = backend, app, voice_id, params
        self._emit_raw = emit
        self._clock = clock
        self.started = clock()
        self.last_audio = self.started
        self.received_ms = 0
        self._pending = bytearray()  # less than one VAD frame
        self._pre_roll: list[bytes] = []
        self._messages = itertools.count()
        self._recogniser: RemoteRecogniser | None = None
        self._index = 0
        self._in_speech = False
        self._voiced_run = 0
        self._silence_ms = 0
        self._sentence_start = 0
        self._last_partial = 0
        self._last_partial_text = ""
        self.sentences: list[str] = []  # what was recognised, for tests and the console
        self.sentence_sent_at: list[float] = []  # clock() when each sentence's end was answered (benches)
        self.sentence_heard_until: list[float] = []  # ... and when its last voiced frame arrived
        self._voiced_at = 0.0

    def _emit(self, result: wire.Result | None = None, final: bool = False) -> None:
        self._emit_raw(wire.message(self.voice_id, f"{self.voice_id}-{next(self._messages)}", result=result,
                                    final=final, word_info=self.params.word_info))

    def hello(self) -> None:
        """The handshake's answer: code 0, no result."""
        self._emit()

    def audio(self, data: bytes) -> None:
        """One binary frame; AsrError when the client sends faster than real time."""
        now = self._clock()
        self.last_audio = now
        self.received_ms += len(data) // wire.BYTES_PER_MS
        ahead = self.received_ms - int((now - self.started) * 1000)
        if ahead > self.backend.lead_ms:
            raise exceptions.too_fast(ahead)
        self._pending += data
        frame = VAD_FRAME_MS * wire.BYTES_PER_MS
        while len(self._pending) >= frame:
            chunk = bytes(self._pending[:frame])
            del self._pending[:frame]
            self._frame(chunk)

    @property
    def hearing(self) -> str | None:
        """The unstable text of the sentence being spoken ("" before a first guess), None between
        sentences: the console's live caption (read from its thread; at worst a moment stale)."""
        return self._last_partial_text if self._in_speech else None

    def idle(self) -> bool:
        return self._clock() - self.last_audio >= self.backend.idle_timeout_s

    def end(self) -> None:
        """The client's `{"type": "end"}`: finish the sentence being spoken, then the final answer."""
        if self._in_speech:
            self._end_sentence()
        self._emit(final=True)

    def close(self) -> None:
        if self._recogniser is not None:
            self._recogniser.close()
            self._recogniser = None
        self.backend.release(self)

    # --- voice activity ----------------------------------------------------------------------

    @property
    def _position_ms(self) -> int:
        return self.received_ms - len(self._pending) // wire.BYTES_PER_MS

    def _frame(self, chunk: bytes) -> None:
        samples = array("h", chunk)
        rms = (sum(s * s for s in samples) / len(samples)) ** 0.5
        voiced = rms >= SPEECH_RMS
        end_ms = self._position_ms
        if not self._in_speech:
            self._pre_roll.append(chunk)
            del self._pre_roll[:-(PRE_ROLL_MS // VAD_FRAME_MS)]
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= SPEECH_FRAMES_TO_START:
                self._start_sentence(end_ms)
            return
        assert self._recogniser is not None
        self._recogniser.feed(chunk)
        self._silence_ms = 0 if voiced else self._silence_ms + VAD_FRAME_MS
        if voiced:
            self._voiced_at = self._clock()
        if self._silence_ms >= self.params.vad_silence_ms or end_ms - self._sentence_start >= MAX_SENTENCE_MS:
            self._end_sentence()
        elif self.params.partial and end_ms - self._last_partial >= PARTIAL_EVERY_MS:
            self._last_partial = end_ms
            text = self._recogniser.partial()
            if text and text != self._last_partial_text:
                self._last_partial_text = text
                self._emit(wire.Result(wire.SLICE_PARTIAL, self._index, self._sentence_start, end_ms, text))

    def _start_sentence(self, end_ms: int) -> None:
        if self._recogniser is None:
            self._recogniser = RemoteRecogniser(self.backend.pool, self.params.hotwords)
        self._in_speech = True
        self._silence_ms = 0
        roll = b"".join(self._pre_roll)
        self._pre_roll.clear()
        self._sentence_start = max(0, end_ms - len(roll) // wire.BYTES_PER_MS)
        self._last_partial = self._sentence_start
        self._last_partial_text = ""
        self._recogniser.begin()
        self._recogniser.feed(roll)
        self._emit(wire.Result(wire.SLICE_START, self._index, self._sentence_start, self._sentence_start))

    def _end_sentence(self) -> None:
        assert self._recogniser is not None
        self._in_speech = False
        self._voiced_run = 0
        end_ms = self._position_ms - self._silence_ms
        words = self._recogniser.end(self._sentence_start)
        text = " ".join(w.word for w in words)
        self.sentences.append(text)
        self._emit(wire.Result(wire.SLICE_END, self._index, self._sentence_start, max(end_ms, self._sentence_start),
                               text, tuple(words)))
        self.sentence_sent_at.append(self._clock())
        self.sentence_heard_until.append(self._voiced_at)
        self._index += 1


class AsrBackend:
    """The service's accounts: who may connect (v2 keys, v3 TRTC apps), and their live sessions."""

    def __init__(self, secret_id: str, secret_key: str, sdk_apps: dict[int, str], *,
                 max_concurrency: int = DEFAULT_MAX_CONCURRENCY, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 lead_ms: int = DEFAULT_LEAD_MS):
        self.secret_id, self.secret_key = secret_id, secret_key
        self.sdk_apps = dict(sdk_apps)  # sdkappid -> SDK secret key (UserSig)
        # Read at each connection: a test may change them while the service runs.
        self.max_concurrency = max_concurrency
        self.idle_timeout_s = idle_timeout_s
        self.lead_ms = lead_ms
        self.pool = WorkerPool()  # the recogniser's processes (workers.py: pocketsphinx holds the GIL)
        self._lock = threading.Lock()
        self._sessions: dict[str, list[Session]] = {}
        self.finished: list[Session] = []  # closed sessions, newest last (the console and tests read them)
        # A test's fault: close the next N sessions' connections after this many ms of audio.
        self.drop_after_ms: int | None = None

    def authenticate_v3(self, auth: Any, voice_id: str) -> str:
        """The account a v3 start frame's auth block names; AsrError 4002 when it does not hold."""
        from emulator.trtc import signature

        if not isinstance(auth, dict):
            raise exceptions.auth_failed("the start frame has no auth block")
        try:
            app = int(str(auth.get("sdkappid", "")))
        except ValueError:
            raise exceptions.auth_failed("auth.sdkappid is not a number") from None
        key = self.sdk_apps.get(app)
        if key is None:
            raise exceptions.auth_failed(f"sdkappid {app} has no speech recognition here")
        user_sig = str(auth.get("usersig") or "")
        try:
            identifier = str(signature.decode(user_sig).get("TLS.identifier", ""))
            # Tencent's SDK signs for the voice_id; a room UserSig of the app (its own user) is
            # what the function holds, and is taken as well.
            signature.verify(user_sig, app, key, identifier or voice_id)
        except signature.UserSigError as e:
            raise exceptions.auth_failed(f"usersig: {e}") from None
        return f"sdkappid {app}"

    def authenticate_v2(self, host: str, appid: str, params: dict[str, str]) -> str:
        if params.get("secretid") != self.secret_id:
            raise exceptions.auth_failed("unknown secretid")
        try:
            expired = int(params.get("expired", "0"))
        except ValueError:
            raise exceptions.auth_failed("expired is not a number") from None
        if expired < time.time():
            raise exceptions.auth_failed("the signature has expired")
        expected = wire.v2_signature(self.secret_key, host, f"{wire.V2_PATH}{appid}", params)
        if params.get("signature") != expected:
            raise exceptions.auth_failed("signature does not match")
        return f"appid {appid}"

    def open(self, app: str, voice_id: str, params: SessionParams, emit: Emit) -> Session:
        with self._lock:
            live = self._sessions.setdefault(app, [])
            if len(live) >= self.max_concurrency:
                raise exceptions.concurrency(app, self.max_concurrency)
            session = Session(self, app, voice_id, params, emit)
            live.append(session)
        return session

    def release(self, session: Session) -> None:
        with self._lock:
            live = self._sessions.get(session.app, [])
            if session in live:
                live.remove(session)
                self.finished.append(session)
                del self.finished[:-200]

    def session(self, voice_id: str) -> Session | None:
        """The live session with this voice_id, if any (the console finds an anchor's through its run's log)."""
        with self._lock:
            return next((s for ss in self._sessions.values() for s in ss if s.voice_id == voice_id), None)

    def live(self, app: str | None = None) -> list[Session]:
        with self._lock:
            return [s for a, ss in self._sessions.items() if app is None or a == app for s in ss]
