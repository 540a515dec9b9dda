"""The console in a real browser (headless Debian Chromium): work is started through the gateway
and the Cloud API with the real clients, and checked through the page."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from emulator.cloud import LocalCloud
from emulator.media import GRAY_LEVELS, gray_level
from emulator.trtc import signature as usersig_lib, usersig
from shared.cos.urls import parse_cos_url
from shared.room import EnterParams, PixelFrame, RemoteVideo, Role, RoomRef, VideoFormat
from shared.room.local import LocalRoom

from .conftest import APP, async_status, log_has, push_params, record_params, terminate, wait_for


def run_row(page: Any, reqid: str) -> Any:
    return page.locator(f'#runs tr[data-reqid="{reqid}"]')


def test_the_runs_page_shows_the_run_its_progress_advances_and_the_kill_button_aborts_it(
        page: Any, start: Any, gray_clip: Path, scf_api: Any, cloud: LocalCloud):
    reqid = start("push_stream", push_params(gray_clip, 401, repeatNum=-1))
    page.goto("#/runs")
    row = run_row(page, reqid)
    row.wait_for()
    assert row.locator("td").nth(0).inner_text() == "push_stream"
    assert row.get_attribute("data-status") == "RUNNING"

    row.locator("a").click()
    progress = page.locator("#progress")
    progress.wait_for(state="visible", timeout=20_000)
    first = float(progress.get_attribute("data-position"))
    wait_for(lambda: float(progress.get_attribute("data-position")) >= first + 1.5, 10, "the progress to advance")
    text = progress.inner_text()
    assert " of 12.0 s" in text and "fps" in text and "kbit/s" in text and "×" in text
    assert '"progress"' in page.locator("#log").inner_text()
    # The event is shown as run.json keeps it: the UserSig redacted.
    event = page.locator("#event").inner_text()
    assert '"userSig": "***"' in event and usersig("pusher") not in event

    page.locator("#terminate-kill").click()
    page.locator("#run-status .status.ABORTED").wait_for(timeout=15_000)
    assert async_status(scf_api, reqid) == "ABORTED"
    assert cloud.scf is not None and cloud.scf.get(reqid).terminated == "kill"
    assert page.locator("#terminate-kill").is_disabled()
    page.goto("#/runs")
    wait_for(lambda: run_row(page, reqid).get_attribute("data-status") == "ABORTED", 5, "the list to say ABORTED")


class _Referee:
    """A member of the room (the local backend, as a function uses it) noting which gray level the
    room is at, and when."""

    def __init__(self, info: dict[str, Any], room: int):
        host, port = info["roomAddress"].rsplit(":", 1)
        self.room = LocalRoom(host, int(port))
        self.room.enter(EnterParams(APP, RoomRef(room), "referee", usersig("referee"), role=Role.AUDIENCE,
                                    video_output=VideoFormat.YUV420P))
        self.seen: list[tuple[float, int]] = []  # (monotonic time, clip second modulo GRAY_LEVELS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            event = self.room.poll(0.2)
            if isinstance(event, RemoteVideo) and isinstance(event.frame, PixelFrame):
                f = event.frame
                luma = f.data[f.width * (f.height // 2) + f.width // 2]
                self.seen.append((time.monotonic(), level_index(luma)))

    def at(self, moment: float) -> int | None:
        before = [k for t, k in self.seen if t <= moment]
        return before[-1] if before else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.room.exit()


def level_index(luma: float) -> int:
    return min(range(GRAY_LEVELS), key=lambda k: abs(gray_level(k) - luma))


def canvas_luma(page: Any) -> float:
    """The watch canvas's center, as Chromium drew it, back in limited-range luma."""
    r, g, b = page.evaluate("""() => { const c = window.consoleWatch.canvas;
        return Array.from(c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data.slice(0, 3)); }""")
    return (r + g + b) / 3 * 219 / 255 + 16


