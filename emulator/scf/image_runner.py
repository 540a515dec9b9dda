"""One function run through the image's entry server, as SCF runs an image function:
`python -m emulator.scf.image_runner` (the runner `up --runtime image` gives its functions).

Reads the same request as emulator.scf.runner on stdin ({"event", "context", "code_root",
"result_path"}), where `code_root` is the image's code tree (build/image/app/code, from
`./dev package --image`). Starts `server.py` there in a bare interpreter (`python -I -S -u`, as the
image's command), waits for it to answer on its port (SCF allows 30 s), POSTs the event to
/event-invoke with the context and the execution role's keys in X-Scf-* headers (the role's keys are
taken out of the server's environment: an image gets them per invocation), and writes
{"result": ...} (a 200) or {"error": ...} (SCF's error shape) to `result_path`. SIGTERM is passed to
the server, which passes it to the running handler. The server's output is the run's log.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .runner import _write

START_LIMIT_S = 30.0  # SCF: "It should be started within 30 seconds"
# The role's keys the runner's environment holds -> the headers SCF sends them in.
ROLE_HEADERS = {"TENCENTCLOUD_SECRETID": "X-Scf-Secret-Id", "TENCENTCLOUD_SECRETKEY": "X-Scf-Secret-Key",
                "TENCENTCLOUD_SESSIONTOKEN": "X-Scf-Session-Token"}
CONTEXT_HEADERS = {"request_id": "X-Scf-Request-Id", "time_limit_in_ms": "X-Scf-Timeout",
                   "memory_limit_in_mb": "X-Scf-Memory", "function_name": "X-Scf-Name",
                   "namespace": "X-Scf-Namespace", "function_version": "X-Scf-Version",
                   "tencentcloud_region": "X-Scf-Region", "tencentcloud_appid": "X-Scf-Appid",
                   "tencentcloud_uin": "X-Scf-Uin"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, server: subprocess.Popen[bytes]) -> str | None:
    """None once GET / answers 200; else why not."""
    deadline = time.monotonic() + START_LIMIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return f"the entry server exited with code {server.returncode} before listening"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return None
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.02)
    return f"The request timed out in {START_LIMIT_S * 1000:.0f}ms. The entry server did not listen on port {port}"


def headers_for(context: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Scf-Trigger-Src": "emulator"}
    headers.update({h: str(context[k]) for k, h in CONTEXT_HEADERS.items() if context.get(k) not in (None, "")})
    headers.update({h: env[k] for k, h in ROLE_HEADERS.items() if env.get(k)})
    return headers


def main() -> int:
    request = json.loads(sys.stdin.buffer.read() or b"{}")
    result_path = request["result_path"]
    server_py = Path(request["code_root"]) / "server.py"
    if not server_py.is_file():
        _write(result_path, {"error": {"errorType": "ImageNotBuilt", "errorMessage":
                                       f"{server_py} is missing: build the image tree with ./dev package --image"}})
        return 1
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ROLE_HEADERS}
    env["ENTRY_LISTEN"] = f"127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-I", "-S", "-u", str(server_py)], cwd=str(server_py.parent), env=env)
    signal.signal(signal.SIGTERM, lambda *_: server.send_signal(signal.SIGTERM))
    try:
        problem = _wait_listening(port, server)
        if problem:
            _write(result_path, {"error": {"errorType": "InitTimeout", "errorMessage": problem}})
            return 1
        body = json.dumps(request.get("event"), ensure_ascii=False).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port)  # no timeout: the function's limit ends it
        try:
            conn.request("POST", "/event-invoke", body=body,
                         headers=headers_for(request.get("context") or {}, dict(os.environ)))
            response = conn.getresponse()
            status, raw = response.status, response.read()
        except (OSError, http.client.HTTPException) as e:
            _write(result_path, {"error": {"errorType": "ProcessExit",
                                           "errorMessage": f"the entry server did not answer: {type(e).__name__}: {e}"}})
            return 1
        finally:
            conn.close()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {"errorType": "InvalidResponse", "errorMessage": raw[:2000].decode("utf-8", "replace")}
        if status == 200:
            _write(result_path, {"result": answer})
            return 0
        _write(result_path, {"error": answer if isinstance(answer, dict) else {"errorType": "Error",
                                                                               "errorMessage": str(answer)}})
        return 1
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    sys.exit(main())
