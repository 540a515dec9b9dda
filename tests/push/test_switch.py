"""push_control on a real push (issue 12): a switch cuts over in the room without leaving it, a
failed switch leaves the push playing, pause/resume, volume, stop, enqueue and playlists. The push
runs in this process (a thread); the control calls go through shared.push.control.caller.send, as
push_control's function makes them."""
from __future__ import annotations

import array
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from emulator.media import gray_level
from functions.push_stream.index import main_handler
from shared.contracts.control import ControlParams
from shared.push.checkpoint import checkpoint_key, playlist_key
from shared.room import RoomRef

from .conftest import APP, PUSH_CLIP, decode_h264, make_clip, new_room, params_for, poll_until
from .fake_push import answer


@pytest.fixture(scope="session")
def clip_b(clip_dir: Path) -> Path:
    """Another picture size with B-frames: it cannot pass through, so it is encoded to H.264 here."""
    return make_clip(clip_dir / "clip_b.mp4", **{**PUSH_CLIP, "duration": 6.0, "width": 176, "height": 144,
                                             "video": "h264-bframes"})


@pytest.fixture(scope="session")
def clip_short(clip_dir: Path) -> Path:
    return make_clip(clip_dir / "clip_short.mp4", duration=1.0, **PUSH_CLIP)


class Running:
    def __init__(self, push_env, redis_server, src: Any, room: int, request_id: str, **extra: Any):
        self.room, self.request_id, self.server = room, request_id, redis_server
        self.result: dict[str, Any] = {}
        params = params_for(push_env, src, room, redis="true", redisHost=redis_server.host,
                            redisPort=str(redis_server.port), **extra)
        self.user_sig = params["userSig"]  # what a control call presents
        self.thread = threading.Thread(target=lambda: self.result.update(
            main_handler(params, {"request_id": request_id})), daemon=True)
        self.thread.start()
        client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
        assert poll_until(lambda: client.exists(f"trtc-push:run:{{{request_id}}}"), 10), "never registered"

    def control(self, action: str, **fields: Any) -> tuple[int, dict[str, Any]]:
        params = ControlParams.model_validate({"requestId": self.request_id, "action": action,
                                               "userSig": self.user_sig, "redisHost": self.server.host,
                                               "redisPort": self.server.port, **fields})
        return answer(params)

    def wait(self, timeout: float = 30) -> dict[str, Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the push did not end"
        return self.result


def _peak(pcm: bytes) -> int:
    samples = array.array("h")
    samples.frombytes(pcm)
    return max((abs(v) for v in samples), default=0)


def _gaps(pts: list[int]) -> list[int]:
    return [b - a for a, b in zip(pts, pts[1:])]


def test_switch_cuts_over_in_the_room_key_frame_first_and_timestamps_rising(
        push_env, subscribe, redis_server, clip10, clip_b, monkeypatch):
    monkeypatch.setenv("PACING_SPEED", "2")
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip10, room, "req-switch")
    assert sub.wait_for(lambda g: len(g.video_pts) > 25)
    status, body = push.control("switch", videoSrc=str(clip_b))
    assert status == 200, body
    assert body["state"]["videoSrc"] == str(clip_b)
    assert body["switch"]["from"] == str(clip10) and body["switch"]["path"] == "encode"
    assert body["switch"]["latencyMs"] < 500
    result = push.wait()
    got = sub.settle()
    assert (result["status"], result["reason"]) == ("completed", "end_of_source")
    assert result["videoSrc"] == str(clip_b)
    [switch] = result["switches"]
    assert switch["ok"] and switch["trigger"] == "switch" and switch["to"] == str(clip_b)
    assert [s["path"] for s in result["sources"]] == ["passthrough", "encode"]
    # Never left the room: one entry of the pusher, no leave until the end.
    assert all(p > 0 for p in _gaps(got.video_pts)), "room video timestamps must keep rising"
    assert all(p > 0 for p in _gaps(got.audio_pts)), "room audio timestamps must keep rising"
    assert max(_gaps(got.audio_pts)) <= 60, "audio stopped for more than 60 ms"
    first_new = next(i for i, p in enumerate(got.video_pts) if p >= switch["roomMs"])
    assert got.video_keys[first_new], "the first picture of the new source must be a key frame"
    pictures = decode_h264(got.video_data[first_new:])
    assert {(f.width, f.height) for f in pictures} == {(160, 120)}, "the room's picture size is kept"
    # The old source keeps its record where it was left; the new one played to its end (cleared).
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    old = client.hgetall(checkpoint_key(APP, RoomRef(room), str(clip10)))
    assert old["reason"] == "switched" and 0.5 < float(old["position"]) < 9.0
    assert not client.exists(checkpoint_key(APP, RoomRef(room), str(clip_b)))


