"""When COS, the callback, the disk or the input let the recording down: what the user gets."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emulator.scf.models import says_failed
from functions.record_stream.index import main_handler

from .conftest import REPO, probe


def _record_briefly(studio, seconds=1.0, mode="00", **extra):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode=mode, **extra))
    anchor = studio.anchor(room, "alice").publish(seconds).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    return result


def test_cos_failing_twice_then_succeeding(studio, tmp_path):
    studio.cos.fail_next(2, when="PUT ")
    result = _record_briefly(studio)
    [entry] = result["Files"]
    assert entry["Status"] == 1, entry
    puts = [r for r in studio.cos.requests if r.method == "PUT" and f"_{result['RoomId']}_alice_" in r.key]
    assert len(puts) == 3  # two 503s, then the one that stored it
    assert abs(probe(studio.fetch(entry["RecordFile"], tmp_path / "a.mp3")).audio_s - 1.0) <= 0.1


def test_cos_refusing_reports_status_0_and_keeps_the_file(studio):
    """COS let the recorder in at start, then refuses the upload (a policy changed meanwhile)."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00"))  # returns once the start check passed
    studio.cos.deny()
    anchor = studio.anchor(room, "alice").publish(1.0).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    [entry] = result["Files"]
    assert entry["Status"] == 0 and entry["RecordFile"] == ""
    assert entry["Message"].startswith("upload failed: AccessDenied"), entry
    local = Path(entry["LocalPath"])
    assert local.is_file() and studio.cfs in local.parents  # kept on CFS, its path given
    assert abs(probe(local).audio_s - 1.0) <= 0.1
    assert studio.callback.wait_for(1)[0].json["Files"] == [entry]


def test_callback_down_then_up_is_delivered(studio):
    studio.callback.down()
    timer = threading.Timer(1.5, studio.callback.up)  # back before the retries run out
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00"))
    anchor = studio.anchor(room, "alice").publish(1.0).wait()
    studio.remove(room)
    timer.start()
    result = run.wait()
    anchor.leave()
    [body] = [r.json for r in studio.callback.wait_for(1)]
    assert body == result and body["Files"][0]["Status"] == 1


def test_callback_never_answering_still_returns_the_result_in_time(studio, monkeypatch, capfd):
    """The callback keeps trying for up to a minute, but never past the time limit: the run returns
    its result before SCF would end it."""
    monkeypatch.setenv("STOP_MARGIN_SECONDS", "3")
    studio.callback.down()
    room = studio.new_room()
    started = time.monotonic()
    run = studio.start(studio.event(room, mode="00"), studio.context(time_limit_s=8.0))
    anchor = studio.anchor(room, "alice").publish(1.0).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    assert time.monotonic() - started < 8.0
    assert result["Files"][0]["Status"] == 1
    assert studio.callback.received == []
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    [failed] = [line for line in lines if line["msg"] == "callback failed"]
    assert failed["tries"] >= 3 and failed["error"].endswith("no time left to retry"), failed


