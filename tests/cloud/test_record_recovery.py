"""A recording run that dies is finished by record_stream's timer (serverless.yml's trigger, run by
the local cloud every 2 s here instead of every minute): a kill -9 at a random moment, and a hard
TerminateAsyncEvent through the real ScfClient. The callback comes with Reason "recovered", every
anchor's file is in COS and plays, and at most SegmentDuration + 2 s of it is lost."""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import av
import pytest
import requests
from tencentcloud.scf.v20180416 import models as scf_models

from emulator.cloud import CloudConfig, LocalCloud
from emulator.media import h264_units
from shared.cos.urls import parse_cos_url
from tests.record.conftest import FPS, Anchor, probe

from .conftest import scf_client, until

SEGMENT_S = 2
LOSS_S = SEGMENT_S + 2  # what a dead run may lose of each anchor
RECOVERY_DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    c = LocalCloud(CloudConfig(state_dir=tmp_path_factory.mktemp("recovery") / "state", shutdown_grace_s=2.0,
                               bucket="recovertest-1250000000", timer_tick_s=2.0)).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def units() -> list:
    return h264_units(12 * FPS)


_rooms = iter(range(830001, 830100))


def _start(cloud: LocalCloud, callback_url: str, **extra) -> tuple[str, int]:
    info = cloud.info()
    room = next(_rooms)
    body = {"SdkAppId": info["sdkAppId"], "RoomId": room, "UserId": "recorder",
            "UserSig": cloud.rooms.usersig("recorder"),
            "CosConfig": {"Region": info["cos"]["region"], "Bucket": info["cos"]["bucket"], "Path": "/rec"},
            "Callback": callback_url, "SegmentDuration": SEGMENT_S, **extra}
    answer = requests.post(f"{info['gateway']}/record_stream", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    until(lambda: "recorder" in cloud.rooms.rooms.user_ids(info["sdkAppId"], room), 20, "the recorder in the room")
    return answer.headers["x-scf-reqid"], room


def _fetch(cloud: LocalCloud, url: str, into: Path) -> Path:
    _, _, key = parse_cos_url(url)
    into.write_bytes(cloud.cos.get_object_bytes(key))
    return into


def _two_more_sweeps(cloud: LocalCloud) -> None:
    """Wait until two more timer runs of record_stream (each a sweep) have ended."""
    assert cloud.timers is not None
    timers = cloud.timers
    seen = len(timers.fired)

    def ended() -> bool:
        later = timers.fired[seen:]
        return len(later) >= 2 and all(cloud.scf.get(rid).ended_at is not None for _, rid in later[:2])

    until(ended, timeout=30.0, what="two more timer sweeps")


def _state_left(cloud: LocalCloud, request_id: str) -> list[str]:
    return [k for k in cloud.cos.list_keys(".recording/") if request_id in k]


def test_a_run_killed_at_a_random_moment_is_recovered(cloud, callback_receiver, units, tmp_path):
    seed = random.randrange(1 << 30)
    moment = random.Random(seed).uniform(3.5, 7.0)
    request_id, room = _start(cloud, callback_receiver.url, Mode="02")
    anchors = [Anchor(cloud.rooms, room, user).publish(10.0, units=units) for user in ("alice", "bob")]
    started = time.monotonic()
    time.sleep(moment)  # the stimulus: the run is killed at a random moment of the recording
    pid = cloud.scf.get(request_id).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    recorded_s = killed - started

    [post] = callback_receiver.wait_for(1, timeout=RECOVERY_DEADLINE_S)
    took = time.monotonic() - killed
    print(f"killed at {moment:.1f} s (seed {seed}); the recovered callback came {took:.1f} s later")
    for a in anchors:
        a.wait()
        a.leave()
    body = post.json
    assert body["Reason"] == "recovered" and body["RequestId"] == request_id, (seed, body)
    assert cloud.scf.get(request_id).status.value == "FAILED"
    assert took < 30.0  # SCF said the run was gone (GetAsyncEventStatus), not its 45 s heartbeat
    assert sorted(e["UserId"] for e in body["Files"]) == ["alice", "bob"], body  # no anchor missing
    for entry in body["Files"]:
        assert entry["Status"] == 1 and entry["RecordFile"].endswith(".mp4"), (seed, entry)
        found = probe(_fetch(cloud, entry["RecordFile"], tmp_path / f"{entry['UserId']}.mp4"))
        assert sorted(found.codecs) == ["aac", "h264"]
        assert recorded_s - LOSS_S <= found.video_s <= recorded_s + 0.5, (seed, moment, found)
        assert recorded_s - LOSS_S <= found.audio_s <= recorded_s + 0.5, (seed, moment, found)
    assert _state_left(cloud, request_id) == [f".recording/{request_id}.reported",
                                              f".recording/{request_id}.result.json"]
    _two_more_sweeps(cloud)
    assert len(callback_receiver.received) == 1  # reported once


def test_a_hard_terminate_through_scf_is_recovered_with_both_outputs(cloud, callback_receiver, tmp_path):
    info = cloud.info()
    request_id, room = _start(cloud, callback_receiver.url, Mode="00", OutputFormat="hls+mp4")
    anchor = Anchor(cloud.rooms, room, "alice").publish(8.0)
    started = time.monotonic()
    time.sleep(5.0)  # the stimulus: 5 s of recording before the hard terminate
    req = scf_models.TerminateAsyncEventRequest()
    req.FunctionName, req.InvokeRequestId, req.GraceShutdown = "record_stream", request_id, False
    scf_client(info["cloudApiEndpoint"], info["secretId"], info["secretKey"]).TerminateAsyncEvent(req)
    recorded_s = time.monotonic() - started

    [post] = callback_receiver.wait_for(1, timeout=RECOVERY_DEADLINE_S)
    anchor.wait()
    anchor.leave()
    body = post.json
    assert body["Reason"] == "recovered", body
    status = scf_models.GetAsyncEventStatusRequest()
    status.InvokeRequestId = request_id
    assert scf_client(info["cloudApiEndpoint"], info["secretId"],
                      info["secretKey"]).GetAsyncEventStatus(status).Result.Status == "ABORTED"
    playlist, final = body["Files"]
    assert (playlist["UserId"], final["UserId"]) == ("alice", "alice")
    assert playlist["Status"] == final["Status"] == 1, body
    assert playlist["RecordFile"].endswith(".m3u8") and final["RecordFile"].endswith(".mp3")
    found = probe(_fetch(cloud, final["RecordFile"], tmp_path / "alice.mp3"))
    assert recorded_s - LOSS_S <= found.audio_s <= recorded_s + 0.5, found

    # The playlist, with its segments beside it as in COS, plays to its end.
    _, _, key = parse_cos_url(playlist["RecordFile"])
    folder = key.rsplit("/", 1)[0] + "/"
    for k in cloud.cos.list_keys(folder):
        target = tmp_path / "hls" / k[len(folder):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(cloud.cos.get_object_bytes(k))
    text = (tmp_path / "hls" / key[len(folder):]).read_text()
    assert text.endswith("#EXT-X-ENDLIST\n")
    with av.open(str(tmp_path / "hls" / key[len(folder):])) as c:
        played = sum(f.samples for f in c.decode(audio=0)) / 48000
    assert abs(played - found.audio_s) <= 0.1, (played, found)
