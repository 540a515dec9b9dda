"""One function run, as SCF's Python runtime does it: `python -m emulator.scf.runner`.

Reads {"event", "context", "handler", "code_root", "result_path"} as JSON on stdin, imports the
handler's module from the code root, calls `handler(event, context)` and writes
{"result": <return value>} or {"error": {"errorType", "errorMessage", "stackTrace"}} to
`result_path`. Exit code 0 when the handler returned, 1 when it raised. Whatever the handler prints
goes to stdout/stderr, which the emulator keeps as the run's log.

On SCF every directory but /tmp is read-only (a mounted CFS aside), so the handler runs with HOME
where nothing can be created: a library that writes under ~ by default (liteav's log goes to
~/.cache/<app>/liteav/log unless told otherwise) fails here as it would there.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import traceback
from pathlib import Path
from typing import Any


def _write(path: str, outcome: dict[str, Any]) -> None:
    outcome["maxRssKb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(outcome, ensure_ascii=False), "utf-8")
    tmp.replace(path)


# A path under a character device: no one, root included, can create anything below it.
UNWRITABLE_HOME = "/dev/null/scf-home"


def main() -> int:
    os.environ["HOME"] = UNWRITABLE_HOME
    request = json.loads(sys.stdin.buffer.read() or b"{}")
    result_path = request["result_path"]
    module_name, _, func_name = str(request.get("handler") or "index.main_handler").rpartition(".")
    code_root = str(request["code_root"])
    sys.path.insert(0, code_root)
    os.chdir(code_root)
    try:
        module = importlib.import_module(module_name or "index")
        handler = getattr(module, func_name)
        result = handler(request.get("event"), request.get("context"))
        json.dumps(result)  # SCF refuses a return value it cannot serialise; so do we, here
    except BaseException as e:  # noqa: BLE001  (SystemExit and KeyboardInterrupt are failures too)
        trace = traceback.format_exc()
        sys.stderr.write(trace)
        sys.stderr.flush()
        _write(result_path, {"error": {"errorType": type(e).__name__, "errorMessage": str(e) or type(e).__name__,
                                       "stackTrace": trace}})
        return 1
    _write(result_path, {"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
