"""A run that dies without finishing is finished from what reached COS, reported once, with no
secret left behind (the local COS endpoint, the real SDK, a real callback receiver)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from emulator.media import h264_units, probe
from shared.contracts.record import RecordParams
from shared.cos.errors import AlreadyExists
from shared.record.recovery import RECOVERED_NOTE, recover, sweep
from shared.record.segments import Segmenter
from shared.record.state import FileRecord, Manifest, ManifestStore, RunState
from shared.record.uploader import FileOutput, SegmentUploader
from shared.rules.record import OutputKeys

from .segmented import FPS, feed

ROLE = ("AKIDexecutionRole0000000000000000", "executionRoleSecretKey0123456789", "role-session-token")
USER_SECRET_KEY = "userCosSecretKeyNeverStored01234"


@pytest.fixture
def role(cos_env, monkeypatch):
    """The execution role's temporary credentials, as SCF puts them in the environment."""
    cos_env.add_temporary_credentials(*ROLE)
    for name, value in zip(("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN"), ROLE):
        monkeypatch.setenv(name, value)
    return ROLE


def _params(cos_env, prefix: str, callback: str) -> RecordParams:
    return RecordParams.model_validate({
        "SdkAppId": 1400000001, "RoomId": 4242, "UserId": "recorder", "UserSig": "sig-secret-value",
        "CosConfig": {"SecretId": "AKIDuserKeyId", "SecretKey": USER_SECRET_KEY, "Region": cos_env.region,
                      "Bucket": cos_env.bucket, "Path": f"/{prefix}rec"},
        "Callback": callback, "Mode": "02"})


def _dying_run(tmp_path, bucket, prefix, params, request_id: str, seconds: float = 7.0, upload: bool = True):
    """A run that records `seconds` of Mode 02 with 2 s segments and then dies: the open segment
    is never closed, nothing is finalised, no callback sent."""
    store = ManifestStore(bucket, f"{prefix}state/")
    state = RunState(store, Manifest.for_run(params, request_id, "mp4", 2.0)).start()
    keys = OutputKeys(f"{prefix}rec/1400000001_4242_alice_20260101T000000000Z.mp4")
    local = tmp_path / "run" / "alice"
    state.add_file(FileRecord("alice", 1, 1767225600.0, keys.final, local_dir=str(local)))
    uploader = SegmentUploader(bucket)
    out = FileOutput(uploader, keys, "mp4", segment_s=2)
    seg = Segmenter(local, "02", video_size=(160, 120), segment_s=2,
                    on_segment=out.on_segment if upload else None)
    feed(seg, seconds, h264_units(int(seconds * FPS), gop=FPS))
    uploader.close(time.monotonic() + 20)  # what reached COS before the end
    state.stop()  # the heartbeat stops with the run
    return store, state, keys


def test_a_dead_run_is_assembled_and_reported_as_recovered(tmp_path, bucket, prefix, cos_env, role,
                                                           callback_receiver):
    params = _params(cos_env, prefix, callback_receiver.url)
    store, state, keys = _dying_run(tmp_path, bucket, prefix, params, "req-dead-1")
    assert sweep(store) == []  # the heartbeat is fresh: not dead yet
    [result] = sweep(store, now=time.time() + 120)

    [post] = callback_receiver.wait_for(1, timeout=10)
    assert post.json == result and result["Reason"] == "recovered"
    assert (result["SdkAppId"], result["RoomId"], result["UserId"]) == (1400000001, 4242, "recorder")
    [entry] = result["Files"]
    assert entry["Status"] == 1 and entry["UserId"] == "alice" and RECOVERED_NOTE in entry["Message"]
    assert entry["RecordFile"].endswith(keys.final)
    final = tmp_path / "final.mp4"
    final.write_bytes(cos_env.get_object_bytes(keys.final))
    found = probe(final)
    assert found.video_frames >= (7 - (2 + 2)) * FPS  # at most SegmentDuration + 2 s lost
    assert found.first_key is True
    assert cos_env.list_keys(keys.segment_prefix) == []  # "mp4": the segments are removed
    assert cos_env.list_keys(f"{prefix}state/") == [f"{prefix}state/req-dead-1.reported",
                                                    f"{prefix}state/req-dead-1.result.json"]
    assert json.loads(cos_env.get_object_bytes(f"{prefix}state/req-dead-1.result.json")) == result
    assert sweep(store, now=time.time() + 120) == []  # reported once


def test_the_state_holds_no_secret(tmp_path, bucket, prefix, cos_env, role, callback_receiver):
    params = _params(cos_env, prefix, callback_receiver.url)
    store, state, keys = _dying_run(tmp_path, bucket, prefix, params, "req-secret", seconds=3)
    [key] = cos_env.list_keys(f"{prefix}state/")
    raw = cos_env.get_object_bytes(key)
    for secret in (USER_SECRET_KEY, "AKIDuserKeyId", "sig-secret-value", ROLE[1], ROLE[2]):
        assert secret.encode() not in raw
    assert Manifest.from_json(raw).credentials == "parameters"


