"""What every run needs from its surroundings: the SCF context, a JSON logger, and stop signals.

- `Invocation.from_context(context)` reads SCF's context dict (missing keys get sane defaults).
- `get_logger(request_id)` writes JSON lines to stderr carrying the request id, redacted by
  shared.secrets (secret fields, URL query strings and userinfo, known secret values).
- `StopSignal` turns SIGTERM (TerminateAsyncEvent with GraceShutdown) and the approaching time
  limit into one thing a work loop checks.
- `RetryPolicy(...).run(call, retryable=...)` is the one retry loop (COS uploads, callbacks).
"""
from __future__ import annotations

import json
import logging
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from shared.secrets import redact
from shared.settings import ConfigError, settings

# --- context -----------------------------------------------------------------------------------

DEFAULT_TIME_LIMIT_MS = 86_400_000  # SCF's async ceiling
# Stop this long before SCF would kill us: enough to checkpoint, finalise files, upload, call back.
DEFAULT_STOP_MARGIN_S = 10.0


@dataclass
class Invocation:
    request_id: str
    function_name: str
    namespace: str
    time_limit_ms: int
    memory_limit_mb: int
    started: float  # time.monotonic() when the handler began

    @classmethod
    def from_context(cls, context: Any, function_name: str = "") -> "Invocation":
        ctx: Mapping[str, Any] = context if isinstance(context, Mapping) else {}
        if not ctx and context is not None and not isinstance(context, Mapping):
            ctx = {k: getattr(context, k) for k in dir(context) if not k.startswith("_")}

        def _int(key: str, default: int) -> int:
            try:
                v = int(ctx.get(key) or default)
                return v if v > 0 else default
            except (TypeError, ValueError):
                return default

        return cls(
            request_id=str(ctx.get("request_id") or uuid.uuid4()),
            function_name=str(ctx.get("function_name") or function_name),
            namespace=str(ctx.get("namespace") or "default"),
            time_limit_ms=_int("time_limit_in_ms", DEFAULT_TIME_LIMIT_MS),
            memory_limit_mb=_int("memory_limit_in_mb", 512),
            started=time.monotonic(),
        )

    @property
    def deadline(self) -> float:
        """time.monotonic() at which SCF ends this run."""
        return self.started + self.time_limit_ms / 1000.0


