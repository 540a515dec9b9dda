"""The image's entry server run as SCF runs it: `python -I -S -u app/code/server.py` from the very tree
the Dockerfile copies, in an environment holding nothing but what the function is given, and called
over HTTP the way SCF calls it (POST /event-invoke, the context in X-Scf-* headers)."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from deploy.image import build as image_build


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scf_headers(request_id: str | None = None, timeout_ms: int = 120_000, memory_mb: int = 1024,
                name: str = "fn", role: tuple[str, str, str] | None = None) -> dict[str, str]:
    """The headers SCF sends with an invocation (X-Scf-Timeout in ms, X-Scf-Memory in MB)."""
    headers = {"Content-Type": "application/json", "X-Scf-Request-Id": request_id or str(uuid.uuid4()),
               "X-Scf-Timeout": str(timeout_ms), "X-Scf-Memory": str(memory_mb), "X-Scf-Name": name,
               "X-Scf-Namespace": "default", "X-Scf-Version": "$LATEST", "X-Scf-Region": "ap-guangzhou",
               "X-Scf-Appid": "1250000000", "X-Scf-Uin": "100000000001", "X-Scf-Trigger-Src": "timer"}
    if role:
        headers.update(zip(("X-Scf-Secret-Id", "X-Scf-Secret-Key", "X-Scf-Session-Token"), role))
    return headers


class EntryServer:
    def __init__(self, code: Path, function: str, env: dict[str, str], logs: Path):
        self.port = free_port()
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        home = logs / "home"
        home.mkdir(exist_ok=True)
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "ENTRY_FUNCTION": function,
                 "ENTRY_LISTEN": f"127.0.0.1:{self.port}", **env}
        stem = f"{function}-{self.port}"
        self.out_path, self.log_path = logs / f"{stem}.out", logs / f"{stem}.log"
        self.started = time.monotonic()
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, *image_build.COMMAND[1:-1], str(code / "server.py")],
                                         cwd="/", env=clean, stdout=out, stderr=err)
        self.listening_after = self._wait_listening(30.0)

    def _wait_listening(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the entry server exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                status, _ = self.request("GET", "/", timeout=1)
                if status == 200:
                    return time.monotonic() - self.started
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"the entry server did not listen within {timeout} s:\n{self.log()[-3000:]}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 120.0) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")

    def invoke(self, event: Any, headers: dict[str, str] | None = None, timeout: float = 120.0) -> tuple[int, Any]:
        """POST /event-invoke as SCF does."""
        return self.request("POST", "/event-invoke", json.dumps(event).encode(), headers or scf_headers(),
                            timeout=timeout)

    def log(self) -> str:
        return (Path(self.log_path).read_text("utf-8", errors="replace")
                + Path(self.out_path).read_text("utf-8", errors="replace"))

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