def test_a_switch_to_a_source_that_fails_to_open_is_409_and_the_push_plays_on(
        push_env, subscribe, redis_server, clip3, tmp_path):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip3, room, "req-badswitch")
    missing = tmp_path / "missing.mp4"
    status, body = push.control("switch", videoSrc=str(missing))
    assert status == 409, body
    assert body["reason"] == "source_error" and "file not found" in body["message"]
    result = push.wait()
    assert (result["status"], result["reason"]) == ("completed", "end_of_source")
    assert result["videoSrc"] == str(clip3) and result["position"] == pytest.approx(3.0, abs=0.1)
    [switch] = result["switches"]
    assert switch["ok"] is False and "file not found" in switch["error"]
    assert len(sub.settle().video_pts) == pytest.approx(75, abs=1)


def test_pause_sends_nothing_and_resume_continues_from_the_position_key_frame_first(
        push_env, subscribe, redis_server, clip10, monkeypatch):
    monkeypatch.setenv("PACING_SPEED", "2")
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip10, room, "req-pause", maxDuration=6)
    assert sub.wait_for(lambda g: len(g.video_pts) > 20)
    status, body = push.control("pause")
    assert status == 200 and body["state"]["status"] == "paused"
    sub.settle()  # what was in flight when the push paused has landed
    frozen = len(sub.got.video_pts), len(sub.got.audio_pts)
    position = push.control("status")[1]["state"]["position"]
    time.sleep(0.6)  # the window: a playing push would send ~30 frames in it (nothing to poll for)
    assert (len(sub.got.video_pts), len(sub.got.audio_pts)) == frozen, "a paused push sends nothing"
    assert push.control("status")[1]["state"]["position"] == position, "the position does not advance"
    t0 = time.monotonic()
    status, body = push.control("resume")
    assert status == 200 and body["state"]["status"] == "playing"
    assert time.monotonic() - t0 < 0.5
    result = push.wait()
    got = sub.settle()
    assert result["status"] == "completed" and result["switches"] == []
    after = frozen[0]
    assert got.video_keys[after], "the first picture after resume is a key frame"
    assert all(g > 0 for g in _gaps(got.video_pts))
    assert got.video_pts[after] - got.video_pts[after - 1] >= 800, "room time went on while paused"


def test_volume_applies_to_the_next_audio_and_stop_ends_the_push(push_env, subscribe, redis_server, clip10):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip10, room, "req-volume")
    assert sub.wait_for(lambda g: len(g.audio_pts) > 10)
    status, body = push.control("volume", volume=0)
    assert status == 200 and body["state"]["volume"] == 0
    n = len(sub.got.audio_pts)
    assert sub.wait_for(lambda g: len(g.audio_pts) > n + 30)
    status, body = push.control("stop")
    assert status == 200
    result = push.wait()
    assert (result["status"], result["reason"]) == ("terminated", "control_stop")
    got = sub.settle()
    assert max(_peak(d) for d in got.audio_data[2:n]) > 3000, "audible before"
    # The room's codec delays and smears a little: silent from a few frames on.
    assert max(_peak(d) for d in got.audio_data[n + 5:]) < 100, "silent from (about) the next frame"


def test_enqueue_three_sources_plays_them_in_order(push_env, subscribe, redis_server, clip_short, clip3, clip_b,
                                                   monkeypatch):
    # The first source must still be playing when the enqueue arrives (a control call proves the
    # push's userSig with scrypt first): 3 s at 2x, not a 1 s clip at 8x.
    monkeypatch.setenv("PACING_SPEED", "2")
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip3, room, "req-enqueue")
    status, body = push.control("enqueue", videoSrc=[str(clip3), str(clip_short), str(clip3)])
    assert status == 200 and len(body["state"]["queue"]) == 3
    result = push.wait(60)
    assert (result["status"], result["reason"]) == ("completed", "end_of_source")
    assert [s["to"] for s in result["switches"]] == [str(clip3), str(clip_short), str(clip3)]
    assert all(s["trigger"] == "queue" and s["ok"] for s in result["switches"])
    got = sub.settle()
    assert all(g > 0 for g in _gaps(got.video_pts)) and max(_gaps(got.audio_pts)) <= 60
    assert len(got.video_pts) == pytest.approx(25 * (3 + 3 + 1 + 3), abs=4)


