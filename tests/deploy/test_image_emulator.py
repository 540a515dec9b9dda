"""The local cloud with `--runtime image`: every run goes through the image's entry server, the way SCF
runs the deployed functions; a gateway call, its status and a graceful TerminateAsyncEvent."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from emulator.clients import scf_client
from emulator.cloud import CloudConfig, LocalCloud
from emulator.media import make_clip

REPO = Path(__file__).resolve().parents[2]


def _status(client, reqid: str):
    from tencentcloud.scf.v20180416 import models

    req = models.GetAsyncEventStatusRequest()
    req.InvokeRequestId = reqid
    return client.GetAsyncEventStatus(req).Result


def test_a_gateway_push_runs_through_the_entry_server_and_stops_gracefully(image_context, tmp_path):
    from tencentcloud.scf.v20180416 import models

    from emulator.trtc import usersig

    clip = make_clip(tmp_path / "clip.mp4", duration=10.0, width=160, height=120, fps=25)
    config = CloudConfig(state_dir=tmp_path / "state", runtime="image",
                         image_dir=Path(image_context.directory), shutdown_grace_s=5.0)
    with LocalCloud(config) as cloud:
        info = cloud.info()
        assert info["runtime"] == "image"
        body = {"videoSrc": str(clip), "sdkAppId": info["sdkAppId"], "roomId": 4_300_001, "userId": "pusher",
                "userSig": usersig("pusher"), "redis": True, "redisHost": info["redis"]["host"],
                "redisPort": info["redis"]["port"]}
        answer = requests.post(f"{info['gateway']}/push_stream", json=body, timeout=10)
        assert answer.status_code == 200 and answer.text == "Async run task submitted"
        reqid = answer.headers["x-scf-reqid"]
        log = Path(info["runsDir"]) / reqid / "log"
        deadline = time.monotonic() + 60
        while '"entered the room"' not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"the push never entered the room:\n{log.read_text()[-3000:]}"
            assert _status(scf_client(info), reqid).Status == "RUNNING", log.read_text()[-3000:]
            time.sleep(0.1)
        client = scf_client(info)
        req = models.TerminateAsyncEventRequest()
        req.FunctionName, req.InvokeRequestId, req.GraceShutdown = "push_stream", reqid, True
        client.TerminateAsyncEvent(req)
        deadline = time.monotonic() + 20
        while (status := _status(client, reqid)).Status == "RUNNING":
            assert time.monotonic() < deadline, "the run did not end after TerminateAsyncEvent"
            time.sleep(0.1)
        assert (status.Status, status.StatusCode) == ("ABORTED", 200)
        run = json.loads((Path(info["runsDir"]) / reqid / "run.json").read_text())
        assert run["result"]["statusCode"] == 200  # an API Gateway response: the event came from the gateway
        result = json.loads(run["result"]["body"])
        assert (result["status"], result["reason"], result["checkpoint"]) == ("terminated", "terminated", "saved")
        assert result["requestId"] == reqid  # the context reached the handler through X-Scf-Request-Id
        text = log.read_text()
        assert '"msg": "listening"' in text and "passed to the running invocation" in text


def test_without_the_image_tree_the_cloud_says_how_to_build_it(tmp_path):
    config = CloudConfig(state_dir=tmp_path / "state", runtime="image", image_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"server\.py is missing\): build it with ./dev package --image"):
        LocalCloud(config).start()
    proc = subprocess.run([sys.executable, "-m", "emulator", "up", "--runtime", "image", "--image-dir",
                           str(tmp_path / "nowhere"), "--state-dir", str(tmp_path / "cli")],
                          capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert proc.returncode == 1
    assert "the local cloud did not start" in proc.stderr and "./dev package --image" in proc.stderr
    assert "Traceback" not in proc.stderr
