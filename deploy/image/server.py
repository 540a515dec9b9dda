"""The image's entry: SCF's contract for image-deployed event functions, on the standard library.

    python -I -S -u /app/code/server.py        the image's command (ENTRY_FUNCTION names the function)
    python -I -S /app/code/server.py --check   load the native modules (liteav, PyAV, ...), print what loaded

SCF starts the command and expects, within 30 s, an HTTP server on 0.0.0.0:9000 (ENTRY_LISTEN=host:port
changes it: the tests and the emulator listen on loopback). Every invocation is `POST /event-invoke`
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

A malformed invocation (no body, not JSON, a required header missing or not a number) is answered
400 in SCF's error shape, {"errorType", "errorMessage"}, with a log line; the server goes on serving.
Only /tmp and the CFS mount are written: this tree is read-only in the image.
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Mapping

CODE_ROOT = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(os.path.dirname(CODE_ROOT), "site")  # the wheels installed for the image

LISTEN_ENV = "ENTRY_LISTEN"
DEFAULT_LISTEN = "0.0.0.0:9000"  # SCF's fixed port for image functions
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
# A new spare worker is started this long after one is taken, so that its imports do not compete
# for the CPU with the start of the invocation that was just handed over.
REFILL_DELAY_S = 1.0

_T0 = time.monotonic()


def log(level: str, msg: str, request_id: str | None = None, **fields: Any) -> None:
    """One JSON line on stderr, in shared/runtime.py's shape (the server does not import shared)."""
    now = time.time()
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z",
            "level": level, "request_id": request_id, "function": os.environ.get("ENTRY_FUNCTION") or None,
            "msg": msg, **fields}
    sys.stderr.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    sys.stderr.flush()


# --- the invocation ------------------------------------------------------------------------------


class InvocationError(ValueError):
    """The invocation is malformed; the message names what is wrong."""


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
    if not body:
        raise InvocationError(f"the invocation has no body: SCF sends the event as the body of POST {INVOKE_PATH}")
    try:
        event = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvocationError("the body is not UTF-8 text; the event must be JSON") from None
    except json.JSONDecodeError as e:
        raise InvocationError(f"the body is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    environment = {var: header(name) or "" for name, var in ROLE_HEADERS.items() if header(name)}
    return event, context, environment


def error_body(error_type: str, message: str, request_id: str | None = None) -> dict[str, str]:
    """SCF's error shape (as its runtimes report a failed call)."""
    body = {"errorType": error_type, "errorMessage": message}
    if request_id:
        body["requestId"] = request_id
    return body


# --- workers -------------------------------------------------------------------------------------


def _interpreter_args() -> list[str]:
    """This interpreter with the flags the server runs under (-I, -S, -B), unbuffered, on this file."""
    flags = [flag for flag, on in (("-I", sys.flags.isolated), ("-S", sys.flags.no_site),
                                   ("-B", sys.flags.dont_write_bytecode)) if on]
    return [sys.executable, *flags, "-u", os.path.abspath(__file__)]


class Worker:
    """One process that runs one invocation: request on its stdin, outcome on a pipe of its own."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen([*_interpreter_args(), "--worker", str(write_fd)], stdin=subprocess.PIPE,
                                         pass_fds=(write_fd,), cwd=CODE_ROOT)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._outcome_fd = read_fd

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Hand over the request and wait for the outcome: {"result": ...} or {"error": {...}}."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request, ensure_ascii=False).encode("utf-8"))
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
                threading.Thread(target=self.proc.wait, daemon=True).start()
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
        """A spare that will not be used: it has only imported modules, so it is simply killed."""
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            os.close(self._outcome_fd)
        except OSError:
            pass


class Workers:
    """A spare worker started ahead, the running ones, and SIGTERM for all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: Worker | None = None
        self._running: set[Worker] = set()
        self.stopping = False

    def fill(self) -> None:
        with self._lock:
            if not self.stopping and (self._spare is None or not self._spare.alive()):
                self._spare = Worker()

    def take(self) -> Worker | None:
        """The spare (or a fresh worker), now running; None once the server is stopping."""
        with self._lock:
            if self.stopping:
                return None
            worker, self._spare = self._spare, None
            if worker is None or not worker.alive():
                worker = Worker()
            self._running.add(worker)
        refill = threading.Timer(REFILL_DELAY_S, self.fill)
        refill.daemon = True
        refill.start()
        return worker

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

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
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
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = (self.headers.get("Content-Length") or "0").strip()
        if not length.isdigit():
            raise InvocationError(f"Content-Length must be a number of bytes (got {length!r})")
        return self.rfile.read(int(length))

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/":
            return self._refuse(404, "NotFound", f"no such path {self.path}; SCF invokes POST {INVOKE_PATH}")
        self.close_connection = True
        self._answer(200, {"status": "ok", "function": os.environ.get("ENTRY_FUNCTION") or None})

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
        except (InvocationError, ValueError) as e:
            return self._refuse(400, "InvalidInvocation", str(e), request_id)
        assert isinstance(self.server, Server)
        workers = self.server.workers
        worker = workers.take()
        if worker is None:
            return self._refuse(503, "ShuttingDown", "the instance is stopping (SIGTERM); the invocation did not run",
                                request_id)
        started = time.monotonic()
        log("info", "invocation started", request_id, trigger=self.headers.get("X-Scf-Trigger-Src"))
        try:
            outcome = worker.run({"event": event, "context": context, "env": environment})
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
            threading.Thread(target=self.server.shutdown, daemon=True).start()


class Server(http.server.ThreadingHTTPServer):
    # Exit waits for the invocations (Workers), not for idle keep-alive connections.
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.workers = Workers()


def listen_address(env: Mapping[str, str] = os.environ) -> tuple[str, int]:
    raw = (env.get(LISTEN_ENV) or DEFAULT_LISTEN).strip()
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{LISTEN_ENV} must be host:port (got {raw!r})")
    return host, int(port)


def serve() -> int:
    try:
        address = listen_address()
        server = Server(address)
    except (ValueError, OSError) as e:
        log("error", f"the entry server did not start: {e}")
        return 2
    server.workers.fill()

    def on_signal(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if server.workers.stop(signum):
            log("info", f"{name}: no invocation is running; exiting")
            threading.Thread(target=server.shutdown, daemon=True).start()
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
        payload = json.dumps({"result": result}, ensure_ascii=False)
    except BaseException as e:  # noqa: BLE001  (SystemExit and KeyboardInterrupt are failed calls too)
        trace = traceback.format_exc()
        sys.stderr.write(trace)
        payload = json.dumps({"error": {**error_body(type(e).__name__, str(e) or type(e).__name__),
                                        "stackTrace": trace}}, ensure_ascii=False)
    data = payload.encode("utf-8")
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