def test_racing_finishers_report_once(tmp_path, bucket, prefix, cos_env, role, callback_receiver):
    params = _params(cos_env, prefix, callback_receiver.url)
    store, state, keys = _dying_run(tmp_path, bucket, prefix, params, "req-race", seconds=5)
    manifest = store.load("req-race")
    results: list = []
    threads = [threading.Thread(target=lambda n=n: results.append(recover(store, manifest, owner=f"r{n}")))
               for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)  # each finisher returned: any POST it made is done
    assert sum(1 for r in results if r is not None) == 1
    assert callback_receiver.attempts == 1 and len(callback_receiver.received) == 1
    # The original run comes back to finish: it may not, and it does not report.
    assert state.claim() is False
    assert state.report(lambda: pytest.fail("the original run must not send a second callback")) is False


def test_a_live_run_that_claimed_keeps_recovery_out(tmp_path, bucket, prefix, cos_env, role, callback_receiver):
    params = _params(cos_env, prefix, callback_receiver.url)
    store, state, keys = _dying_run(tmp_path, bucket, prefix, params, "req-live", seconds=3)
    assert state.claim() is True  # the run is finishing (it will report itself)
    assert recover(store, store.load("req-live"), owner="late-recovery") is None
    sent = []
    assert state.report(lambda: sent.append(1) or True) is True and sent == [1]
    assert recover(store, Manifest.for_run(params, "req-live", "mp4", 2.0)) is None  # already reported


def test_segments_left_on_cfs_are_used(tmp_path, bucket, prefix, cos_env, role, callback_receiver):
    """COS was unreachable the whole time: every segment is still in the run's CFS folder."""
    params = _params(cos_env, prefix, callback_receiver.url)
    store, state, keys = _dying_run(tmp_path, bucket, prefix, params, "req-cfs", seconds=5, upload=False)
    assert cos_env.list_keys(keys.segment_prefix) == []
    [result] = sweep(store, now=time.time() + 120)
    assert result["Files"][0]["Status"] == 1
    final = tmp_path / "final.mp4"
    final.write_bytes(cos_env.get_object_bytes(keys.final))
    assert probe(final).video_frames >= 4 * FPS


def test_a_bucket_the_role_cannot_use_is_reported_with_the_reason(tmp_path, bucket, prefix, cos_env,
                                                                  monkeypatch, callback_receiver):
    params = _params(cos_env, prefix, callback_receiver.url)
    store, state, keys = _dying_run(tmp_path, bucket, prefix, params, "req-denied", seconds=3)
    monkeypatch.setenv("TENCENTCLOUD_SECRETID", "AKIDroleCosDoesNotKnow000000000")
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", "roleKeyCosDoesNotKnow0123456789")
    [result] = sweep(store, now=time.time() + 120)
    [entry] = result["Files"]
    assert entry["Status"] == 0 and "execution role" in entry["Message"] and "InvalidAccessKeyId" in entry["Message"]
    assert "CosConfig keys" in entry["Message"]
    assert callback_receiver.wait_for(1, timeout=10)[0].json["Files"][0]["Status"] == 0


def test_create_once_writes_are_atomic_in_cos(bucket, prefix, cos_env):
    wins: list[int] = []

    def race(n: int) -> None:
        try:
            bucket.put_bytes(f"{prefix}marker", str(n).encode(), create_only=True)
            wins.append(n)
        except AlreadyExists:
            pass

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(wins) == 1
    assert cos_env.get_object_bytes(f"{prefix}marker") == str(wins[0]).encode()
    bucket.put_bytes(f"{prefix}marker", b"plain PUT still overwrites")
    assert cos_env.get_object_bytes(f"{prefix}marker") == b"plain PUT still overwrites"


def test_a_recovered_callback_has_the_shape_of_a_normal_one(tmp_path, bucket, prefix, cos_env, role, studio,
                                                            video_units):
    """Whichever way a recording ended, its callback has the same keys: `status`, and each file's
    `Duration` (the recovery reads it from the segments)."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02"))
    anchor = studio.anchor(room, "alice").publish(2.0, units=video_units).wait()
    studio.remove(room)
    run.wait()
    anchor.leave()
    [normal] = studio.callback.wait_for(1)

    store, _, keys = _dying_run(tmp_path, bucket, prefix, _params(cos_env, prefix, studio.callback.url),
                                "req-shape", seconds=5)
    [result] = sweep(store, now=time.time() + 120)
    recovered = studio.callback.wait_for(2)[1].json
    assert recovered == result and recovered["Reason"] == "recovered"
    assert set(recovered) == set(normal.json), (sorted(recovered), sorted(normal.json))
    assert [set(f) for f in recovered["Files"]] == [set(f) for f in normal.json["Files"]]
    assert recovered["status"] == normal.json["status"] == "finished"
    final = tmp_path / "shape.mp4"
    final.write_bytes(cos_env.get_object_bytes(keys.final))
    assert abs(recovered["Files"][0]["Duration"] - probe(final).video_s) < 0.5, recovered["Files"]
