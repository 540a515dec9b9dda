"""Issue 21: audio slices, SliceCallback and the parameters that ask for them (snapshots are in
test_snapshots.py, the trimmed copy in test_trim.py)."""
from __future__ import annotations

import array
import io
import time

import av
import pytest

from emulator.callbacks import CallbackReceiver
from emulator.media import tone
from shared.cos.urls import parse_cos_url
from shared.record.slices import TYPE_AUDIO, AudioSlicer, Piece, piece_key

from .conftest import probe
from .test_params import GOOD, refused


@pytest.mark.parametrize("field,value", [("SliceAudio", 14), ("SliceAudio", 61), ("SliceVideo", 4),
                                         ("SliceVideo", 61), ("RemoveSilence", 0), ("RemoveSilence", 61),
                                         ("SliceAudio", "x"), ("SliceVideo", True), ("SliceAudioFormat", "ogg"),
                                         ("SliceAudioFormat", 3)])
def test_an_out_of_range_slice_parameter_is_refused_naming_it(field, value):
    assert field in refused({**GOOD, field: value})


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "http://169.254.169.254/latest", "not a url",
                                 "ftp://example.com/x"])
def test_an_internal_or_unparsable_slice_callback_is_refused_naming_it(monkeypatch, url):
    monkeypatch.delenv("CALLBACK_ALLOWLIST", raising=False)
    message = refused({**GOOD, "SliceCallback": url})
    assert "SliceCallback" in message and "Callback:" not in message.replace("SliceCallback", "")


def test_slice_parameters_within_range_are_accepted_from_strings():
    from shared.contracts.record import RecordParams

    p = RecordParams.model_validate({**GOOD, "SliceAudio": "15", "SliceVideo": "60", "RemoveSilence": "1",
                                     "SliceCallback": "http://127.0.0.1:9/slices"})
    assert (p.SliceAudio, p.SliceVideo, p.RemoveSilence) == (15, 60, 1)
    assert RecordParams.model_validate(GOOD).RemoveSilence is None  # off by default
    assert RecordParams.model_validate(GOOD).SliceAudioFormat == "wav"
    assert RecordParams.model_validate({**GOOD, "SliceAudioFormat": "MP3"}).SliceAudioFormat == "mp3"


# --- audio slices, snapshots and SliceCallback end to end ---------------------------------------



# A slice decodes this much longer than its span: LAME's encoder delay and padding, at 16 kHz.
LAME_DELAY_S = 0.12


def publish_tones(anchor, plan: list[tuple[float, float]], units=None):
    """Send audio in real time: `plan` is [(seconds, hz)] (hz 0: nothing sent), with `units` alongside."""
    hz_at = [hz for seconds, hz in plan for _ in range(int(seconds * 50))]
    return anchor.send_paced([tone(i, hz=hz) if hz else None for i, hz in enumerate(hz_at)], units)


def decoded_pcm(data: bytes) -> tuple[array.array, float]:
    """(mono s16 samples, seconds) a slice (WAV or MP3) decodes to."""
    out = array.array("h")
    to_s16 = av.AudioResampler(format="s16", layout="mono", rate=48000)
    with av.open(io.BytesIO(data)) as c:
        for frame in c.decode(audio=0):
            for pcm in to_s16.resample(frame):
                out.frombytes(bytes(pcm.planes[0])[:pcm.samples * 2])
    return out, len(out) / 48000


def frequency(samples: array.array) -> float:
    """Hz by counting rising zero crossings (a clean sine)."""
    rising = sum(1 for a, b in zip(samples, samples[1:]) if a < 0 <= b)
    return rising / (len(samples) / 48000)