def test_a_playlist_push_plays_its_items_in_order(push_env, subscribe, clip_short, clip3):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    params = {**params_for(push_env, clip_short, room, repeatNum=1), "videoSrc": [str(clip_short), str(clip3)]}
    result = main_handler(params, {"request_id": "req-list"})
    assert (result["status"], result["reason"]) == ("completed", "end_of_source")
    assert [s["to"] for s in result["switches"]] == [str(clip3), str(clip_short), str(clip3)]
    assert len(sub.settle().video_pts) == pytest.approx(25 * 8, abs=4)


def test_a_stopped_playlist_push_resumes_the_same_item_at_the_same_position(
        push_env, subscribe, redis_server, clip3, clip10, monkeypatch):
    monkeypatch.setenv("PACING_SPEED", "2")
    room = new_room()
    playlist = [str(clip3), str(clip10)]
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    key = playlist_key(APP, RoomRef(room), playlist)
    push = Running(push_env, redis_server, clip3, room, "req-list-1", videoSrc=playlist)
    assert poll_until(lambda: client.hget(key, "item") == "1" and float(client.hget(key, "position") or 0) >= 2.0,
                      timeout=15), client.hgetall(key)
    assert push.control("stop")[0] == 200
    first = push.wait()
    assert (first["status"], first["reason"], first["videoSrc"]) == ("terminated", "control_stop", str(clip10))
    record = client.hgetall(key)
    assert (record["item"], record["loop"], record["requestId"]) == ("1", "0", "req-list-1")
    assert (record["status"], record["reason"]) == ("terminated", "control_stop")
    assert float(record["position"]) == pytest.approx(first["position"], abs=0.05) and first["position"] >= 2.0
    assert float(record["duration"]) == pytest.approx(10.0, abs=0.1)
    assert json.loads(record["videoSrc"]) == playlist

    sub = subscribe(RoomRef(room), "pusher")
    params = {**params_for(push_env, clip3, room, redis="true", redisHost=redis_server.host,
                           redisPort=str(redis_server.port)), "videoSrc": playlist}
    second = main_handler(params, {"request_id": "req-list-2"})
    assert (second["status"], second["reason"]) == ("completed", "end_of_source")
    assert second["resumedItem"] == 1 and second["resumedFrom"] == pytest.approx(first["position"], abs=0.001)
    assert second["switches"] == [], "item 1 (clip3) is not played again"
    got = sub.settle()
    # The first frames are item 1's at the position: clip3 is only 3 s long, and the count is the rest of clip10.
    assert abs(got.video_pts[0] - first["position"] * 1000) <= 40
    assert abs(got.audio_pts[0] - first["position"] * 1000) <= 20
    assert len(got.video_pts) == pytest.approx((10.0 - first["position"]) * 25, abs=2)
    assert not client.exists(key), "the end of the whole list clears its record"


def _luma(picture) -> float:
    plane = picture.planes[0]  # Y, rows padded to line_size
    data = bytes(plane)
    rows = [data[r * plane.line_size:r * plane.line_size + plane.width] for r in range(plane.height)]
    return sum(sum(r) for r in rows) / (plane.width * plane.height)


def _dominant_hz(pcm: bytes, rate: int = 48000) -> float:
    """The frequency of a sine from its zero crossings (the room's audio is mono s16)."""
    samples = array.array("h")
    samples.frombytes(pcm)
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    return crossings / 2 * rate / max(1, len(samples))


