"""Recordings written as segments that go to COS while the recording goes on (SegmentDuration 2 s
here): HLS output live in COS, a COS outage ridden out on the local disk, what COS refuses kept and
reported, the anchor's first frame kept, and stereo audio."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import av

from shared.cos.urls import parse_cos_url
from shared.record.assembly import read_playlist
from tests.waiting import wait_for

from .conftest import FPS, probe

SEGMENT_S = 2


def _key(url: str) -> str:
    return parse_cos_url(url)[2]


def _download_hls(studio, playlist_url: str, into: Path) -> Path:
    """The playlist and every object under its folder, laid out as in COS."""
    key = _key(playlist_url)
    folder = key.rsplit("/", 1)[0] + "/"
    for k in studio.cos.list_keys(folder):
        target = into / k[len(folder):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(studio.cos.get_object_bytes(k))
    return into / key[len(folder):]


def _local_segments(studio) -> list[Path]:
    return [p for p in studio.cfs.rglob("*") if p.is_file() and p.suffix in (".m4s", ".mp3", ".mp4")]


def test_hls_playlist_is_in_cos_while_recording_and_plays_to_the_end(studio, video_units, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02", OutputFormat="hls", SegmentDuration=SEGMENT_S))
    anchor = studio.anchor(room, "alice").publish(7.0, units=video_units)
    live: list[str] = []

    def look() -> None:  # ~5.5 s in: two segments closed (cut at the key frames at 2 and 4 s)
        keys = [k for k in studio.cos.list_keys("trtc/test/") if f"_{room}_alice_" in k and k.endswith(".m3u8")]
        if keys:
            live.append(studio.cos.get_object_bytes(keys[0]).decode())

    timer = threading.Timer(5.5, look)
    timer.start()
    anchor.wait()
    timer.join()
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    assert live, "no playlist in COS while the recording went on"
    assert "#EXT-X-ENDLIST" not in live[0] and len(read_playlist(live[0])) >= 2, live[0]
    [entry] = result["Files"]
    assert entry["Status"] == 1 and entry["RecordFile"].endswith(".m3u8"), entry
    mine = [k.split(f"_{room}_alice_", 1)[1] for k in studio.cos.list_keys("trtc/test/") if f"_{room}_alice_" in k]
    assert not any(k.endswith(".mp4") and "/" not in k for k in mine), mine  # "hls": no whole-file MP4

    playlist = _download_hls(studio, entry["RecordFile"], tmp_path / "hls")
    text = playlist.read_text()
    assert text.endswith("#EXT-X-ENDLIST\n")
    found = probe(playlist)
    assert found.video_frames == anchor.sent_video, found
    assert abs(found.audio_s - 7.0) <= 0.15, found
    init = playlist.parent / text.split('#EXT-X-MAP:URI="', 1)[1].split('"', 1)[0]
    for uri in read_playlist(text):  # every segment starts with a key frame
        alone = tmp_path / "alone.mp4"
        alone.write_bytes(init.read_bytes() + (playlist.parent / uri).read_bytes())
        with av.open(str(alone)) as c:
            first = next(c.decode(video=0))
        assert first.key_frame, uri


def test_cos_down_for_a_while_segments_wait_on_disk_and_nothing_is_lost(studio, video_units, tmp_path):
    """COS answers 503 to everything for 8 s in the middle of the recording: the segments closed
    meanwhile wait on the local disk (a bounded number of them) and go up once COS is back."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02", OutputFormat="hls+mp4", SegmentDuration=SEGMENT_S))
    anchor = studio.anchor(room, "alice").publish(10.0, units=video_units)
    waiting: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.1):
            waiting.append(len(_local_segments(studio)))

    watcher = threading.Thread(target=watch, daemon=True)
    time.sleep(1.0)  # the stimulus: COS goes down 1 s into the recording...
    studio.cos.deny(code="ServiceUnavailable", message="Service is unavailable now.", status=503)
    watcher.start()
    time.sleep(8.0)  # ...and stays down for 8 s
    studio.cos.allow()
    stop.set()
    watcher.join()
    anchor.wait()
    studio.remove(room)
    result = run.wait(timeout=60)
    anchor.leave()

    assert max(waiting) >= 3, waiting  # segments piled up while COS was away...
    assert max(waiting) <= 8 / SEGMENT_S + 3, waiting  # ...those of the outage, no more
    playlist, final = result["Files"]
    assert playlist["Status"] == final["Status"] == 1, result["Files"]
    found = probe(studio.fetch(final["RecordFile"], tmp_path / "final.mp4"))
    assert found.video_frames == anchor.sent_video, found  # nothing lost
    assert abs(found.audio_s - 10.0) <= 0.15, found
    assert _local_segments(studio) == []