def test_disk_filling_up_mid_recording_ends_it_cleanly(studio, tmp_path, monkeypatch):
    """The free space drops below what the recorder keeps in hand (RECORD_MIN_FREE_MB is raised
    above what is free while it runs, the way another writer filling the disk would look to it):
    the recording ends with what was written finalised, uploaded and reported."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02"))
    anchor = studio.anchor(room, "alice").publish(3.0)
    threading.Event().wait(1.5)
    free_mb = os.statvfs(studio.cfs).f_bavail * os.statvfs(studio.cfs).f_frsize // (1 << 20)
    monkeypatch.setenv("RECORD_MIN_FREE_MB", str(free_mb + 1024))
    result = run.wait(timeout=15)
    anchor.wait()
    anchor.leave()
    assert result["Reason"] == "disk_full", result
    assert "disk" in result["Message"]
    [entry] = result["Files"]
    assert entry["Status"] == 1
    found = probe(studio.fetch(entry["RecordFile"], tmp_path / "full.mp4"))
    assert 1.2 <= found.audio_s <= 3.0, found  # what was written before the stop, and it plays


def test_no_free_disk_at_start_is_reported_not_recorded(studio, monkeypatch):
    monkeypatch.setenv("RECORD_MIN_FREE_MB", str(1 << 30))  # a petabyte: never free
    room = studio.new_room()
    result = main_handler(studio.event(room), studio.context())
    assert result["Reason"] == "disk_full" and result["Files"] == []
    assert "RECORD_MIN_FREE_MB" in result["Message"]
    assert studio.callback.wait_for(1)[0].json["Reason"] == "disk_full"
    assert studio.rooms.rooms.user_ids(studio.rooms.sdk_app_id, room) == []


def _limit_file_size() -> None:
    # Like a full disk to the recorder: writes past 24 KB fail (EFBIG) instead of killing us.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (24 * 1024, 24 * 1024))


def test_writes_failing_mid_recording_end_it_with_what_was_written(studio, tmp_path):
    """The kernel refuses a write (a file size limit: the same failure as ENOSPC for the writer):
    no crash; the recording stops and reports, and the MP3 written so far is uploaded and plays."""
    room = studio.new_room()
    event = studio.event(room, mode="00")
    context = studio.context()
    proc = subprocess.Popen([sys.executable, "-m", "tests.child", "record_stream", json.dumps(event),
                             json.dumps(context)],
                            cwd=str(REPO), env={**os.environ, **studio.env, "PYTHONDONTWRITEBYTECODE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limit_file_size)
    try:
        studio.wait_in_room(room, "recorder", timeout=20)
        anchor = studio.anchor(room, "alice").publish(6.0)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    anchor.wait()
    anchor.leave()
    assert proc.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["Reason"] == "disk_full", result
    [entry] = result["Files"]
    # The segment the refused write cut short is whole MP3 frames: it ends the file, in COS.
    assert entry["Status"] == 1 and "LocalPath" not in entry, entry
    found = probe(studio.fetch(entry["RecordFile"], tmp_path / "cut.mp3"))
    assert 1.5 <= found.audio_s < 6.0, found  # 64 kbit/s: ~3 s fit in 24 KB, and they play


def test_invalid_input_is_a_400_naming_each_bad_field(studio):
    body = {"SdkAppId": "abc", "UserId": "recorder", "Mode": "05",
            "CosConfig": {"Region": "ap-guangzhou", "Path": "/x"}, "Callback": "http://169.254.169.254/cb",
            "MaxIdleTime": 0}
    event = {"httpMethod": "POST", "path": "/record_stream", "requestContext": {}, "headers": {},
             "body": json.dumps(body)}
    answer = main_handler(event, studio.context())
    assert answer["statusCode"] == 400
    message = json.loads(answer["body"])["message"]
    for field in ("SdkAppId", "StrRoomId", "UserSig", "Mode", "CosConfig.Bucket", "Callback", "MaxIdleTime"):
        assert field in message, (field, message)
    assert "RoomId (integer) or StrRoomId (string) is required" in message


def test_a_bad_usersig_is_reported_with_trtc_code(studio):
    room = studio.new_room()
    event = studio.event(room, UserSig="not-a-valid-signature")
    result = main_handler(event, studio.context())
    assert result["Reason"] == "enter_failed" and result["Code"] == -3320, result
    assert result["Files"] == []
    assert result["status"] == "failed" and says_failed(result)  # the run ends FAILED, not FINISHED 200
    assert studio.callback.wait_for(1)[0].json["Code"] == -3320


def _gateway_event(params):
    return {"httpMethod": "POST", "path": "/record_stream", "requestContext": {}, "headers": {},
            "body": json.dumps(params)}


@pytest.mark.parametrize("change,code,names", [
    ({"SecretKey": "a-wrong-secret-key-0123"}, "SignatureDoesNotMatch", "CosConfig.SecretKey"),
    ({"SecretId": "AKIDnobodyKnowsThis000000"}, "InvalidAccessKeyId", "CosConfig.SecretId"),
    ({"Bucket": "missing-1250000000"}, "NoSuchBucket", "CosConfig.Bucket"),
    ({"deny": True}, "AccessDenied", "cos:PutObject"),
])
def test_cos_config_that_cannot_work_fails_the_run_at_start(studio, change, code, names):
    """Wrong keys, a missing bucket or a refusal end the run FAILED in about a second, with the
    reason naming CosConfig, before the recorder enters the room (not after an hour of recording)."""
    room = studio.new_room()
    event = studio.event(room, MaxIdleTime=2)  # were it to enter the room, it would stop soon
    if change.pop("deny", False):
        studio.cos.deny()
    event["CosConfig"].update(change)
    started = time.monotonic()
    answer = main_handler(_gateway_event(event), studio.context())
    assert time.monotonic() - started < 5.0
    assert answer["statusCode"] == 200 and says_failed(answer)  # the emulator's rule: FAILED (430)
    result = json.loads(answer["body"])
    assert (result["status"], result["Reason"], result["Files"]) == ("failed", "cos_config", []), result
    assert result["Message"].startswith(f"CosConfig cannot be used: {code}") and names in result["Message"], result
    assert studio.callback.wait_for(1)[0].json == result
    assert not any(r.method == "PUT" for r in studio.cos.requests if f"_{room}_" in r.key)
    assert studio.rooms.rooms.get(studio.rooms.sdk_app_id, room) is None  # never entered
    if code == "SignatureDoesNotMatch":
        assert change["SecretKey"] not in json.dumps(result)


def test_cos_unreachable_for_a_moment_at_start_does_not_stop_the_recording(studio, tmp_path, capfd):
    studio.cos.fail_next(3, when="HEAD ")  # every try of the start check gets a 503
    result = _record_briefly(studio)
    assert result["status"] == "finished" and not says_failed(result)
    [entry] = result["Files"]
    assert entry["Status"] == 1, entry
    assert abs(probe(studio.fetch(entry["RecordFile"], tmp_path / "late.mp3")).audio_s - 1.0) <= 0.1
    assert "cos not reachable at start; recording anyway" in capfd.readouterr().err


def test_internal_callback_is_refused_unless_allowlisted(studio, monkeypatch):
    monkeypatch.delenv("CALLBACK_ALLOWLIST")
    event = {"httpMethod": "POST", "path": "/record_stream", "requestContext": {}, "headers": {},
             "body": json.dumps(studio.event(studio.new_room()))}
    answer = main_handler(event, studio.context())
    assert answer["statusCode"] == 400
    message = json.loads(answer["body"])["message"]
    assert "Callback" in message and "loopback" in message and "CALLBACK_ALLOWLIST" in message


def test_gateway_strings_are_accepted_where_numbers_are_meant(studio):
    room = studio.new_room()
    params = studio.event(room, mode="0")  # "0" for "00", as a form would send it
    params.update(SdkAppId=str(params["SdkAppId"]), RoomId=str(room), MaxIdleTime="1")
    event = {"httpMethod": "POST", "path": "/record_stream", "requestContext": {}, "headers": {},
             "body": json.dumps(params)}
    answer = main_handler(event, studio.context())
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert (body["SdkAppId"], body["RoomId"], body["Reason"]) == (studio.rooms.sdk_app_id, room, "idle")


def test_without_keys_the_execution_roles_credentials_upload(studio, monkeypatch):
    studio.cos.add_temporary_credentials("AKIDrecordRole000000000000", "recordRoleKey0123456789abcdefgh",
                                         "record-role-session-token")
    monkeypatch.setenv("TENCENTCLOUD_SECRETID", "AKIDrecordRole000000000000")
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", "recordRoleKey0123456789abcdefgh")
    monkeypatch.setenv("TENCENTCLOUD_SESSIONTOKEN", "record-role-session-token")
    room = studio.new_room()
    event = studio.event(room)
    del event["CosConfig"]["SecretId"], event["CosConfig"]["SecretKey"]
    run = studio.start(event)
    anchor = studio.anchor(room, "alice").publish(1.0).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    assert result["Files"][0]["Status"] == 1, result


@pytest.fixture
def small_disk(studio, monkeypatch):
    """CFS_PATH on a real 24 MB tmpfs of its own (mounting one needs root: skipped otherwise)."""
    monkeypatch.setenv("RECORD_MIN_FREE_MB", "4")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(studio.cfs)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {done.stderr.strip()[-200:]}")
    yield studio.cfs
    subprocess.run(["umount", "-l", str(studio.cfs)], capture_output=True)


def _fill(directory: Path) -> None:
    """Write zeros until the file system says ENOSPC: the disk full at once, to the last byte."""
    import errno

    fd = os.open(directory / "filler.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = bytes(size)
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)


def _landed_segments(studio, at_least: int, timeout: float = 15.0) -> list[str]:
    end = time.monotonic() + timeout
    while True:
        found = [k for k in studio.cos.list_keys("trtc/test/") if k.endswith(".m4s")]
        if len(found) >= at_least:
            return found
        assert time.monotonic() < end, f"fewer than {at_least} segments reached COS: {found}"
        time.sleep(0.1)


def test_a_disk_filled_at_once_keeps_what_was_already_recorded(studio, small_disk, video_units, tmp_path):
    """Another writer fills the CFS in one go: the segment being written cannot be, which ends
    the file there; what came before (already in COS) is assembled and reported as recorded."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02", SegmentDuration=2))
    anchor = studio.anchor(room, "alice").publish(9.0, units=video_units)
    landed = _landed_segments(studio, at_least=2)  # two media segments (4 s) are in COS
    _fill(small_disk)
    result = run.wait(timeout=30)
    anchor.wait()
    anchor.leave()
    assert result["Reason"] == "disk_full", result
    [entry] = result["Files"]
    assert entry["Status"] == 1 and entry["RecordFile"], entry
    assert "LocalPath" not in entry, entry
    found = probe(studio.fetch(entry["RecordFile"], tmp_path / "full.mp4"))
    assert found.video_s >= 2 * (len(landed) - 1) - 0.5 and found.first_key, found  # what was in COS, playing
    assert found.video_frames > 0 and found.audio_s > 1.0, found
    assert abs(entry["Duration"] - found.video_s) < 2.5, (entry, found)
