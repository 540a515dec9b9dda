"""A push recorded end to end: push_stream plays a tone clip made to loop into the room, record_stream
records it, and the file holds one unbroken tone (a click or a dropout is what a listener hears,
and what a jump in the audio timeline anywhere between the two makes)."""
from __future__ import annotations

import array
import threading

import av
import pytest

from emulator.media import discontinuities
from functions.push_stream.index import main_handler as push_handler
from shared.room import AUDIO_SAMPLE_RATE
from tests.media_fixtures import Clips


@pytest.fixture(scope="session")
def loop_clip(tmp_path_factory: pytest.TempPathFactory):
    return Clips(tmp_path_factory.mktemp("record-clips")).get("tone440_loop.mp4")


def _pcm(path) -> list[int]:
    out = array.array("h")
    to_s16 = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            for pcm in to_s16.resample(frame):
                out.frombytes(bytes(pcm.planes[0])[:pcm.samples * 2])
    return list(out)


@pytest.mark.parametrize("mode", ["00", "02"])
def test_a_pushed_loop_is_recorded_as_one_unbroken_tone(studio, loop_clip, monkeypatch, tmp_path, mode):
    monkeypatch.setenv("PACING_SPEED", "4")
    room = studio.new_room()
    run = studio.start(studio.event(room, mode=mode))
    params = {"videoSrc": str(loop_clip), "sdkAppId": studio.rooms.sdk_app_id, "roomId": room,
              "userId": "pusher", "userSig": studio.rooms.usersig("pusher"), "repeatNum": 2}
    pushed: dict = {}
    push = threading.Thread(target=lambda: pushed.update(push_handler(params, {"request_id": "req-loop"})))
    push.start()
    push.join(60)
    assert not push.is_alive() and pushed["status"] == "completed", pushed
    studio.remove(room)
    result = run.wait()
    [entry] = [f for f in result["Files"] if f["UserId"] == "pusher"]
    assert entry["Status"] == 1, entry
    local = studio.fetch(entry["RecordFile"], tmp_path / f"got.{'mp3' if mode == '00' else 'mp4'}")
    pcm = _pcm(local)
    assert len(pcm) / AUDIO_SAMPLE_RATE == pytest.approx(9.0, abs=0.15)
    assert discontinuities(pcm, 440) == []