def test_a_refusal_mid_recording_keeps_the_rest_and_reports_it(studio, tmp_path):
    """COS refuses (AccessDenied, not retried) from 3 s on: what reached COS before stays there,
    what came after is kept on the local disk, and the entry says so (Status 0, LocalPath)."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", SegmentDuration=SEGMENT_S))
    anchor = studio.anchor(room, "alice").publish(7.0)
    time.sleep(3.2)  # the stimulus: COS refuses from 3 s on
    studio.cos.deny()
    anchor.wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    studio.cos.allow()

    [entry] = result["Files"]
    assert entry["Status"] == 0 and "AccessDenied" in entry["Message"], entry
    kept = Path(entry["LocalPath"])
    assert studio.cfs in kept.parents or kept.parent == studio.cfs
    local = sorted(_local_segments(studio))
    assert local, "the segments COS refused are kept"
    in_cos = [k for k in studio.cos.list_keys("trtc/test/") if f"_{room}_alice_" in k]
    assert in_cos, "the segments from before the refusal are in COS"
    heard = sum(probe(p).audio_s for p in local)
    assert 7.0 - 3.2 - SEGMENT_S - 0.5 <= heard, (heard, local)  # nothing after the refusal was dropped


def test_an_anchor_is_recorded_from_its_first_frame(studio, video_units, tmp_path):
    """The anchor starts publishing after the recorder entered: the file starts with its first
    picture (within one frame) and its first audio frame."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02", SegmentDuration=SEGMENT_S))
    anchor = studio.anchor(room, "alice").publish(3.0, units=video_units)
    anchor.wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    [entry] = result["Files"]
    path = studio.fetch(entry["RecordFile"], tmp_path / "first.mp4")
    with av.open(str(path)) as c:
        first = next(c.decode(video=0))
        plane = first.planes[0]
        rows = bytes(plane)
        luma = sum(sum(rows[r * plane.line_size:r * plane.line_size + first.width])
                   for r in range(first.height)) / (first.width * first.height)
    # h264_units paints frame i with grey (i * 7) % 200 + 20: frame 0 is 20, frame 1 is 27.
    assert abs(luma - 20) <= 3.5, luma
    found = probe(path)
    assert found.video_frames == anchor.sent_video and found.video_s >= 3.0 - 1 / FPS, found
    assert found.audio_rms[0] > 1000, found.audio_rms[:3]  # the tone from the first 100 ms on
    assert abs(found.audio_s - anchor.sent_audio * 0.02) <= 0.05, found


def test_audio_channels_2_records_stereo(studio, video_units, tmp_path):
    room = studio.new_room()
    runs = {}
    for mode in ("00", "02"):
        runs[mode] = studio.start(studio.event(room, mode=mode, user_id=f"rec{mode}", AudioChannels=2))
    anchor = studio.anchor(room, "alice").publish(2.0, units=video_units).wait()
    for mode in runs:
        studio.remove(room, f"rec{mode}")
    for mode, run in runs.items():
        [entry] = run.wait()["Files"]
        assert entry["Status"] == 1, entry
        path = studio.fetch(entry["RecordFile"], tmp_path / f"stereo.{'mp3' if mode == '00' else 'mp4'}")
        with av.open(str(path)) as c:
            assert c.streams.audio[0].codec_context.channels == 2, mode
        assert abs(probe(path).audio_s - 2.0) <= 0.1
    anchor.leave()


def test_cos_down_until_the_end_keeps_every_segment_and_says_so(studio, monkeypatch):
    """COS never comes back before the time limit: the segments that waited are not dropped; the
    file is joined on the local disk, where the entry says it is (Status 0, LocalPath)."""
    monkeypatch.setenv("STOP_MARGIN_SECONDS", "2")
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", SegmentDuration=SEGMENT_S), studio.context(time_limit_s=9.0))
    started = time.monotonic()
    studio.cos.deny(code="ServiceUnavailable", message="Service is unavailable now.", status=503)
    anchor = studio.anchor(room, "alice").publish(10.0)
    try:
        result = run.wait(timeout=20)
    finally:
        studio.cos.allow()
    recorded = time.monotonic() - started
    anchor.wait()
    anchor.leave()
    assert result["Reason"] == "time_limit", result
    [entry] = result["Files"]
    assert entry["Status"] == 0 and entry["RecordFile"] == "" and "ServiceUnavailable" in entry["Message"], entry
    kept = Path(entry["LocalPath"])
    assert kept.is_file() and studio.cfs in kept.parents
    assert recorded - 1.0 <= probe(kept).audio_s <= recorded + 0.2, (probe(kept), recorded)  # all of it
    assert studio.callback.wait_for(1)[0].json["Files"] == [entry]


