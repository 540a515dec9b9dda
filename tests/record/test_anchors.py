"""Who gets recorded into which files: several anchors, filters, leaving and coming back, gaps,
late key frames, and MaxMediaFileDuration splits."""
from __future__ import annotations

from shared.room import KeyFrameRequested
from tests.waiting import wait_for

from .conftest import FPS, probe


def _files_by_user(result):
    by: dict[str, list] = {}
    for entry in result["Files"]:
        by.setdefault(entry["UserId"], []).append(entry)
    return by


def test_each_anchor_gets_its_own_file_and_filters_apply(studio, capfd):
    room = studio.new_room()
    event = studio.event(room, mode="00", UnsubscribeUserIds=["carol"])
    result = studio.record(event, ("alice", "bob", "carol"), 2.0)

    by = _files_by_user(result)
    assert sorted(by) == ["alice", "bob"]  # carol is unsubscribed, the recorder never records itself
    assert all(len(v) == 1 and v[0]["Status"] == 1 for v in by.values())
    assert by["alice"][0]["RecordFile"] != by["bob"][0]["RecordFile"]
    assert studio.callback.wait_for(1)[0].json["Files"] == result["Files"]
    logs = capfd.readouterr().err
    for secret in (event["UserSig"], event["CosConfig"]["SecretKey"], event["CosConfig"]["SecretId"]):
        assert secret not in logs  # never logged


def test_subscribe_list_records_only_those(studio):
    room = studio.new_room()
    result = studio.record(studio.event(room, mode="00", SubscribeUserIds=["bob"]), ("alice", "bob"), 1.0)
    assert [f["UserId"] for f in result["Files"]] == ["bob"]


def test_leaving_and_coming_back_gives_a_new_file(studio, tmp_path):
    room = "class-7b"  # a string room: stopped with RemoveUserByStrRoomId
    run = studio.start(studio.event(room, mode="00"))
    first = studio.anchor(room, "alice").publish(1.5).wait()
    first.leave()
    wait_for(lambda: "alice" not in studio.rooms.rooms.user_ids(studio.rooms.sdk_app_id, room), 10, "alice to leave")
    second = studio.anchor(room, "alice").publish(1.0).wait()
    studio.remove(room)
    result = run.wait()
    second.leave()

    assert result["StrRoomId"] == room and result["Reason"] == "removed"
    files = result["Files"]
    assert [f["UserId"] for f in files] == ["alice", "alice"]
    assert files[0]["RecordFile"] != files[1]["RecordFile"]
    durations = [probe(studio.fetch(f["RecordFile"], tmp_path / f"{i}.mp3")).audio_s for i, f in enumerate(files)]
    assert abs(durations[0] - 1.5) <= 0.1 and abs(durations[1] - 1.0) <= 0.1, durations


def test_audio_gap_is_filled_with_silence_and_stays_in_sync(studio, video_units, tmp_path):
    """A microphone muted from 1.0 s to 1.6 s: the file keeps the room's timeline."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02"))
    anchor = studio.anchor(room, "alice").publish(3.0, units=video_units, mute=(1.0, 1.6)).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    found = probe(studio.fetch(result["Files"][0]["RecordFile"], tmp_path / "gap.mp4"))
    assert abs(found.audio_s - 3.0) <= 0.1 and abs(found.video_s - 3.0) <= 0.1, found
    rms = found.audio_rms  # per 100 ms
    assert max(rms[11:15]) < 200, rms  # silence where the microphone was off
    assert min(rms[2:9]) > 1000 and min(rms[18:28]) > 1000, rms  # the tone before and after, in place


def test_video_waits_for_its_first_key_frame(studio, video_units, tmp_path):
    """An anchor whose stream starts mid-GOP: the file starts at the first key frame (1 s in)."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="01"))
    late = [u for u in video_units if u.pts_ms >= 200]  # frames 5.. : the next key frame is at 1 s
    anchor = studio.anchor(room, "alice").publish(3.0, units=late).wait()
    studio.remove(room)
    result = run.wait()
    asked = []
    while (event := anchor.room.poll(0)) is not None:
        asked.append(event)
    anchor.leave()
    assert any(isinstance(e, KeyFrameRequested) for e in asked)  # the recorder asked for one

    found = probe(studio.fetch(result["Files"][0]["RecordFile"], tmp_path / "late.mp4"))
    assert found.codecs == ["h264"]
    sent_from_key = sum(1 for u in late if 1000 <= u.pts_ms <= 2980)
    assert found.video_frames == sent_from_key  # every frame from the key frame on decodes
    assert abs(found.video_s - 2.0) <= 0.1, found


def test_max_media_file_duration_splits_at_key_frames(studio, video_units, tmp_path):
    room = studio.new_room()
    # 0.025 minutes = 1.5 s: the split waits for the key frame at 2 s.
    run = studio.start(studio.event(room, mode="02", MaxMediaFileDuration=0.025))
    anchor = studio.anchor(room, "alice").publish(3.4, units=video_units).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    files = result["Files"]
    assert len(files) == 2 and all(f["Status"] == 1 for f in files), files
    assert files[0]["RecordFile"] < files[1]["RecordFile"]  # keys sort in time order
    parts = [probe(studio.fetch(f["RecordFile"], tmp_path / f"part{i}.mp4")) for i, f in enumerate(files)]
    assert abs(parts[0].video_s - 2.0) <= 0.1 and abs(parts[1].video_s - 1.4) <= 0.1, parts
    assert parts[0].video_frames + parts[1].video_frames == int(3.4 * FPS)
    assert abs(parts[0].audio_s + parts[1].audio_s - 3.4) <= 0.15, parts


def test_mode_02_anchor_without_microphone_gets_a_silent_track(studio, video_units, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02"))
    anchor = studio.anchor(room, "alice").publish(2.0, units=video_units, audio=False).wait()
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    found = probe(studio.fetch(result["Files"][0]["RecordFile"], tmp_path / "silent.mp4"))
    assert sorted(found.codecs) == ["aac", "h264"]
    assert abs(found.video_s - 2.0) <= 0.1 and abs(found.audio_s - 2.0) <= 0.1, found
    assert max(found.audio_rms) < 50  # silence, as long as the pictures
