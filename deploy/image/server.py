"""The image's entry: SCF's contract for image-deployed event functions, on the standard library.

    python -I -S -u /app/code/server.py        the image's command (ENTRY_FUNCTION names the function)
    python -I -S /app/code/server.py --check   load the native modules (liteav, PyAV, ...), print what loaded

SCF starts the command and expects, within 30 s, an HTTP server on 0.0.0.0:9000 (ENTRY_LISTEN=host:port
changes it: the tests and the emulator listen on loopback). The server reads its own settings
(ENTRY_*) alone through shared.settings.value, so that another wrong setting is reported by the call. Every invocation is `POST /event-invoke`
with the event as the body and the context in headers (X-Scf-Request-Id, X-Scf-Timeout in ms,
X-Scf-Memory in MB, X-Scf-Name, ...), the execution role's temporary keys included
(X-Scf-Secret-Id, X-Scf-Secret-Key, X-Scf-Session-Token). The answer's body is the function's
return value; stdout and stderr are the function's log. `GET /` answers 200 (a health check).

Each invocation runs `index.main_handler(event, context)` (deploy/entry.py) in a worker process of
its own: the role's keys go into that process's environment only, SIGTERM reaches its handler
alone, and nothing one run leaves behind (threads, native state) meets the next. A worker is
started ahead and imports the function while it waits (`index.preload`), so a call starts warm.
SIGTERM to the server (TerminateAsyncEvent with GraceShutdown) is forwarded to the running
workers; their results are answered, then the server exits.

A malformed invocation (no body, not JSON, nested deeper than MAX_EVENT_DEPTH, a body shorter than its
Content-Length, a required header missing or not a number) is answered 400 in SCF's error shape,
{"errorType", "errorMessage"}, with a log line, and never run; the server goes on serving. A request
whose bytes stop coming for ENTRY_READ_TIMEOUT_SECONDS is answered 408; one past ENTRY_MAX_WORKERS
invocations at once 429. Whatever goes wrong while an invocation runs, it is answered (500) and its
worker process ended: no worker outlives its invocation unanswered.
Only /tmp and the CFS mount are written: this tree is read-only in the image.
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

CODE_ROOT = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(os.path.dirname(CODE_ROOT), "site")  # the wheels installed for the image

INVOKE_PATH = "/event-invoke"
# Header -> the context key SCF's Python runtime passes (shared/runtime.py Invocation reads them).
CONTEXT_HEADERS = {
    "X-Scf-Request-Id": "request_id",
    "X-Scf-Timeout": "time_limit_in_ms",
    "X-Scf-Memory": "memory_limit_in_mb",
    "X-Scf-Name": "function_name",
    "X-Scf-Namespace": "namespace",
    "X-Scf-Version": "function_version",
    "X-Scf-Region": "tencentcloud_region",
    "X-Scf-Appid": "tencentcloud_appid",
    "X-Scf-Uin": "tencentcloud_uin",
}
REQUIRED_HEADERS = ("X-Scf-Request-Id", "X-Scf-Timeout", "X-Scf-Memory")
INTEGER_HEADERS = ("X-Scf-Timeout", "X-Scf-Memory")
# The execution role's temporary keys -> the variables the code runtime sets and
# shared/cos/ reads; set in the invocation's worker only.
ROLE_HEADERS = {
    "X-Scf-Secret-Id": "TENCENTCLOUD_SECRETID",
    "X-Scf-Secret-Key": "TENCENTCLOUD_SECRETKEY",
    "X-Scf-Session-Token": "TENCENTCLOUD_SESSIONTOKEN",
}
# What `--check` loads: the dependencies with native code (liteav, PyAV, pydantic-core) and the SDKs.
NATIVE_MODULES = ("liteav", "av", "pydantic_core", "crcmod", "qcloud_cos", "redis", "tencentcloud")
# Events nested deeper are refused: no JSON reader or writer on the way (here, the worker, the
# function's gateway) may run out of stack on them. An API Gateway event is 3 or 4 levels deep.
MAX_EVENT_DEPTH = 256
# SCF's own ceiling for a synchronous invocation's event is 6 MB; a body above this is refused unread.
MAX_BODY_BYTES = 16 * 1024 * 1024
# A new spare worker is started this long after one is taken, so that its imports do not compete
# for the CPU with the start of the invocation that was just handed over.
REFILL_DELAY_S = 1.0

_T0 = time.monotonic()
_function: str | None = None  # ENTRY_FUNCTION, read once at start (the log lines carry it)


def entry_setting(name: str) -> Any:
    """One of the server's settings (ENTRY_*), read alone from shared.settings (its one default)."""
    from shared.settings import value

    return value(name)


