"""The command-line tools people type, unchanged, against `python -m emulator up`: the real `tccli`
(TerminateAsyncEvent, RemoveUser, Invoke, InvokeFunction) through a profile whose endpoints are the
JSON line's `cloudApiUrl`, and the real `coscmd` (list, download) through the JSON line's
`cos.proxy`, configured as the README says."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from emulator import media
from emulator.callbacks import CallbackReceiver
from emulator.trtc import usersig

from .conftest import until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the tools are installed beside the interpreter (requirements-dev.txt)
TCCLI, COSCMD = str(BIN / "tccli"), str(BIN / "coscmd")
PROFILE = "emulator"


@contextlib.contextmanager
def emulator_up(state: Path, *options: str) -> Iterator[dict[str, Any]]:
    """`python -m emulator up` as a person runs it, in a process of its own: its JSON line, then SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "up", "--state-dir", str(state), *options], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(60)
    try:
        assert box and box[0].startswith("{"), "`up` printed no JSON line within 60 s"
        yield json.loads(box[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with emulator_up(tmp_path_factory.mktemp("cli") / "state") as info:
        yield info


@pytest.fixture(scope="module")
def home(up: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME of its own, configured with the README's commands (tccli profile, coscmd config)."""
    home = tmp_path_factory.mktemp("home")
    run(home, TCCLI, "configure", "set", "secretId", up["secretId"], "secretKey", up["secretKey"],
        "region", up["cos"]["region"], "--profile", PROFILE)
    run(home, TCCLI, "configure", "set", "scf.endpoint", up["cloudApiUrl"], "trtc.endpoint", up["cloudApiUrl"],
        "--profile", PROFILE)
    run(home, COSCMD, "config", "-a", up["secretId"], "-s", up["secretKey"], "-b", up["cos"]["bucket"],
        "-e", f"{up['cos']['ip']}:{up['cos']['port']}", "--do-not-use-ssl")
    return home


def run(home: Path, *argv: str, proxy: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
    env["HOME"] = str(home)
    if proxy:
        env["HTTP_PROXY"] = proxy
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def tccli(home: Path, *argv: str) -> dict[str, Any]:
    return json.loads(run(home, TCCLI, *argv, "--profile", PROFILE).stdout)


def start(up: dict[str, Any], function: str, body: dict[str, Any]) -> str:
    answer = requests.post(f"{up['gateway']}/{function}", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.headers["x-scf-reqid"]


def log_has(up: dict[str, Any], reqid: str, message: str) -> bool:
    text = requests.get(f"{up['gateway']}/_runs/{reqid}/log", timeout=10).text
    return any(json.loads(line).get("msg") == message for line in text.splitlines() if line.startswith("{"))


def ended(up: dict[str, Any], reqid: str) -> dict[str, Any] | None:
    run_ = requests.get(f"{up['gateway']}/_runs/{reqid}", timeout=10).json()
    return None if run_["status"] == "RUNNING" else run_


@pytest.fixture(scope="module")
def clip(up: dict[str, Any]) -> Path:
    """A 30 s clip where push_stream may read it (the state directory's media/)."""
    return media.make_clip(Path(up["stateDir"]) / "media" / "cli.mp4", duration=30.0, width=160, height=120)


def push_body(up: dict[str, Any], clip: Path, room: int, user: str = "pusher") -> dict[str, Any]:
    return {"videoSrc": str(clip), "sdkAppId": up["sdkAppId"], "roomId": room, "userId": user,
            "userSig": usersig(user, up["sdkAppId"], up["sdkSecretKey"])}


def test_tccli_terminate_async_event_stops_a_running_push(up, home, clip):
    reqid = start(up, "push_stream", push_body(up, clip, 610001))
    until(lambda: log_has(up, reqid, "progress"), 30, "the push to send frames")

    tccli(home, "scf", "TerminateAsyncEvent", "--FunctionName", "push_stream", "--InvokeRequestId", reqid,
          "--GraceShutdown", "True")

    done = until(lambda: ended(up, reqid), 20, "the push to end")
    assert done["status"] == "ABORTED"
    assert json.loads(done["result"]["body"])["status"] == "terminated"
    shown = tccli(home, "scf", "GetAsyncEventStatus", "--InvokeRequestId", reqid)
    assert shown["Result"]["Status"] == "ABORTED"


def test_tccli_remove_user_ends_a_recording_and_coscmd_lists_and_downloads_it(up, home, clip, tmp_path):
    room = 610002
    receiver = CallbackReceiver().start()
    try:
        pusher = start(up, "push_stream", push_body(up, clip, room))
        recorder = start(up, "record_stream", {
            "SdkAppId": up["sdkAppId"], "RoomId": room, "UserId": "recorder",
            "UserSig": usersig("recorder", up["sdkAppId"], up["sdkSecretKey"]), "Mode": "02",
            "CosConfig": {"Region": up["cos"]["region"], "Bucket": up["cos"]["bucket"], "Path": "cli/"},
            "Callback": receiver.url})
        until(lambda: log_has(up, recorder, "recording anchor"), 30, "the recorder to record the pusher")
        time.sleep(4.0)  # the stimulus: a few seconds of media recorded (its segments may already be in COS)

        tccli(home, "trtc", "RemoveUser", "--SdkAppId", str(up["sdkAppId"]), "--RoomId", str(room),
              "--UserIds", '["recorder"]')

        body = receiver.wait_for(1, timeout=60)[0].json
    finally:
        receiver.stop()
    assert body["Reason"] == "removed", body
    [entry] = body["Files"]
    assert entry["Status"] == 1 and entry["UserId"] == "pusher", body
    key = entry["RecordFile"].split(".myqcloud.com/", 1)[1]
    # The pusher is not what this test is about: stop it if it still runs (a loaded machine may have let it end).
    run(home, TCCLI, "scf", "TerminateAsyncEvent", "--FunctionName", "push_stream", "--InvokeRequestId", pusher,
        "--profile", PROFILE, check=False)

    proxy = up["cos"]["proxy"]
    listed = run(home, COSCMD, "list", "-r", "cli/", proxy=proxy).stdout
    assert key in listed, listed
    local = tmp_path / "recording.mp4"
    run(home, COSCMD, "download", key, str(local), proxy=proxy)
    found = media.probe(local)
    assert sorted(found.codecs) == ["aac", "h264"] and found.duration > 1.0, found

    # Another bucket through the same endpoint is not this one: coscmd says so and fails.
    other = run(home, COSCMD, "-b", "other-1250000000", "list", proxy=proxy, check=False)
    assert other.returncode != 0 and "NoSuchBucket" in other.stdout + other.stderr


def test_tccli_invoke_and_invoke_function_answer_with_the_function_s_result(up, home):
    bad = json.dumps({"action": "dance", "requestId": "x"})
    invoked = tccli(home, "scf", "Invoke", "--FunctionName", "push_control", "--InvocationType", "RequestResponse",
                    "--ClientContext", bad)
    function = tccli(home, "scf", "InvokeFunction", "--FunctionName", "push_control", "--Event", bad)
    for result in (invoked["Result"], function["Result"]):
        assert result["FunctionRequestId"], result
        answer = json.loads(result["RetMsg"])  # the function's own answer, naming the bad field
        assert answer["reason"] == "invalid_parameters" and "action" in answer["message"], answer