@pytest.mark.parametrize("fmt,longer_s", [("wav", 0.0), ("mp3", LAME_DELAY_S)])
def test_an_audio_slice_is_a_standalone_file_of_its_stretch(fmt, longer_s):
    made: list[Piece] = []
    slicer = AudioSlicer(15, "trtc/1_2_alice_20260101T000000000Z.mp3", "alice", made.append, fmt)
    at = 0
    for i in range(int(32.5 * 50)):  # 15 s at 440 Hz, 15 s at 880 Hz, 2.5 s at 1320 Hz
        hz = 440 * (1 + i // 750)
        pcm = tone(i, hz=hz).data
        slicer.audio(pcm, at, 1)
        at += len(pcm) // 2
    slicer.close(32_500)
    assert [(p.index, p.start_ms, p.end_ms) for p in made] == [(0, 0, 15000), (1, 15000, 30000), (2, 30000, 32500)]
    assert made[0].key == f"trtc/1_2_alice_20260101T000000000Z/audio/0.{fmt}"
    for piece, hz, seconds in zip(made, (440, 880, 1320), (15, 15, 2.5)):
        data = piece.make()
        assert data is not None
        samples, duration = decoded_pcm(data)
        assert seconds - 0.002 <= duration <= seconds + longer_s + 0.002, (piece.index, duration)  # resampled back to 48 kHz
        assert abs(frequency(samples[4800:-4800]) - hz) <= 5, (piece.index, frequency(samples))


def test_a_wav_slice_is_16_khz_16_bit_and_keeps_both_channels():
    import wave

    made: list[Piece] = []
    slicer = AudioSlicer(15, "trtc/f.mp4", "alice", made.append)
    for i in range(100):  # 2 s: left a 440 Hz tone, right silent
        left = array.array("h", tone(i, hz=440).data)
        both = array.array("h", [0]) * (2 * len(left))
        both[0::2] = left
        slicer.audio(both.tobytes(), i * 960, 2)
    slicer.close(2000)
    [piece] = made
    assert piece.content_type == "audio/wav"
    with wave.open(io.BytesIO(piece.make())) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 16000, 32000)
        frames = array.array("h", w.readframes(w.getnframes()))
    assert max(frames[0::2]) > 8000 and max(map(abs, frames[1::2])) < 50


@pytest.fixture
def slice_receiver():
    receiver = CallbackReceiver().start()
    yield receiver
    receiver.stop()


def test_two_anchors_get_their_own_slices_and_snapshots_announced_in_order(studio, video_units, slice_receiver,
                                                                             tmp_path):
    """Mode 02, SliceAudio 15 + SliceVideo 5 + SliceCallback: each anchor's slices hold its own tone,
    every piece is in COS at its key and POSTed once, per anchor in order."""
    from .conftest import h264_units

    units = h264_units(17 * 25 + 25, pictures="gray")
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02", SliceAudio=15, SliceVideo=5, SliceCallback=slice_receiver.url))
    alice, bob = studio.anchor(room, "alice"), studio.anchor(room, "bob")  # slices in WAV, the default
    threads = [publish_tones(alice, [(16.5, 440)], units), publish_tones(bob, [(16.5, 880)], units)]
    for t in threads:
        t.wait(30)
    studio.remove(room)
    result = run.wait()
    alice.leave()
    bob.leave()

    assert result["Slices"]["Audio"] == 4 and result["Slices"]["Images"] == 8, result["Slices"]
    posts = [r.json for r in slice_receiver.wait_for(12, timeout=20)]
    for entry, hz in zip(sorted(result["Files"], key=lambda e: e["UserId"]), (440, 880)):
        user = entry["UserId"]
        _, _, key = parse_cos_url(entry["RecordFile"])
        mine = [p for p in posts if p["UserId"] == user]
        assert [(p["Type"], p["Index"]) for p in mine if p["Type"] == "image"] == [("image", i) for i in range(4)]
        audio = [p for p in mine if p["Type"] == TYPE_AUDIO]
        assert [(p["Index"], p["StartMs"]) for p in audio] == [(0, 0), (1, 15000)]
        assert set(mine[0]) == {"RequestId", "SdkAppId", "RoomId", "StrRoomId", "UserId", "Type", "Index",
                                "StartMs", "EndMs", "Url", "CallbackId"}
        assert len({p["CallbackId"] for p in mine}) == len(mine)  # one id per piece, for a receiver's dedupe
        assert mine[0]["RoomId"] == room and mine[0]["SdkAppId"] == studio.rooms.sdk_app_id
        first = audio[0]
        assert first["Url"].endswith(piece_key(key, TYPE_AUDIO, 0, "wav")) and first["EndMs"] == 15000
        data = studio.fetch(first["Url"], tmp_path / f"{user}.wav").read_bytes()
        samples, duration = decoded_pcm(data)
        assert abs(duration - 15) <= 0.002
        assert abs(frequency(samples[4800:-4800]) - hz) <= 5
        assert min(probe(tmp_path / f"{user}.wav").audio_rms[1:-1]) > 1000  # the tone throughout