def test_a_switch_to_an_http_source_cuts_picture_and_tone_at_the_same_place(
        push_env, subscribe, redis_server, clip10, clips, media_http, monkeypatch):
    monkeypatch.setenv("PACING_SPEED", "2")
    make_clip(clips.root / "gray880.mp4", duration=4.0, pictures="gray", layout="mono", gop=25, tone_hz=880)
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip10, room, "req-tone")
    assert sub.wait_for(lambda g: len(g.video_pts) > 40)
    status, body = push.control("switch", videoSrc=media_http.url("gray880.mp4"))
    assert status == 200, body
    result = push.wait()
    got = sub.settle()
    [switch] = result["switches"]
    assert switch["ok"] and switch["to"] == media_http.url("gray880.mp4")
    cut = switch["roomMs"]
    before = [d for p, d in zip(got.audio_pts, got.audio_data) if cut - 600 <= p < cut - 100]
    after = [d for p, d in zip(got.audio_pts, got.audio_data) if cut + 100 <= p < cut + 600]
    assert _dominant_hz(b"".join(before)) == pytest.approx(440, rel=0.05)
    assert _dominant_hz(b"".join(after)) == pytest.approx(880, rel=0.05), "the tone changes at the cut"
    first_new = next(i for i, p in enumerate(got.video_pts) if p >= cut)
    old = [_luma(f) for f in decode_h264(got.video_data[:first_new])[-3:]]
    new = [_luma(f) for f in decode_h264(got.video_data[first_new:first_new + 3])]
    # Before the cut the steps pictures; from the cut the gray clip's first second (gray_level(0)).
    assert len(new) == 3 and all(abs(y - gray_level(0)) <= 3 for y in new), new
    assert len(old) == 3 and all(abs((b - a) % 200 - 5) <= 1 for a, b in zip(old, old[1:])), old  # still stepping
    assert max(_gaps(got.audio_pts)) <= 60


def test_a_switch_that_runs_out_of_time_opening_is_409_and_never_cuts_over_late(
        push_env, subscribe, redis_server, clip10, media_http):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip10, room, "req-slow", maxDuration=6)
    t0 = time.monotonic()
    status, body = push.control("switch", videoSrc=media_http.url("stall/never.mp4"))  # answers nothing
    assert status == 409 and time.monotonic() - t0 < 2.0, body
    result = push.wait()
    assert (result["status"], result["reason"]) == ("completed", "max_duration")
    assert result["videoSrc"] == str(clip10) and [s for s in result["switches"] if s["ok"]] == []
    got = sub.settle()
    assert all(g > 0 for g in _gaps(got.video_pts)) and len(got.video_pts) == pytest.approx(150, abs=2)


def test_a_control_call_racing_the_push_s_natural_end_is_answered_and_the_push_ends_normally(
        push_env, redis_server, clip_short):
    room = new_room()
    push = Running(push_env, redis_server, clip_short, room, "req-race")
    answers: list[int] = []
    deadline = time.monotonic() + 10
    while push.thread.is_alive() and time.monotonic() < deadline:
        t0 = time.monotonic()
        status, body = push.control("volume", volume=50)
        assert time.monotonic() - t0 < 2.0 and status in (200, 404, 409), (status, body)
        answers.append(status)
    result = push.wait()
    assert (result["status"], result["reason"]) == ("completed", "end_of_source")
    assert answers and answers[-1] in (404, 409) or not push.thread.is_alive()
    assert push.control("status")[0] == 404


def test_a_switch_to_a_source_without_audio_keeps_the_room_s_audio_going(
        push_env, subscribe, redis_server, clip10, clips, monkeypatch):
    monkeypatch.setenv("PACING_SPEED", "2")
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    push = Running(push_env, redis_server, clip10, room, "req-mute")
    assert sub.wait_for(lambda g: len(g.video_pts) > 25)
    status, body = push.control("switch", videoSrc=str(clips.get("video_only.mp4")))
    assert status == 200, body
    result = push.wait()
    got = sub.settle()
    [switch] = result["switches"]
    after = [p for p in got.audio_pts if p >= switch["roomMs"]]
    assert got.video_pts[-1] - switch["roomMs"] > 1500, "the video-only source played"
    # Silence at the audio cadence all through the video-only source, not only at the cut.
    assert after and after[-1] >= got.video_pts[-1] - 60 and max(_gaps(got.audio_pts)) <= 60
    assert max(_peak(d) for p, d in zip(got.audio_pts, got.audio_data) if p >= switch["roomMs"] + 200) < 100