# --- logging -----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "request_id": getattr(record, "request_id", None),
            "function": getattr(record, "function", None),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(redact(line), default=str, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (SCF's collector, a test's capture)."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class RunLogger(logging.LoggerAdapter):
    """`log.info("progress", position=12.3)`: keyword arguments become JSON fields."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra_fields = {k: kwargs.pop(k) for k in list(kwargs) if k not in ("exc_info", "stack_info", "stacklevel")}
        kwargs["extra"] = {**(self.extra or {}), "fields": extra_fields}
        return msg, kwargs

    # Typed as `process` reads them: any keyword is a field (logging's stubs allow only its own).
    def debug(self, msg: object, *args: object, **fields: Any) -> None:
        super().debug(msg, *args, **fields)

    def info(self, msg: object, *args: object, **fields: Any) -> None:
        super().info(msg, *args, **fields)

    def warning(self, msg: object, *args: object, **fields: Any) -> None:
        super().warning(msg, *args, **fields)

    def error(self, msg: object, *args: object, **fields: Any) -> None:
        super().error(msg, *args, **fields)

    def exception(self, msg: object, *args: object, **fields: Any) -> None:
        super().exception(msg, *args, **fields)


_handler_lock = threading.Lock()


def _log_level() -> str:
    # The logger exists before the preflight runs; a bad LOG_LEVEL is named by the preflight.
    try:
        return settings().log_level
    except ConfigError:
        return "INFO"


def get_logger(request_id: str = "", function: str = "") -> RunLogger:
    """A logger whose lines carry `request_id`; JSON on stderr (what SCF collects)."""
    base = logging.getLogger("trtc_media")
    with _handler_lock:
        if not base.handlers:
            h = _StderrHandler()
            h.setFormatter(JsonFormatter())
            base.addHandler(h)
            base.setLevel(_log_level())
            base.propagate = False
    return RunLogger(base, {"request_id": request_id or None, "function": function or None})


# --- stopping ----------------------------------------------------------------------------------


class StopSignal:
    """One place a work loop asks "should I stop, and why?".

    SIGTERM gives "terminated"; the deadline minus `margin` gives "time_limit"; `request(reason)`
    lets anything else (a room closing, a fenced checkpoint) stop the loop the same way.
    """

    def __init__(self, deadline: float | None = None, margin: float | None = None):
        if margin is None:
            margin = settings().stop_margin_seconds
        self._deadline = None if deadline is None else deadline - margin
        self._reason: str | None = None
        self._event = threading.Event()
        self._previous: dict[int, Any] = {}

    @property
    def reason(self) -> str | None:
        if self._reason is None and self._deadline is not None and time.monotonic() >= self._deadline:
            self.request("time_limit")
        return self._reason

    def __bool__(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        if self._reason is None:
            self._reason = reason
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout`, waking early on a stop. True if stopping."""
        if self._deadline is not None:
            timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
        self._event.wait(timeout)
        return self.reason is not None

    def install(self) -> "StopSignal":
        """Catch SIGTERM (and SIGINT) in the main thread; a no-op elsewhere."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, lambda *_: self.request("terminated"))
        return self

    def uninstall(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)
        self._previous.clear()

    def __enter__(self) -> "StopSignal":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


# --- retrying ----------------------------------------------------------------------------------

T = TypeVar("T")


class GaveUp(Exception):
    """`RetryPolicy.run` stopped trying. `error` is the last attempt's exception, `attempts` how
    many were made, `why` one of "not_retryable", "tries", "deadline", "cancelled"."""

    def __init__(self, error: BaseException, attempts: int, why: str):
        super().__init__(f"{error} ({why} after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.error = error
        self.attempts = attempts
        self.why = why


@dataclass
class RetryPolicy:
    """The one retry loop (COS uploads, callbacks): exponential backoff with jitter, bounded in
    attempts and by a deadline. `tries` is what the caller asked for, never raised behind its back."""

    tries: int = 4  # attempts in all (1: no retry)
    backoff: float = 0.5  # first wait, doubled each time...
    max_backoff: float = 8.0  # ...up to this
    deadline: float | None = None  # clock() after which no retry starts
    jitter: float = 0.25  # each wait is shortened by up to this fraction (parallel retries spread out)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError(f"tries must be at least 1 (got {self.tries})")
        if self.backoff < 0 or self.max_backoff < 0 or not 0 <= self.jitter < 1:
            raise ValueError("backoff and max_backoff must be >= 0 and jitter in [0, 1)")

    @classmethod
    def spanning(cls, seconds: float, backoff: float, max_backoff: float, **kwargs: Any) -> "RetryPolicy":
        """A policy that keeps retrying for at least `seconds` (its shortest jittered waits add up
        to that), unless its deadline comes first."""
        policy = cls(tries=1, backoff=backoff, max_backoff=max_backoff, **kwargs)
        if policy.backoff <= 0 or policy.max_backoff <= 0:
            raise ValueError("a policy spanning a time needs a positive backoff")
        while policy.shortest_span() < seconds:
            policy.tries += 1
        return policy

    def nominal_delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based), before jitter."""
        return min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))

    def delay(self, attempt: int) -> float:
        return self.nominal_delay(attempt) * random.uniform(1.0 - self.jitter, 1.0)

    def shortest_span(self) -> float:
        """The least time all the waits between `tries` attempts can add up to."""
        return sum(self.nominal_delay(n) * (1.0 - self.jitter) for n in range(1, self.tries))

    def longest_span(self) -> float:
        return sum(self.nominal_delay(n) for n in range(1, self.tries))

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def in_time(self, wait_s: float) -> bool:
        """Whether a retry after waiting `wait_s` still starts before the deadline."""
        return self.deadline is None or self.clock() + wait_s <= self.deadline

    def run(
        self,
        call: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool],
        on_retry: Callable[[int, BaseException, float], None] | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> T:
        """`call()` until it returns; its value. Raises GaveUp when an error is not `retryable`, the
        tries are used up, the next wait would pass the deadline, or `sleep(wait)` returns True (a
        `threading.Event.wait` that was set: cancelled). `on_retry(attempt, error, wait)` is told
        before each wait."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except Exception as e:  # the caller's predicate decides what is worth another try
                if not retryable(e):
                    raise GaveUp(e, attempt, "not_retryable") from None
                if attempt >= self.tries:
                    raise GaveUp(e, attempt, "tries") from None
                wait_s = self.delay(attempt)
                if not self.in_time(wait_s):
                    raise GaveUp(e, attempt, "deadline") from None
                if on_retry is not None:
                    on_retry(attempt, e, wait_s)
                if sleep(wait_s) is True:
                    raise GaveUp(e, attempt, "cancelled") from None