ROLE = ("AKIDrecordStateRole0000000000000", "recordStateRoleKey0123456789abcd", "record-state-token")


def _with_state(studio, monkeypatch, prefix: str):
    """RECORD_STATE_* as a deployment sets them, on the session's COS, with an execution role."""
    from shared.cos.client import CosBucket
    from shared.cos.credentials import Credentials
    from shared.record.state import ManifestStore

    studio.cos.add_temporary_credentials(*ROLE)
    for name, value in zip(("TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY", "TENCENTCLOUD_SESSIONTOKEN"), ROLE):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RECORD_STATE_BUCKET", studio.cos.bucket)
    monkeypatch.setenv("RECORD_STATE_REGION", studio.cos.region)
    monkeypatch.setenv("RECORD_STATE_PREFIX", prefix)
    return ManifestStore(CosBucket(studio.cos.bucket, studio.cos.region, Credentials(*ROLE)), prefix)


def test_a_run_keeps_its_state_while_recording_and_leaves_only_its_report(studio, monkeypatch):
    store = _with_state(studio, monkeypatch, "state-live/")
    room = studio.new_room()
    context = studio.context()
    run = studio.start(studio.event(room, mode="00", SegmentDuration=SEGMENT_S), context)
    anchor = studio.anchor(room, "alice").publish(3.0)
    manifest = wait_for(lambda: (lambda m: m if m is not None and m.files else None)(store.load(context["request_id"])),
                        10, "the run's state, listing alice's file, in the state bucket")
    anchor.wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    assert manifest is not None and [f.user_id for f in manifest.files] == ["alice"]
    assert manifest.files[0].final_key == _key(result["Files"][0]["RecordFile"])
    assert result["Files"][0]["Status"] == 1
    assert studio.cos.list_keys("state-live/") == [f"state-live/{context['request_id']}.reported",
                                                   f"state-live/{context['request_id']}.result.json"]
    assert len(studio.callback.wait_for(1)) == 1


def test_a_retried_event_leaves_the_dead_attempts_state_to_its_recovery(studio, monkeypatch):
    """SCF may run an event again after its run died: the new run keeps its state apart, so the
    recovery of the first still finds every file of it."""
    from shared.contracts.record import RecordParams
    from shared.record.state import FileRecord, Manifest

    store = _with_state(studio, monkeypatch, "state-retry/")
    room = studio.new_room()
    context = studio.context()
    event = studio.event(room, mode="00", SegmentDuration=SEGMENT_S)
    dead = Manifest.for_run(RecordParams.model_validate(event), context["request_id"], "mp4", SEGMENT_S)
    dead.files.append(FileRecord("bob", 1, 1767225600.0, "trtc/test/dead_bob.mp3"))
    store.save(dead)
    run = studio.start(event, context)
    studio.anchor(room, "alice").publish(1.0).wait()
    studio.remove(room)
    assert run.wait()["Files"][0]["Status"] == 1
    kept = store.load(context["request_id"])
    assert kept is not None and [f.user_id for f in kept.files] == ["bob"]  # untouched
    reported = [k for k in studio.cos.list_keys("state-retry/") if k.endswith(".reported")]
    assert len(reported) == 1 and reported[0] != f"state-retry/{context['request_id']}.reported"


def test_a_result_the_receiver_never_took_is_kept_in_the_state_bucket(studio, monkeypatch):
    """The receiver is down for longer than the callback's retries (CALLBACK_RETRY_SECONDS, short
    here): the result, with its CallbackId, is in RECORD_STATE_BUCKET for the caller to fetch."""
    import json

    store = _with_state(studio, monkeypatch, "state-result/")
    monkeypatch.setenv("CALLBACK_RETRY_SECONDS", "1")
    studio.callback.down()
    room = studio.new_room()
    context = studio.context()
    run = studio.start(studio.event(room, mode="00", SegmentDuration=SEGMENT_S), context)
    studio.anchor(room, "alice").publish(1.0).wait()
    studio.remove(room)
    result = run.wait()
    assert studio.callback.received == [] and result["Files"][0]["Status"] == 1
    key = store.result_key(context["request_id"])
    assert key == f"state-result/{context['request_id']}.result.json"
    kept = json.loads(studio.cos.get_object_bytes(key))
    assert kept == result and kept["CallbackId"]
