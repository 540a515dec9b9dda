"""SCF functions and their runs: state and behaviour, no HTTP.

Every invocation of an asynchronous function is one process (`python -m emulator.scf.runner`, which
imports the function's `index.py` from its code root and calls `main_handler(event, context)`), in
a session of its own so that a kill takes every child with it. A synchronous function's calls run
in warm instances kept between calls, as SCF keeps them (emulator/scf/pool.py); Run.pid names the
instance that took the call. A run is kept by request id in `runs_dir/<request id>/`:

    run.json     what is known about the run (status, times, result, the event with secrets redacted)
    log          the function's stdout and stderr, between SCF's START and END/Report lines
    result.json  what the runner wrote: the handler's return value, or the error it raised

Statuses are SCF's async-event statuses: RUNNING, FINISHED, FAILED (raised, timed out, crashed, or
returned a result saying `"status": "failed"`), ABORTED (stopped by TerminateAsyncEvent).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from shared.gateway import redact_event

from .exceptions import ScfError, concurrency_exceeded, event_not_found, function_not_found, request_too_large
from .pool import DEFAULT_IDLE_S, DEFAULT_SIZE, Instance, WarmPool

log = logging.getLogger("emulator.scf")

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT = "Event"
REQUEST_RESPONSE = "RequestResponse"
INVOKE_TYPES = (EVENT, REQUEST_RESPONSE)
LATEST = "$LATEST"
DEFAULT_NAMESPACE = "default"
# SCF's limits on the event: 128 KB for an async invocation, 6 MB for a synchronous one.
ASYNC_EVENT_LIMIT = 128 * 1024
SYNC_EVENT_LIMIT = 6 * 1024 * 1024
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # ListAsyncEvents' StartTime / EndTime

# Function status codes (SCF's "Cloud Function Status Code" table).
CODE_RUNNING = 202
CODE_OK = 200
CODE_USER_ERROR = 430
CODE_TIMEOUT = 433
CODE_PROCESS_EXIT = 439  # "User process exit when running"
DEFAULT_RUNNER = "emulator.scf.runner"


class Status(str, Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    code_root: Path
    handler: str = "index.main_handler"
    time_limit_ms: int = 86_400_000  # SCF's ceiling for an async function
    memory_limit_mb: int = 512
    environment: Mapping[str, str] = field(default_factory=dict)
    # The module each run is (`python -m ...`): SCF's Python runtime, or the image's entry server.
    runner: str = DEFAULT_RUNNER
    # True: API Gateway invokes it synchronously and answers with its result (push_control);
    # False: asynchronously, answering "Async run task submitted" at once (the seed's functions).
    sync: bool = False


@dataclass(eq=False)
class Run:
    request_id: str
    function: FunctionConfig
    invoke_type: str
    source: str  # "apigw" (the gateway) or "invoke" (Cloud API Invoke)
    directory: Path
    started_at: datetime
    redacted_event: Any
    status: Status = Status.RUNNING
    status_code: int = CODE_RUNNING
    ended_at: datetime | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    max_rss_kb: int = 0
    terminated: str | None = None  # "grace", "kill" or "shutdown" once someone stops it
    pid: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _instance: Instance | None = field(default=None, repr=False)  # the warm instance running it
    _t0: float = field(default_factory=time.monotonic, repr=False)
    _t1: float | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.directory / "log"

    @property
    def result_path(self) -> Path:
        return self.directory / "result.json"

    _loaded_duration_ms: float | None = field(default=None, repr=False)

    @property
    def duration_ms(self) -> float:
        if self._loaded_duration_ms is not None:
            return self._loaded_duration_ms
        return round(((self._t1 or time.monotonic()) - self._t0) * 1000.0, 3)

    def read_log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "functionName": self.function.name,
            "invokeType": self.invoke_type,
            "source": self.source,
            "status": self.status.value,
            "statusCode": self.status_code,
            "startTime": self.started_at.strftime(TIME_FORMAT),
            "endTime": self.ended_at.strftime(TIME_FORMAT) if self.ended_at else None,
            "durationMs": self.duration_ms,
            "terminated": self.terminated,
            "pid": self.pid,
            "result": self.result,
            "error": self.error,
            "event": self.redacted_event,
            "logFile": str(self.log_path),
            "resultFile": str(self.result_path),
        }


def says_failed(result: Any) -> bool:
    """A result `{"status": "failed", ...}`, bare or as the JSON body of an API Gateway response."""
    if not isinstance(result, Mapping):
        return False
    if result.get("status") == "failed":
        return True
    body = result.get("body")
    if "statusCode" in result and isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return False
        return isinstance(parsed, Mapping) and parsed.get("status") == "failed"
    return False


class Scf:
    """The functions and every run of them. Thread-safe: the gateway and the Cloud API share one."""

    def __init__(self, runs_dir: str | Path, functions: list[FunctionConfig] | tuple[FunctionConfig, ...] = (),
                 *, max_concurrency: int = 8, base_env: Mapping[str, str] | None = None,
                 region: str = "ap-guangzhou", app_id: str = "1250000000", uin: str = "100000000001",
                 python: str = sys.executable, warm_size: int = DEFAULT_SIZE,
                 warm_idle_s: float = DEFAULT_IDLE_S):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.functions: dict[str, FunctionConfig] = {f.name: f for f in functions}
        self.max_concurrency = max_concurrency
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.region, self.app_id, self.uin = region, app_id, uin
        self.python = python
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._closing = False
        self.warm_size, self.warm_idle_s = warm_size, warm_idle_s
        self._pools: dict[str, WarmPool] = {}
        for fn in self.functions.values():
            self._start_pool(fn)

    # --- runs of an earlier session ----------------------------------------------------------

    def load_previous(self) -> int:
        """Read back the runs kept in `runs_dir` by an earlier session, so that their status, result
        and log stay readable by request id. A run that was still RUNNING when that session died is
        FAILED (439) now: nothing is running it any more. Returns how many were loaded."""
        loaded = 0
        for path in sorted(self.runs_dir.glob("*/run.json")):
            try:
                d = json.loads(path.read_text("utf-8"))
                request_id = str(d["requestId"])
                fn = self.functions.get(d["functionName"]) or FunctionConfig(str(d["functionName"]), Path("."))
                started = datetime.strptime(d["startTime"], TIME_FORMAT)
                ended = datetime.strptime(d["endTime"], TIME_FORMAT) if d.get("endTime") else None
                status = Status(d["status"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable run record %s", path)
                continue
            run = Run(request_id, fn, str(d.get("invokeType") or EVENT), str(d.get("source") or "invoke"),
                      path.parent, started, d.get("event"), status=status,
                      status_code=int(d.get("statusCode") or 0), ended_at=ended, result=d.get("result"),
                      error=d.get("error"), terminated=d.get("terminated"),
                      _loaded_duration_ms=float(d.get("durationMs") or 0.0))
            if status is Status.RUNNING:
                run.status, run.status_code = Status.FAILED, CODE_PROCESS_EXIT
                run.ended_at = run.ended_at or datetime.now()
                run.error = {"errorType": "ProcessExit",
                             "errorMessage": "User process exit when running (the local cloud stopped while it ran)"}
                self._save(run)
            run.done.set()
            with self._lock:
                self._runs.setdefault(request_id, run)
            loaded += 1
        return loaded

    # --- functions ---------------------------------------------------------------------------

    def add_function(self, config: FunctionConfig) -> None:
        with self._lock:
            self.functions[config.name] = config
            old = self._pools.pop(config.name, None)
        if old is not None:
            old.close()  # its instances run the function as it was configured
        self._start_pool(config)

    def _start_pool(self, fn: FunctionConfig) -> None:
        """Warm instances for a synchronous function on SCF's Python runtime (none with warm_size 0)."""
        if not fn.sync or fn.runner != DEFAULT_RUNNER or self.warm_size <= 0:
            return
        pool = WarmPool(fn.name, [self.python, "-m", fn.runner], str(fn.code_root), self._env(fn),
                        str(fn.code_root), fn.handler, size=self.warm_size, idle_s=self.warm_idle_s)
        with self._lock:
            self._pools[fn.name] = pool
        pool.start()

    def pool(self, name: str) -> WarmPool | None:
        """The warm instances of a synchronous function."""
        with self._lock:
            return self._pools.get(name)

    def function(self, name: str) -> FunctionConfig:
        try:
            return self.functions[name]
        except KeyError:
            raise function_not_found(name) from None

    # --- runs --------------------------------------------------------------------------------

    def invoke(self, name: str, event: Any, invoke_type: str = EVENT, *, source: str = "invoke",
               request_id: str | None = None) -> Run:
        """Start a run of `name` with `event`; raise ScfError if it cannot start."""
        fn = self.function(name)
        payload_event = json.dumps(event, ensure_ascii=False)
        limit = ASYNC_EVENT_LIMIT if invoke_type == EVENT else SYNC_EVENT_LIMIT
        size = len(payload_event.encode("utf-8", "surrogatepass"))  # a lone surrogate counts, not crashes
        if size > limit:
            raise request_too_large(size, limit)
        request_id = request_id or str(uuid.uuid4())
        with self._lock:
            if self._closing:
                raise ScfError("FailedOperation.InvokeFunction", "The local cloud is shutting down.", 503)
            running = sum(1 for r in self._runs.values() if r.status is Status.RUNNING)
            if running >= self.max_concurrency:
                raise concurrency_exceeded(self.max_concurrency)
            # Kept as the function reads it: a gateway body decoded and parsed, then redacted by field.
            run = Run(request_id, fn, invoke_type, source, self.runs_dir / request_id, datetime.now(),
                      redact_event(event))
            self._runs[request_id] = run
        try:
            self._spawn(run, payload_event)
        except Exception as e:
            self._finish(run, None, timed_out=False, spawn_error=f"{type(e).__name__}: {e}")
            raise ScfError("FailedOperation.InvokeFunction", f"The function process did not start: {e}", 500) from e
        return run

    def _context(self, run: Run) -> dict[str, Any]:
        fn = run.function
        return {
            "callbackWaitsForEmptyEventLoop": True,
            "memory_limit_in_mb": fn.memory_limit_mb,
            "time_limit_in_ms": fn.time_limit_ms,
            "request_id": run.request_id,
            "environment": json.dumps({k: v for k, v in fn.environment.items()
                                       if not k.startswith("TENCENTCLOUD_")}),
            "function_version": LATEST,
            "function_name": fn.name,
            "namespace": DEFAULT_NAMESPACE,
            "tencentcloud_region": self.region,
            "tencentcloud_appid": self.app_id,
            "tencentcloud_uin": self.uin,
        }

    def _env(self, fn: FunctionConfig) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(fn.environment)
        pythonpath = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env.update({
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
            "PYTHONUNBUFFERED": "1",
            "SCF_FUNCTIONNAME": fn.name,
            "SCF_FUNCTIONVERSION": LATEST,
            "SCF_NAMESPACE": DEFAULT_NAMESPACE,
            "SCF_MEMORYSIZE": str(fn.memory_limit_mb),
            "SCF_RUNTIME": f"Python{sys.version_info.major}.{sys.version_info.minor}",
            "TENCENTCLOUD_RUNENV": "SCF",
            "TENCENTCLOUD_REGION": self.region,
            "TENCENTCLOUD_APPID": self.app_id,
            "TENCENTCLOUD_UIN": self.uin,
        })
        return env

    def _spawn(self, run: Run, payload_event: str) -> None:
        run.directory.mkdir(parents=True, exist_ok=True)
        self._save(run)
        fn = run.function
        request = json.dumps({"event": json.loads(payload_event), "context": self._context(run),
                              "handler": fn.handler, "code_root": str(fn.code_root),
                              "result_path": str(run.result_path), "log_path": str(run.log_path)}).encode()
        pool = self.pool(fn.name)
        if pool is not None:
            with open(run.log_path, "ab") as logf:
                logf.write(f"START RequestId: {run.request_id}\n".encode())
            watcher = threading.Thread(target=self._watch_warm, args=(run, pool, request),
                                       name=f"scf-run-{run.request_id[:8]}", daemon=True)
            watcher.start()
            return
        with open(run.log_path, "ab") as logf:
            logf.write(f"START RequestId: {run.request_id}\n".encode())
            logf.flush()
            # Its own session: a kill reaches the whole process group, children included.
            proc = subprocess.Popen([self.python, "-m", fn.runner], cwd=str(fn.code_root),
                                    env=self._env(fn), stdin=subprocess.PIPE, stdout=logf,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        run._proc = proc
        run.pid = proc.pid
        self._save(run)
        watcher = threading.Thread(target=self._watch, args=(run, request), name=f"scf-run-{run.request_id[:8]}",
                                   daemon=True)
        watcher.start()

    def _watch(self, run: Run, request: bytes) -> None:
        proc = run._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(request)
            proc.stdin.close()
        except OSError:  # the runner died before reading; its exit code tells the rest
            pass
        timed_out = False
        try:
            rc = proc.wait(timeout=run.function.time_limit_ms / 1000.0)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill_group(proc)
            rc = proc.wait()
        self._kill_group(proc)  # whatever the handler left running dies with it
        self._finish(run, rc, timed_out)

    def _watch_warm(self, run: Run, pool: WarmPool, request: bytes) -> None:
        """The call in a warm instance: handed over on its stdin, answered on its pipe."""
        try:
            instance = pool.take()
        except Exception as e:  # noqa: BLE001  (reported as the run's failure)
            self._finish(run, None, timed_out=False, spawn_error=f"{type(e).__name__}: {e}")
            return
        with self._lock:
            run._proc, run._instance, run.pid = instance.proc, instance, instance.pid
            terminated = run.terminated
        self._save(run)
        rc: int | None = None
        timed_out = False
        if not terminated:
            assert instance.proc.stdin is not None
            try:
                instance.proc.stdin.write(request + b"\n")
                instance.proc.stdin.flush()
                answer = instance.read_message(run.function.time_limit_ms / 1000.0)
                if answer is None:  # the time limit
                    timed_out = True
                    instance.end()
                    rc = instance.proc.returncode
                else:
                    rc = int(answer.get("rc", 1)) if answer.get("done") else 1
            except (OSError, EOFError):  # it died (crashed, killed) before answering
                rc = instance.proc.wait()
        pool.give_back(instance, healthy=rc == 0 and not timed_out and not run.terminated)
        self._finish(run, rc, timed_out)

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self, run: Run, rc: int | None, timed_out: bool, spawn_error: str | None = None) -> None:
        outcome: dict[str, Any] = {}
        try:
            outcome = json.loads(run.result_path.read_text("utf-8"))
        except (OSError, ValueError):
            pass
        returned = "result" in outcome and rc == 0
        run.max_rss_kb = int(outcome.get("maxRssKb") or 0)
        if returned:
            run.result = outcome["result"]
        if spawn_error:
            status, code = Status.FAILED, CODE_PROCESS_EXIT
            run.error = {"errorType": "SpawnError", "errorMessage": spawn_error}
        elif timed_out:
            status, code = Status.FAILED, CODE_TIMEOUT
            run.error = {"errorType": "TimeLimitReached",
                         "errorMessage": f"Invoking task timed out after {run.function.time_limit_ms / 1000:g} seconds"}
        elif run.terminated:
            status, code = Status.ABORTED, (CODE_OK if returned else CODE_PROCESS_EXIT)
            if not returned:
                run.error = {"errorType": "Terminated",
                             "errorMessage": f"stopped by TerminateAsyncEvent ({run.terminated})"}
        elif returned:
            status, code = (Status.FAILED, CODE_USER_ERROR) if says_failed(run.result) else (Status.FINISHED, CODE_OK)
        elif "error" in outcome:
            status, code = Status.FAILED, CODE_USER_ERROR
            run.error = outcome["error"]
        else:
            status, code = Status.FAILED, CODE_PROCESS_EXIT
            how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit code {rc}"
            run.error = {"errorType": "ProcessExit", "errorMessage": f"User process exit when running ({how})"}
        run._t1 = time.monotonic()
        run.ended_at = datetime.now()
        with self._lock:
            run.status, run.status_code = status, code
        try:
            with open(run.log_path, "a", encoding="utf-8") as logf:
                if run.error and not (returned or "error" in outcome):
                    logf.write(f"{run.error['errorMessage']}\n")
                logf.write(f"END RequestId: {run.request_id}\n")
                logf.write(f"Report RequestId: {run.request_id} Duration: {run.duration_ms:.0f}ms "
                           f"Memory: {run.function.memory_limit_mb}MB MaxMemoryUsed: {run.max_rss_kb / 1024:.1f}MB "
                           f"Status: {status.value} StatusCode: {code}\n")
        except OSError:
            pass
        self._save(run)
        run.done.set()
        log.info("run %s of %s: %s (%s)", run.request_id, run.function.name, status.value, code)

    def _save(self, run: Run) -> None:
        try:
            run.directory.mkdir(parents=True, exist_ok=True)
            tmp = run.directory / "run.json.tmp"
            # backslashreplace writes a lone surrogate as its JSON escape: the record stays valid JSON.
            tmp.write_text(json.dumps(run.to_dict(), ensure_ascii=False, default=str, indent=1), "utf-8",
                           errors="backslashreplace")
            tmp.replace(run.directory / "run.json")
        except OSError:
            log.exception("could not save run %s", run.request_id)

    def get(self, request_id: str) -> Run:
        with self._lock:
            run = self._runs.get(request_id)
        if run is None:
            raise event_not_found(request_id)
        return run

    def runs(self, function_name: str | None = None) -> list[Run]:
        with self._lock:
            return [r for r in self._runs.values() if function_name in (None, r.function.name)]

    def wait(self, run: Run, timeout: float | None = None) -> bool:
        return run.done.wait(timeout)

    def terminate(self, function_name: str, request_id: str, grace: bool) -> Run:
        """GraceShutdown: SIGTERM to the handler's process (it may finish its work); else kill its group."""
        self.function(function_name)
        run = self.get(request_id)
        if run.function.name != function_name:
            raise event_not_found(request_id)
        with self._lock:
            if run.status is not Status.RUNNING or run.terminated:
                raise ScfError("FailedOperation.AsyncEventStatus",
                               f"The event is {run.status.value}"
                               f"{' and already being terminated' if run.terminated else ''}; "
                               "only a RUNNING event can be terminated.")
            run.terminated = "grace" if grace else "kill"
            proc = run._proc
            if proc is not None and proc.poll() is None:
                if grace:
                    proc.send_signal(signal.SIGTERM)
                else:
                    self._kill_group(proc)
        if not grace:
            run.done.wait(10.0)  # a kill is over at once; answer when the status says ABORTED
        return run

    def running(self) -> list[Run]:
        with self._lock:
            return [r for r in self._runs.values() if r.status is Status.RUNNING]

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Refuse new runs; SIGTERM the running ones, give them `grace_s`, then kill what is left;
        end the warm instances."""
        with self._lock:
            self._closing = True
            pools, self._pools = list(self._pools.values()), {}
            runs = [r for r in self._runs.values() if r.status is Status.RUNNING]
            for r in runs:
                r.terminated = r.terminated or "shutdown"
                if r._proc is not None and r._proc.poll() is None:
                    r._proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for r in runs:
            r.done.wait(max(0.0, deadline - time.monotonic()))
        for r in runs:
            if not r.done.is_set() and r._proc is not None:
                self._kill_group(r._proc)
        for r in runs:
            r.done.wait(5.0)
        for pool in pools:
            pool.close()