def test_the_watch_page_shows_the_pushed_picture_less_than_a_second_behind_the_room(
        page: Any, start: Any, gray_clip: Path, info: dict[str, Any], scf_api: Any):
    referee = _Referee(info, 402)
    try:
        push = start("push_stream", push_params(gray_clip, 402, repeatNum=-1))
        wait_for(lambda: len(referee.seen) > 30, 20, "the push to reach the room")
        # The page joins mid-stream, between two key frames.
        page.goto("#/rooms")
        page.locator('[data-room="i:402"] tr[data-user="pusher"] a.watch').click()
        wait_for(lambda: page.evaluate("(window.consoleWatch && window.consoleWatch.stats.videoFrames) || 0") > 10, 10,
                 "the page to show pictures")
        stats = page.evaluate("window.consoleWatch.stats")
        assert stats["firstChunk"] == "key" and stats["errors"] == 0
        assert (stats["width"], stats["height"]) == (320, 240)

        samples = []
        for _ in range(16):
            page_level = level_index(canvas_luma(page))
            samples.append((time.monotonic(), page_level))
            time.sleep(0.2)  # the sampling interval: 16 samples over ~3 s of the watch
        wait_for(lambda: referee.seen and referee.seen[-1][0] > samples[-1][0] + 0.25, 5,
                 "the referee to see the room past the last sample")
        for moment, page_level in samples:
            # Where the room was just after the page was read (slack: the referee decodes in Python,
            # on a busy machine a little after the browser does; the page's own delay is checked below).
            room_level = referee.at(moment + 0.25)
            assert room_level is not None
            # The room's second minus the page's: 0, or 1 for less than a second after the room moved on.
            behind = (room_level - page_level) % GRAY_LEVELS
            assert behind in (0, 1), f"the page shows second {page_level} while the room is at {room_level}"
        shown = [level for _, level in samples]
        assert len(set(shown)) >= 2, f"the picture did not change: {shown}"
        stats = page.evaluate("window.consoleWatch.stats")
        assert stats["delayMs"] is not None and stats["delayMs"] < 1000
        assert stats["errors"] == 0
        # ... and the sound: the clip's tone (0.5 full scale, -9 dBFS) decoded in the page.
        assert stats["audioFrames"] > 50 and stats["audioLevel"] > -20

        # The push stops (TerminateAsyncEvent, gracefully): the page says the stream ended.
        terminate(scf_api, "push_stream", push, grace=True)
        page.locator('#watch-status[data-state="ended"]').wait_for(timeout=15_000)
        assert "left the room" in page.locator("#watch-status").inner_text()
    finally:
        referee.close()


def test_the_rooms_page_lists_pusher_and_recorder_and_its_buttons_end_both_and_the_recording_plays(
        page: Any, start: Any, gray_clip: Path, info: dict[str, Any], cloud: LocalCloud):
    push = start("push_stream", push_params(gray_clip, 403, repeatNum=-1))
    record = start("record_stream", record_params(info, 403))
    wait_for(lambda: log_has(cloud, record, "recording anchor"), 30, "the recorder to record the pusher")
    page.goto("#/rooms")
    room = page.locator('[data-room="i:403"]')
    pusher = room.locator('tr[data-user="pusher"]')
    recorder = room.locator('tr[data-user="recorder"]')
    pusher.wait_for()
    assert pusher.get_attribute("data-role") == "anchor"
    assert "audio + video" in pusher.inner_text()
    video = pusher.locator('[data-kind="video"]')
    video.wait_for()
    wait_for(lambda: "320×240" in video.inner_text() and " 0 fps" not in video.inner_text(), 5, "video figures")
    wait_for(lambda: "dBFS" in pusher.locator('[data-kind="audio"]').inner_text(), 5, "the audio level")
    assert recorder.get_attribute("data-role") == "audience"
    time.sleep(2.0)  # a few seconds of recording

    recorder.locator("button.remove").click()  # RemoveUser: the recording stops, uploads, reports
    recorder.wait_for(state="detached")
    assert cloud.scf is not None
    run = cloud.scf.get(record)
    assert run.done.wait(30)
    body = json.loads(run.result["body"]) if "body" in (run.result or {}) else run.result
    assert body["Reason"] == "removed" and body["Files"][0]["Status"] == 1, body
    key = parse_cos_url(body["Files"][0]["RecordFile"])[2]

    room.locator("button.dismiss").click()  # DismissRoom: the push leaves the room
    room.wait_for(state="detached")
    pushed = cloud.scf.get(push)
    assert pushed.done.wait(20)
    assert json.loads(pushed.result["body"])["reason"] == "dismissed"

    page.goto("#/recordings")
    row = page.locator(f'#buckets tr[data-key="{key}"]')
    row.wait_for()
    row.locator("button.play").click()
    player = page.locator("#playing")
    player.wait_for()
    wait_for(lambda: page.evaluate("document.querySelector('#playing').ended"), 20, "the recording to play to its end")
    played = page.evaluate("(() => { const v = document.querySelector('#playing'); "
                           "return {duration: v.duration, width: v.videoWidth, error: v.error}; })()")
    assert played["error"] is None and played["duration"] > 2.0 and played["width"] == 320


def test_the_start_form_fills_in_a_usersig_and_shows_the_request_id(
        page: Any, gray_clip: Path, scf_api: Any, cloud: LocalCloud):
    page.goto("#/start")
    page.locator("#push_stream-videoSrc").fill(str(gray_clip))
    page.locator("#push_stream-roomId").fill("404")
    page.locator("#push_stream-userId").fill("formpusher")
    wait_for(lambda: "formpusher" in page.locator("#push_stream-body").input_value(), 5, "the body to follow the form")
    body = wait_for(lambda: (lambda b: b if b["userId"] == "formpusher" and b["userSig"] else None)(
        json.loads(page.locator("#push_stream-body").input_value())), 5, "the UserSig for formpusher")
    assert usersig_lib.verify(body["userSig"], APP, cloud.config.sdk_secret_key, "formpusher").user_id == "formpusher"
    page.locator("#form-push_stream button.send").click()
    link = page.locator("#push_stream-answer a.reqid")
    link.wait_for()
    reqid = link.inner_text()
    try:
        assert "HTTP 200" in page.locator("#push_stream-answer").inner_text()
        assert "Async run task submitted" in page.locator("#push_stream-answer").inner_text()
        assert async_status(scf_api, reqid) in ("RUNNING", "FINISHED")
        link.click()
        page.locator("#run-head").wait_for()
        assert "push_stream" in page.locator("#run-head").inner_text()
    finally:
        assert cloud.scf is not None
        run = cloud.scf.get(reqid)
        if not run.done.is_set():
            cloud.scf.terminate("push_stream", reqid, grace=False)


