"""Function runs, as SCF's Python runtime does them: `python -m emulator.scf.runner [--warm FD]`.

One run (asynchronous functions, a process each): reads {"event", "context", "handler", "code_root",
"result_path"} as JSON on stdin, imports the handler's module from the code root, calls
`handler(event, context)` and writes {"result": <return value>} or {"error": {"errorType",
"errorMessage", "stackTrace"}} to `result_path`. Exit code 0 when the handler returned, 1 when it
raised. Whatever the handler prints goes to stdout/stderr, which the emulator keeps as the run's log.

A warm instance (`--warm FD`, synchronous functions: emulator/scf/pool.py keeps these): imports
the handler named by WARM_HANDLER from WARM_CODE_ROOT at once, says {"ready", "pid", "files"} on FD
(the project's module files it loaded and their mtimes, so that the pool sees a code change), then
takes one request a line on stdin (the same request plus "log_path"), runs it with stdout and
stderr appended to that log, writes the outcome as above, and answers {"done", "rc"} on FD. Module
state stays between calls, as in an SCF instance; the pool ends the instance after an error.

On SCF every directory but /tmp is read-only (a mounted CFS aside), so the handler runs with HOME
where nothing can be created: a library that writes under ~ by default (liteav's log goes to
~/.cache/<app>/liteav/log unless told otherwise) fails here as it would there.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

Handler = Callable[[Any, Any], Any]

# Set in a warm instance's environment by the pool: what to import before the first request.
WARM_CODE_ROOT = "WARM_CODE_ROOT"
WARM_HANDLER = "WARM_HANDLER"
REPO_ROOT = Path(__file__).resolve().parents[2]


def peak_rss_kb() -> int:
    """This process's own high-water mark (VmHWM; exec starts it afresh, unlike getrusage's
    ru_maxrss, which carries the emulator's own peak into every child it starts)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _write(path: str, outcome: dict[str, Any]) -> None:
    outcome["maxRssKb"] = peak_rss_kb()
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(outcome, ensure_ascii=False), "utf-8")
    tmp.replace(path)


# A path under a character device: no one, root included, can create anything below it.
UNWRITABLE_HOME = "/dev/null/scf-home"


def _load(code_root: str, handler_spec: str | None) -> Handler:
    module_name, _, func_name = str(handler_spec or "index.main_handler").rpartition(".")
    sys.path.insert(0, code_root)
    os.chdir(code_root)
    module = importlib.import_module(module_name or "index")
    return getattr(module, func_name)


def _error(result_path: str, e: BaseException) -> None:
    trace = traceback.format_exc()
    sys.stderr.write(trace)
    sys.stderr.flush()
    _write(result_path, {"error": {"errorType": type(e).__name__, "errorMessage": str(e) or type(e).__name__,
                                   "stackTrace": trace}})


def _call(handler: Handler, request: dict[str, Any]) -> int:
    result_path = request["result_path"]
    try:
        result = handler(request.get("event"), request.get("context"))
        json.dumps(result)  # SCF refuses a return value it cannot serialise; so do we, here
    except BaseException as e:  # noqa: BLE001  (SystemExit and KeyboardInterrupt are failures too)
        _error(result_path, e)
        return 1
    _write(result_path, {"result": result})
    return 0


def main() -> int:
    os.environ["HOME"] = UNWRITABLE_HOME
    request = json.loads(sys.stdin.buffer.read() or b"{}")
    try:
        handler = _load(str(request["code_root"]), request.get("handler"))
    except BaseException as e:  # noqa: BLE001
        _error(request["result_path"], e)
        return 1
    return _call(handler, request)


# --- a warm instance ------------------------------------------------------------------------------


def project_files(code_root: str) -> dict[str, int]:
    """The loaded modules' files from the repository or the code root (not the installed packages),
    with their mtimes in ns: a change to any of them is a code change for the pool."""
    out: dict[str, int] = {}
    roots = (str(REPO_ROOT) + os.sep, os.path.abspath(code_root) + os.sep)
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or "site-packages" in path or not path.startswith(roots):
            continue
        with contextlib.suppress(OSError):
            out[path] = os.stat(path).st_mtime_ns
    return out


@contextlib.contextmanager
def _output_to(log_path: str) -> Iterator[None]:
    """stdout and stderr (the file descriptors, so that native code's output follows) appended to
    the run's log for the length of one call."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _say(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def warm(reply_fd: int) -> int:
    os.set_inheritable(reply_fd, False)  # the handler's own children must not hold the pipe open
    os.environ["HOME"] = UNWRITABLE_HOME
    handler: Handler | None = None
    failure: BaseException | None = None
    try:
        handler = _load(os.environ[WARM_CODE_ROOT], os.environ.get(WARM_HANDLER))
    except BaseException as e:  # noqa: BLE001  (reported to the first call, as SCF reports an init error)
        failure = e
    _say(reply_fd, {"ready": True, "pid": os.getpid(), "files": project_files(os.environ[WARM_CODE_ROOT])})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        with _output_to(request["log_path"]):
            if handler is None:
                assert failure is not None
                try:
                    raise failure
                except BaseException as e:  # noqa: BLE001
                    _error(request["result_path"], e)
                rc = 1
            else:
                rc = _call(handler, request)
        _say(reply_fd, {"done": True, "rc": rc})
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--warm"] and len(sys.argv) == 3:
        sys.exit(warm(int(sys.argv[2])))
    sys.exit(main())