def test_a_slice_callback_down_then_up_still_gets_every_piece_in_order(studio, slice_receiver, video_units,
                                                                      monkeypatch):
    from shared.record.callback import sign_body

    monkeypatch.setenv("CALLBACK_SIGN_KEY", "slice-sign-key-0123456789")
    slice_receiver.down()
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="01", SliceVideo=5, SliceCallback=slice_receiver.url))
    anchor = studio.anchor(room, "alice").publish(7.0, units=video_units[:175]).wait()
    slice_receiver.up()
    studio.remove(room)
    result = run.wait()
    anchor.leave()
    received = slice_receiver.wait_for(2, timeout=20)
    posts = [r.json for r in received]
    assert [(p["Type"], p["Index"]) for p in posts] == [("image", 0), ("image", 1)]
    for r in received:  # signed as the result callback is
        assert r.headers["Sign"] == sign_body("slice-sign-key-0123456789", r.body)
    assert result["Slices"]["Announced"] == 2 and result["Slices"]["NotAnnounced"] == 0


def test_snapshots_wait_while_cos_refuses_them_and_land_when_it_is_back(studio, video_units):
    studio.cos.fail_next(6, when="/images/")  # more than one PUT's own retries: the outage path
    room = studio.new_room()
    result = studio.record(studio.event(room, mode="01", SliceVideo=5), ["alice"], 7.0, units=video_units[:175])
    assert result["Files"][0]["Status"] == 1
    assert result["Slices"] == {"Audio": 0, "Images": 2}, result["Slices"]


def test_a_snapshot_cos_refuses_for_good_is_reported_and_the_recording_is_not_lost(studio, video_units):
    studio.cos.fail_next(50, status=403, code="AccessDenied", message="Access Denied.", when="/images/")
    room = studio.new_room()
    result = studio.record(studio.event(room, mode="01", SliceVideo=5), ["alice"], 7.0, units=video_units[:175])
    studio.cos.clear_faults()
    assert result["Files"][0]["Status"] == 1
    failed = result["Slices"]["Failed"]
    assert [(f["UserId"], f["Type"], f["Index"]) for f in failed] == [("alice", "image", 0), ("alice", "image", 1)]
    assert all("AccessDenied" in f["Message"] or "Access Denied" in f["Message"] for f in failed), failed


def test_a_hard_kill_mid_slice_is_recovered_with_what_reached_cos(studio, monkeypatch, video_units):
    """SIGKILL while an audio slice is open and two snapshots are in COS: the recovery finishes the
    file and reports the snapshots (Reason recovered); the open slice is lost with the run."""
    from shared.record.recovery import sweep

    from .test_segmented import _with_state

    store = _with_state(studio, monkeypatch, "state-slices/")
    room = studio.new_room()
    child = studio.start_child(studio.event(room, mode="02", SliceVideo=5, SliceAudio=15, SegmentDuration=2))
    anchor = studio.anchor(room, "alice").publish(9.0, units=video_units)
    deadline = time.monotonic() + 20
    images: list[str] = []
    while len(images) < 2:
        assert time.monotonic() < deadline, "no snapshots reached COS"
        images = [k for k in studio.cos.list_keys(f"trtc/test/{studio.rooms.sdk_app_id}_{room}_alice_")
                  if "/images/" in k]
        time.sleep(0.1)
    child.proc.kill()
    child.proc.wait(10)
    anchor.wait()
    anchor.leave()

    [result] = sweep(store, now=time.time() + 120)
    assert result["Reason"] == "recovered"
    [entry] = result["Files"]
    assert entry["Status"] == 1 and entry["UserId"] == "alice", entry["Message"]
    assert result["Slices"]["Images"] >= 2 and result["Slices"]["Audio"] == 0, result["Slices"]
    assert studio.callback.wait_for(1)[0].json["Slices"] == result["Slices"]