def test_stale_pages_say_what_is_gone(page: Any):
    page.goto("#/runs/0d7c9f1e-0000-4000-8000-000000000000")
    assert "does not exist" in page.locator("#stale").inner_text()
    page.goto("#/watch?app=1400000001&room=999&str=0&user=nobody")
    status = page.locator('#watch-status[data-state="gone"]')
    status.wait_for()
    assert "not in room 999" in status.inner_text()


def test_a_growing_hls_playlist_in_cos_plays_live_in_the_recordings_page(page: Any, info: dict[str, Any],
                                                                         tmp_path: Path):
    """What a segmented recording leaves in COS while it runs: a playlist without an end that
    gains segments, then the end."""
    from emulator.clients import cos_client
    from emulator.media import make_hls

    hls = make_hls(tmp_path / "hls", duration=5.0, segment_s=1)
    cos = cos_client(info)
    bucket, prefix = info["cos"]["bucket"], "console-live"
    segments = sorted(hls.parent.glob("seg_*.ts"), key=lambda p: int(p.stem[4:]))
    for seg in segments:
        cos.put_object(Bucket=bucket, Key=f"{prefix}/{seg.name}", Body=seg.read_bytes())

    def playlist(n: int, end: bool) -> None:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
        for seg in segments[:n]:
            lines += ["#EXTINF:1.000000,", seg.name]
        cos.put_object(Bucket=bucket, Key=f"{prefix}/index.m3u8", Body="\n".join(lines + (["#EXT-X-ENDLIST"] if end else [])) + "\n")

    playlist(3, end=False)
    page.goto("#/recordings")
    page.locator(f'tr[data-key="{prefix}/index.m3u8"] button.play').click()
    player = "document.querySelector('#playing')"
    played = f"({player} && {player}.currentTime) || 0"  # 0 until the player is on the page
    # A live playlist starts near its live edge: three segments give the player room to start.
    wait_for(lambda: page.evaluate(played) > 0.3, 10, "the live playlist to play")
    assert page.evaluate(f"{player}.duration") == float("inf")  # live: no end known yet
    playlist(len(segments), end=True)  # the recording goes on, then ends
    wait_for(lambda: page.evaluate(played) > 2.5, 15, "the segments added later to play")
    assert page.evaluate(f"{player}.error") is None


def test_a_snapshot_shows_as_a_picture_and_a_slice_plays_in_the_recordings_page(page: Any, info: dict[str, Any]):
    """record_stream's SliceVideo / SliceAudio outputs, as they are in COS."""
    from emulator.clients import cos_client
    from emulator.media import h264_units, tone
    from shared.record.slices import encode_mp3, encode_wav
    from shared.record.snapshots import jpeg_of

    cos = cos_client(info)
    bucket, stem = info["cos"]["bucket"], "console-pieces/1400000001_8_alice_20260101T000000000Z"
    jpeg = jpeg_of([u.data for u in h264_units(1, pictures="gray")], "h264")
    assert jpeg is not None
    cos.put_object(Bucket=bucket, Key=f"{stem}/images/0.jpg", Body=jpeg)
    second = b"".join(tone(i).data for i in range(50))
    cos.put_object(Bucket=bucket, Key=f"{stem}/audio/0.wav", Body=encode_wav(second, 1))
    cos.put_object(Bucket=bucket, Key=f"{stem}/audio/1.mp3", Body=encode_mp3(second, 1))
    page.goto("#/recordings")
    row = page.locator(f'#buckets tr[data-key="{stem}/images/0.jpg"]')
    row.wait_for()
    wait_for(lambda: page.evaluate(f"document.querySelector('tr[data-key=\"{stem}/images/0.jpg\"] img.thumb')"
                                   ".naturalWidth") == 160, 10, "the thumbnail to load")
    row.locator("button.play").click()
    wait_for(lambda: page.evaluate("document.querySelector('img#playing') && "
                                   "document.querySelector('img#playing').naturalWidth") == 160, 10, "the snapshot")
    for name in ("0.wav", "1.mp3"):  # SliceAudioFormat's two
        page.locator(f'#buckets tr[data-key="{stem}/audio/{name}"] button.play').click()
        ended = ("document.querySelector('audio#playing') && "
                 f"document.querySelector('audio#playing').src.endsWith('{name}') && "
                 "document.querySelector('audio#playing').ended")
        wait_for(lambda: page.evaluate(ended), 10, f"slice {name} to play to its end")  # noqa: B023 (waited for here)
        assert page.evaluate("document.querySelector('audio#playing').error") is None
