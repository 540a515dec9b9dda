"""`python -m emulator up` and `usersig` as a person runs them: the JSON line first, the services
usable, and nothing left running after SIGTERM."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import requests

from emulator.trtc import signature as usersig

from .conftest import PROBE_ROOT, alive, until

REPO = Path(__file__).resolve().parents[2]


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        proc.kill()
        raise AssertionError(f"`up` printed nothing on stdout within {timeout} s")
    return box[0]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_prints_the_json_line_first_and_leaves_nothing_behind_after_sigterm(tmp_path: Path):
    functions = tmp_path / "functions"
    functions.mkdir()
    (functions / "push_stream").symlink_to(PROBE_ROOT, target_is_directory=True)
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "up", "--state-dir", str(state),
                             "--functions-dir", str(functions)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(_first_line(proc, 30))
        for key in ("gateway", "cloudApiEndpoint", "secretId", "secretKey", "sdkAppId", "sdkSecretKey", "cos",
                    "redis", "roomAddress", "console"):
            assert key in info, key
        assert info["sdkAppId"] == 1400000001
        assert set(info["cos"]) >= {"ip", "port", "region", "bucket"}
        assert info["redis"]["password"] is None
        assert json.loads((state / "cloud.json").read_text())["gateway"] == info["gateway"]

        # A second `up` on the same state directory is refused, not started beside it.
        again = subprocess.run([sys.executable, "-m", "emulator", "up", "--state-dir", str(state)], cwd=REPO,
                               capture_output=True, text=True, timeout=30)
        assert again.returncode == 2 and "already running" in again.stderr

        # A function run in flight (with a child process of its own) when the cloud is stopped.
        out = tmp_path / "seen.json"
        r = requests.post(f"{info['gateway']}/push_stream",
                          json={"mode": "sleep", "seconds": 60, "out": str(out), "child": True}, timeout=5)
        assert r.status_code == 200
        until(out.exists, 15, "the function to start")
        seen = json.loads(out.read_text())
        ports = [info["cos"]["port"], info["redis"]["port"], int(info["cloudApiEndpoint"].rsplit(":", 1)[1]),
                 int(info["gateway"].rsplit(":", 1)[1]), int(info["roomAddress"].rsplit(":", 1)[1]),
                 int(info["console"].rstrip("/").rsplit(":", 1)[1])]
        assert all(_listening(p) for p in ports)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not alive(seen["pid"]) and not alive(seen["child"])
    assert not any(_listening(p) for p in ports)
    assert not (state / "cloud.json").exists()
    # The run was stopped as the emulator went down, and its record says so.
    run = json.loads((state / "runs" / r.headers["x-scf-reqid"] / "run.json").read_text())
    assert run["status"] == "ABORTED"
    assert (state / "redis").is_dir()


def test_usersig_prints_a_usersig_the_emulator_rooms_accept():
    out = subprocess.run([sys.executable, "-m", "emulator", "usersig", "alice"], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    info = usersig.verify(out.stdout.strip(), 1400000001, "emulator-sdk-secret-key-0123456789abcdef", "alice")
    assert info.user_id == "alice"
    bad = subprocess.run([sys.executable, "-m", "emulator", "usersig", "x" * 40], cwd=REPO, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "1..32 bytes" in bad.stderr