def spawn(target: Any, name: str) -> None:
    """`target()` on a thread of its own, by the house's one thread protocol (shared.worker)."""
    from shared.worker import spawn as start

    start(target, name)


def to_json(obj: Any) -> bytes:
    """`obj` as UTF-8 JSON; a lone surrogate in a string ("\ud800", which UTF-8 cannot carry) is
    written as its JSON escape instead of failing the answer."""
    try:
        return json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, default=str).encode("ascii")


def log(level: str, msg: str, request_id: str | None = None, **fields: Any) -> None:
    """One JSON line on stderr, in shared/runtime.py's shape (the server imports only shared.settings and
    shared.worker, never the logger: a wrong LOG_LEVEL is the call's to report)."""
    now = time.time()
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
            "level": level, "request_id": request_id, "function": _function,
            "msg": msg, **fields}
    sys.stderr.write(to_json(line).decode("utf-8") + "\n")
    sys.stderr.flush()


# --- the invocation ------------------------------------------------------------------------------


class InvocationError(ValueError):
    """The invocation is malformed; the message names what is wrong."""

    status = 400
    error_type = "InvalidInvocation"


class RequestTimeout(InvocationError):
    """The request's bytes stopped coming."""

    status = 408
    error_type = "RequestTimeout"


class TooLarge(InvocationError):
    status = 413
    error_type = "RequestTooLarge"


def depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (walked without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def parse_invocation(headers: Any, body: bytes) -> tuple[Any, dict[str, Any], dict[str, str]]:
    """(event, context, environment) from an /event-invoke request (`headers`: any mapping with
    .get, case-insensitive as HTTP headers are), or InvocationError."""
    def header(name: str) -> str | None:
        value = headers.get(name)
        return value.strip() if isinstance(value, str) else None

    missing = [name for name in REQUIRED_HEADERS if not header(name)]
    if missing:
        raise InvocationError(f"the invocation lacks the header{'s' if len(missing) > 1 else ''} "
                              f"{', '.join(missing)} (SCF sends the context in X-Scf-* headers)")
    context: dict[str, Any] = {key: header(name) for name, key in CONTEXT_HEADERS.items() if header(name)}
    for name in INTEGER_HEADERS:
        value = header(name) or ""
        if not value.isdigit() or int(value) <= 0:
            raise InvocationError(f"header {name} must be a positive integer (got {value!r})")
        context[CONTEXT_HEADERS[name]] = int(value)
    event = parse_event(body)
    environment = {var: header(name) or "" for name, var in ROLE_HEADERS.items() if header(name)}
    return event, context, environment


def parse_event(body: bytes) -> Any:
    """The event an /event-invoke body holds, or InvocationError."""
    if not body:
        raise InvocationError(f"the invocation has no body: SCF sends the event as the body of POST {INVOKE_PATH}")
    try:
        event = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvocationError("the body is not UTF-8 text; the event must be JSON") from None
    except json.JSONDecodeError as e:
        raise InvocationError(f"the body is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        event = None  # deeper than the parser goes: refused below
    if (event is None and body.strip() != b"null") or depth(event) > MAX_EVENT_DEPTH:
        raise InvocationError(f"the event is nested more than {MAX_EVENT_DEPTH} levels deep")
    return event


def error_body(error_type: str, message: str, request_id: str | None = None) -> dict[str, str]:
    """SCF's error shape (as its runtimes report a failed call)."""
    body = {"errorType": error_type, "errorMessage": message}
    if request_id:
        body["requestId"] = request_id
    return body


# --- workers -------------------------------------------------------------------------------------


def start_with_pipe(args: list[str], **popen: Any) -> tuple[subprocess.Popen, int]:
    """A worker process (the emulator's warm pool too) given a pipe to answer on: its write end's
    number is the last argument; ours is the read end. Its stdin is a pipe too."""
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([*args, str(write_fd)], stdin=subprocess.PIPE, pass_fds=(write_fd,), **popen)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return proc, read_fd


def reap(proc: subprocess.Popen, pipe_fd: int) -> None:
    """Wait for a killed worker to end and close our ends of its pipes (the emulator's warm pool too)."""
    proc.wait()
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        os.close(pipe_fd)
    except OSError:
        pass


def _interpreter_args() -> list[str]:
    """This interpreter with the flags the server runs under (-I, -S, -B), unbuffered, on this file."""
    flags = [flag for flag, on in (("-I", sys.flags.isolated), ("-S", sys.flags.no_site),
                                   ("-B", sys.flags.dont_write_bytecode)) if on]
    return [sys.executable, *flags, "-u", os.path.abspath(__file__)]


class Worker:
    """One process that runs one invocation: request on its stdin, outcome on a pipe of its own."""

    def __init__(self) -> None:
        self.proc, self._outcome_fd = start_with_pipe([*_interpreter_args(), "--worker"], cwd=CODE_ROOT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Hand over the request and wait for the outcome: {"result": ...} or {"error": {...}}."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(to_json(request))
            self.proc.stdin.close()
        except OSError:  # it died first; its exit status tells the rest
            pass
        with os.fdopen(self._outcome_fd, "rb") as outcome:
            raw = outcome.read()
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and ("result" in parsed or "error" in parsed):
                # Answered: the process is reaped aside, the answer does not wait for its exit.
                spawn(self.proc.wait, "entry-reap")
                return parsed
        rc = self.proc.wait()
        how = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        return {"error": error_body("ProcessExit", f"the function's process ended without a result ({how})")}

    def signal(self, signum: int) -> None:
        try:
            self.proc.send_signal(signum)
        except OSError:
            pass

    def discard(self) -> None:
        """A spare that will not be used, or a worker whose invocation cannot be answered: killed
        (whatever it started of its own is its handler's to end on SIGTERM; nothing ran yet for a spare)."""
        self.proc.kill()
        reap(self.proc, self._outcome_fd)


class Busy(Exception):
    """ENTRY_MAX_WORKERS invocations are running already."""


class Workers:
    """A spare worker started ahead, the running ones (at most `limit`), and SIGTERM for all of them."""

    def __init__(self, limit: int = 1) -> None:
        self._lock = threading.Lock()
        self._spare: Worker | None = None
        self._running: set[Worker] = set()
        self.limit = limit
        self.stopping = False

    def fill(self) -> None:
        with self._lock:
            if not self.stopping and (self._spare is None or not self._spare.alive()):
                self._spare = Worker()

    def take(self) -> Worker | None:
        """The spare (or a fresh worker), now running; None once the server is stopping; Busy when
        `limit` are running."""
        with self._lock:
            if self.stopping:
                return None
            if len(self._running) >= self.limit:
                raise Busy(f"{len(self._running)} invocations are running, as many as this instance runs at once "
                           f"(ENTRY_MAX_WORKERS={self.limit}); the invocation did not run")
            worker, self._spare = self._spare, None
            if worker is None or not worker.alive():
                worker = Worker()
            self._running.add(worker)
        spawn(self._refill_later, "entry-refill")
        return worker

    def _refill_later(self) -> None:
        time.sleep(REFILL_DELAY_S)  # the invocation just handed over starts first (see REFILL_DELAY_S)
        self.fill()

    def finished(self, worker: Worker) -> bool:
        """Forget a worker whose invocation ended; True when the server may now exit."""
        with self._lock:
            self._running.discard(worker)
            return self.stopping and not self._running

    def stop(self, signum: int) -> bool:
        """Refuse new invocations, pass `signum` to the running ones; True when none is running."""
        with self._lock:
            self.stopping = True
            spare, self._spare = self._spare, None
            running = list(self._running)
        for worker in running:
            worker.signal(signum)
        if spare is not None:
            spare.discard()
        return not running


# --- HTTP ----------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "trtc-media-entry"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the JSON lines below are the log)
        pass

    def setup(self) -> None:
        # Every read and write on the connection is bounded (a silent client cannot hold a thread).
        assert isinstance(self.server, Server)
        self.request.settimeout(self.server.read_timeout)
        super().setup()

    def _answer(self, status: int, body: Any) -> None:
        data = to_json(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, error_type: str, message: str, request_id: str | None = None) -> None:
        log("error", message, request_id, errorType=error_type, path=self.path)
        self.close_connection = True
        self._answer(status, error_body(error_type, message, request_id))

    def _body(self) -> bytes:
        """The request's body, whole: a body that ends early (the client went away) or stalls is an
        InvocationError, never a shorter event."""
        assert isinstance(self.server, Server)
        try:
            return self._read_body()
        except (socket.timeout, TimeoutError):
            raise RequestTimeout(f"the request's body stopped coming for {self.server.read_timeout:g} s "
                                 "(ENTRY_READ_TIMEOUT_SECONDS); the invocation did not run") from None

    def _read(self, n: int, what: str) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise InvocationError(f"the {what} ended after {len(data)} of its {n} bytes (the connection closed); "
                                  "the invocation did not run")
        return data

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise InvocationError("the chunked body ended early (the connection closed); the invocation did not run")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise TooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes")
                chunks.append(self._read(size, "chunk"))
                self.rfile.readline(1024)
        length = (self.headers.get("Content-Length") or "0").strip()
        if not length.isdigit():
            raise InvocationError(f"Content-Length must be a number of bytes (got {length!r})")
        if int(length) > MAX_BODY_BYTES:
            raise TooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes (Content-Length {length})")
        return self._read(int(length), "body")

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/":
            return self._refuse(404, "NotFound", f"no such path {self.path}; SCF invokes POST {INVOKE_PATH}")
        self.close_connection = True
        self._answer(200, {"status": "ok", "function": _function})

    def do_PUT(self) -> None:
        self._refuse(405, "MethodNotAllowed", f"{self.command} is not served; SCF invokes POST {INVOKE_PATH}")

    do_DELETE = do_PATCH = do_PUT

    def do_POST(self) -> None:
        request_id = (self.headers.get("X-Scf-Request-Id") or "").strip() or None
        if self.path.split("?", 1)[0] != INVOKE_PATH:
            return self._refuse(404, "NotFound", f"no such path {self.path}; SCF invokes POST {INVOKE_PATH}",
                                request_id)
        try:
            event, context, environment = parse_invocation(self.headers, self._body())
        except InvocationError as e:
            return self._refuse(e.status, e.error_type, str(e), request_id)
        except ValueError as e:
            return self._refuse(400, "InvalidInvocation", str(e), request_id)
        assert isinstance(self.server, Server)
        workers = self.server.workers
        try:
            worker = workers.take()
        except Busy as e:
            return self._refuse(429, "TooManyInvocations", str(e), request_id)
        if worker is None:
            return self._refuse(503, "ShuttingDown", "the instance is stopping (SIGTERM); the invocation did not run",
                                request_id)
        started = time.monotonic()
        log("info", "invocation started", request_id, trigger=self.headers.get("X-Scf-Trigger-Src"))
        try:
            outcome = worker.run({"event": event, "context": context, "env": environment})
        except BaseException as e:  # noqa: BLE001  (answered and the worker ended, whatever it was)
            worker.discard()
            outcome = {"error": error_body("InternalError", f"the invocation could not be run: {type(e).__name__}: {e}")}
        finally:
            last = workers.finished(worker)
        status = 200 if "result" in outcome else 500
        log("info" if status == 200 else "error", "invocation ended", request_id, status=status,
            durationMs=round((time.monotonic() - started) * 1000))
        try:
            self._answer(status, outcome["result"] if status == 200 else outcome["error"])
        except OSError:
            log("error", "the invocation's answer could not be sent (SCF closed the connection)", request_id)
        if last:
            spawn(self.server.shutdown, "entry-shutdown")


class Server(http.server.ThreadingHTTPServer):
    # Exit waits for the invocations (Workers), not for idle keep-alive connections.
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], max_workers: int = 1, read_timeout: float = 30.0) -> None:
        super().__init__(address, Handler)
        self.workers = Workers(max_workers)
        self.read_timeout = read_timeout


def listen_address() -> tuple[str, int]:
    """ENTRY_LISTEN as (host, port); ValueError naming it when malformed."""
    host, _, port = str(entry_setting("ENTRY_LISTEN")).rpartition(":")
    return host, int(port)


def serve() -> int:
    global _function
    try:
        _function = entry_setting("ENTRY_FUNCTION")
        address = listen_address()
        server = Server(address, entry_setting("ENTRY_MAX_WORKERS"), entry_setting("ENTRY_READ_TIMEOUT_SECONDS"))
    except (ValueError, OSError) as e:
        log("error", f"the entry server did not start: {e}")
        return 2
    server.workers.fill()

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if server.workers.stop(signum):
            log("info", f"{name}: no invocation is running; exiting")
            spawn(server.shutdown, "entry-shutdown")
        else:
            log("info", f"{name}: passed to the running invocation; exiting once it has answered")

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    log("info", "listening", address=f"{address[0]}:{server.server_port}", startupMs=round((time.monotonic() - _T0) * 1000))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.workers.stop(signal.SIGTERM)
        server.server_close()
    log("info", "stopped")
    return 0


# --- the worker and the check --------------------------------------------------------------------


def work(outcome_fd: int) -> int:
    """A worker: import the function, wait for the request, run it, write the outcome, exit."""
    os.set_inheritable(outcome_fd, False)  # the handler's own children must not hold the pipe open
    try:
        import index  # type: ignore[import-not-found]  # deploy/entry.py, copied into the image as index.py

        index.preload()
    except BaseException:  # noqa: BLE001  (the invocation reports it; the spare must not die of it)
        traceback.print_exc()
    raw = sys.stdin.buffer.read()
    if not raw:
        return 0  # a spare that was not needed
    request = json.loads(raw)
    os.environ.update(request.get("env") or {})
    try:
        import index

        result = index.main_handler(request.get("event"), request.get("context"))
        data = to_json({"result": result})
    except BaseException as e:  # noqa: BLE001  (SystemExit and KeyboardInterrupt are failed calls too)
        trace = traceback.format_exc()
        sys.stderr.write(trace)
        data = to_json({"error": {**error_body(type(e).__name__, str(e) or type(e).__name__), "stackTrace": trace}})
    while data:
        data = data[os.write(outcome_fd, data):]
    os.close(outcome_fd)
    # The call is over and answered: skip the interpreter's teardown of PyAV and friends (~0.3 s).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def check() -> int:
    """Load the native modules from this tree; print one JSON line saying what loaded and from where."""
    import importlib
    import platform

    report: dict[str, Any] = {"python": platform.python_version(), "glibc": os.confstr("CS_GNU_LIBC_VERSION"), "modules": {}}
    failed = False
    for name in NATIVE_MODULES:
        try:
            report["modules"][name] = importlib.import_module(name).__file__
        except Exception as e:  # noqa: BLE001
            report["modules"][name] = f"failed: {type(e).__name__}: {e}"
            failed = True
    if not failed:
        report["trtc"] = hasattr(sys.modules["liteav"], "TRTCCloud")
        report["h264"] = "h264" in sys.modules["av"].codecs_available
    print(json.dumps(report), flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    # Run with -I -S: nothing but this tree and the standard library is importable.
    for path in (SITE, CODE_ROOT):
        if path not in sys.path:
            sys.path.insert(0, path)
    if argv[:1] == ["--worker"] and len(argv) == 2:
        return work(int(argv[1]))
    if argv == ["--check"]:
        return check()
    if argv:
        print(f"usage: server.py [--check]  (got {' '.join(argv)})", file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
