"""RemoveSilence: speech bursts separated by silences of several lengths, recorded with
RemoveSilence 2: every burst is in the trimmed copy, every silence over 2 s is cut to its margins,
the copy is as long as the speech and its margins, and in Mode 02 its sound and picture stay in sync."""
from __future__ import annotations

import array
import fractions

import av
import pytest

from emulator.media import flat_frame, tone
from shared.media.frames import H264Frame
from shared.record.trim import MARGIN_MS, SILENT_THROUGHOUT, kept_ranges

QUIET = 150  # the open microphone of a quiet room: below the level that counts as speech
# (seconds, speaking?): silences of 0.6 (lead), 1.0, 3.0, 5.0, 1.4 and 0.6 (tail) s around five bursts.
PLAN = [(0.6, False), (1.0, True), (1.0, False), (1.0, True), (3.0, False), (1.0, True), (5.0, False),
        (1.0, True), (1.4, False), (1.0, True), (0.6, False)]
TOTAL_S = sum(s for s, _ in PLAN)
BURSTS = 5


def bursts() -> list[tuple[float, float]]:
    out, t = [], 0.0
    for seconds, speaking in PLAN:
        if speaking:
            out.append((t, t + seconds))
        t += seconds
    return out


def expected_kept_s(gap_s: float = 2.0) -> float:
    """Speech, the silences up to `gap_s` kept whole, and a margin each side of every cut."""
    kept, margin = 0.0, MARGIN_MS / 1000
    for seconds, speaking in PLAN:
        kept += seconds if speaking or seconds <= gap_s else (margin if seconds == PLAN[0][0] or
                                                              seconds == PLAN[-1][0] else 2 * margin)
    return kept


def speaking_at(t: float) -> bool:
    return any(a <= t < b for a, b in bursts())


def plan_units(fps: int = 25, speaking: bool = True) -> list[H264Frame]:
    """The anchor's camera: dark while silent, bright while speaking (a key frame each second);
    not `speaking`: dark and still throughout."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 120, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 1000)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.gop_size = fps
    ctx.max_b_frames = 0
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}
    packets = []
    for i in range(int(TOTAL_S * fps) + fps):
        frame = flat_frame(160, 120, 200 if speaking and speaking_at(i / fps) else 40)
        frame.pts, frame.time_base = i * 1000 // fps, fractions.Fraction(1, 1000)
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return [H264Frame(bytes(p), int(p.pts), bool(p.is_keyframe), int(p.dts)) for p in packets]


def publish_plan(anchor, units: list[H264Frame] | None, speaking: bool = True):
    loud_at = [loud for seconds, loud in PLAN for _ in range(int(round(seconds * 50)))]
    return anchor.send_paced([tone(i, amplitude=9000 if loud and speaking else QUIET)
                              for i, loud in enumerate(loud_at)], units)


def audio_runs(path, level: int = 3000, step_ms: int = 10) -> tuple[list[tuple[float, float]], float]:
    """(loud runs (from, to) s, seconds) of a file's audio, at `step_ms` resolution."""
    samples = array.array("h")
    to_s16 = av.AudioResampler(format="s16", layout="mono", rate=48000)
    with av.open(str(path)) as c:
        for frame in c.decode(audio=0):
            for pcm in to_s16.resample(frame):
                samples.frombytes(bytes(pcm.planes[0])[:pcm.samples * 2])
    step = 48 * step_ms
    runs: list[tuple[float, float]] = []
    start = None
    for n in range(0, len(samples) - step + 1, step):
        chunk = samples[n:n + step]
        loud = max(chunk) >= level
        t = n / 48000
        if loud and start is None:
            start = t
        elif not loud and start is not None:
            runs.append((start, t))
            start = None
    if start is not None:
        runs.append((start, len(samples) / 48000))
    return runs, len(samples) / 48000


def video_runs(path) -> list[tuple[float, float]]:
    """Bright runs (from, to) s of a file's pictures."""
    runs: list[tuple[float, float]] = []
    start = None
    last = 0.0
    with av.open(str(path)) as c:
        for picture in c.decode(video=0):
            t = float(picture.pts * picture.time_base)  # type: ignore[operator]
            bright = bytes(picture.planes[0])[picture.planes[0].line_size * 60 + 80] > 120
            if bright and start is None:
                start = t
            elif not bright and start is not None:
                runs.append((start, t))
                start = None
            last = t
    if start is not None:
        runs.append((start, last))
    return runs


# --- which stretches are kept ----------------------------------------------------------------------


def test_silences_longer_than_the_limit_are_cut_to_their_margins():
    active = [(600, 1600), (2600, 3600), (6600, 7600), (12600, 13600), (15000, 16000)]
    assert kept_ranges(active, 16600, 2000) == [[0, 3900], [6300, 7900], [12300, 16600]]
    assert kept_ranges([], 16600, 2000) == []  # silent throughout
    assert kept_ranges([(5000, 6000)], 20000, 2000) == [[4700, 6300]]  # long lead and tail cut


def test_in_a_video_file_a_kept_stretch_starts_at_the_key_frame_before_it():
    active = [(600, 1600), (6600, 7600)]
    keys = [0, 2000, 4000, 6000, 8000]
    kept = kept_ranges(active, 10000, 2000, keys=keys)
    assert kept == [[0, 1900], [6000, 7900]]
    assert all(a in keys for a, _ in kept)


# --- end to end ---------------------------------------------------------------------------------------


def test_mode_00_trimmed_copy_keeps_every_burst_and_cuts_long_silences(studio, tmp_path):
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", RemoveSilence=2))
    anchor = studio.anchor(room, "alice")
    publish_plan(anchor, None).wait(TOTAL_S + 10)
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    original, trimmed = result["Files"]
    assert original["Status"] == 1 and "Trimmed" not in original
    assert trimmed["Status"] == 1, trimmed
    assert trimmed["RecordFile"].endswith("_trimmed.mp3")
    assert trimmed["OriginalFile"] == original["RecordFile"]
    want = [[0, 3900], [6300, 7900], [12300, 16600]]
    assert len(trimmed["KeptMs"]) == 3
    for (a, b), (wa, wb) in zip(trimmed["KeptMs"], want):
        assert abs(a - wa) <= 80 and abs(b - wb) <= 80, trimmed["KeptMs"]

    path = studio.fetch(trimmed["RecordFile"], tmp_path / "trimmed.mp3")
    runs, seconds = audio_runs(path)
    assert len(runs) == BURSTS, runs  # every burst, none merged
    assert all(abs((b - a) - 1.0) <= 0.06 for a, b in runs), runs  # each whole
    quiet = [b2[0] - b1[1] for b1, b2 in zip(runs, runs[1:])]
    # silences of 1.0 and 1.4 s kept whole; those of 3 and 5 s cut to two margins each
    for got, want_s in zip(quiet, (1.0, 2 * MARGIN_MS / 1000, 2 * MARGIN_MS / 1000, 1.4)):
        assert abs(got - want_s) <= 0.08, quiet
    assert abs(seconds - expected_kept_s()) <= 0.5, (seconds, expected_kept_s())


def test_mode_02_trimmed_copy_stays_in_sync_and_a_silent_anchor_gets_none(studio, tmp_path):
    units = plan_units()
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="02", RemoveSilence=2))
    alice, bob = studio.anchor(room, "alice"), studio.anchor(room, "bob")
    threads = [publish_plan(alice, units), publish_plan(bob, plan_units(speaking=False), speaking=False)]
    for t in threads:
        t.wait(TOTAL_S + 10)
    studio.remove(room)
    result = run.wait()
    alice.leave()
    bob.leave()

    mine = {u: [e for e in result["Files"] if e["UserId"] == u] for u in ("alice", "bob")}
    [a_original, a_trimmed] = sorted(mine["alice"], key=lambda e: bool(e.get("Trimmed")))
    assert a_original["Status"] == 1 and a_trimmed["Status"] == 1, a_trimmed
    assert a_trimmed["RecordFile"].endswith("_trimmed.mp4")
    path = studio.fetch(a_trimmed["RecordFile"], tmp_path / "trimmed.mp4")
    runs, seconds = audio_runs(path)
    pictures = video_runs(path)
    assert len(runs) == BURSTS and len(pictures) == BURSTS, (runs, pictures)
    assert all(abs((b - a) - 1.0) <= 0.06 for a, b in runs), runs  # no speech lost at a cut
    for (a, _), (v, _) in zip(runs, pictures):
        assert abs(a - v) <= 0.045, (runs, pictures)  # A/V sync as in the original
    assert seconds < TOTAL_S - 5, seconds  # the 3 s and 5 s silences went (key frames each second)
    for a, _ in a_trimmed["KeptMs"]:
        assert a % 1000 <= 80, a_trimmed["KeptMs"]  # each kept stretch starts at a key frame

    # bob: the microphone open but quiet, the picture dark and still: no trimmed copy, said so
    [b_original, b_trimmed] = sorted(mine["bob"], key=lambda e: bool(e.get("Trimmed")))
    assert b_original["Status"] == 1
    assert b_trimmed["Status"] == 0 and b_trimmed["Message"] == SILENT_THROUGHOUT and b_trimmed["KeptMs"] == []


@pytest.mark.parametrize("moving,kept", [(True, [[0, 10_000]]), (False, [])])
def test_a_changing_picture_is_not_silence(moving, kept):
    from shared.record.trim import Trimmer

    from .conftest import h264_units

    t = Trimmer(2, True, True, lambda: None)
    units = h264_units(250, pictures="steps" if moving else "gray")
    for i in range(500):
        t.audio(tone(i, amplitude=QUIET).data, i * 960, 1)
    for u in units:
        t.video(u.data, u.pts_ms, 40, u.key, "h264")
    t.close(10_000)
    assert t.kept() == kept  # moving: nothing cut; still (and quiet): silent throughout


def test_an_anchor_who_never_falls_silent_gets_a_copy_made_inside_cos(studio, tmp_path):
    """Nothing to cut: the trimmed copy is the original, byte for byte (copied inside COS, not
    read back and remuxed), and KeptMs says the whole file was kept."""
    room = studio.new_room()
    run = studio.start(studio.event(room, mode="00", RemoveSilence=2))
    anchor = studio.anchor(room, "alice")
    anchor.send_paced([tone(i, amplitude=9000) for i in range(250)], None).wait(15)
    studio.remove(room)
    result = run.wait()
    anchor.leave()

    original, trimmed = result["Files"]
    assert trimmed["Status"] == 1 and trimmed["Trimmed"], trimmed
    [[start, end]] = trimmed["KeptMs"]
    assert start == 0 and abs(end - 5000) <= 100, trimmed["KeptMs"]
    assert abs(trimmed["TrimmedDuration"] - end / 1000) < 0.001
    copy = studio.fetch(trimmed["RecordFile"], tmp_path / "trimmed.mp3").read_bytes()
    assert copy == studio.fetch(original["RecordFile"], tmp_path / "original.mp3").read_bytes()


def test_a_hard_kill_still_gets_its_trimmed_copy_from_the_activity_the_run_saved(studio, monkeypatch, tmp_path):
    """SIGKILL after the long silences: the recovery makes the trimmed copy from the activity the
    run's heartbeat saved with its manifest, and keeps whole what came after the last save."""
    import time

    from shared.record.recovery import sweep

    from .test_segmented import _with_state

    store = _with_state(studio, monkeypatch, "state-trim/")
    room = studio.new_room()
    child = studio.start_child(studio.event(room, mode="00", RemoveSilence=2, SegmentDuration=2))
    anchor = studio.anchor(room, "alice")
    loud_at = [loud for seconds, loud in PLAN for _ in range(int(round(seconds * 50)))] + [True] * 16 * 50
    anchor.send_paced([tone(i, amplitude=9000 if loud else QUIET) for i, loud in enumerate(loud_at)], None)
    # The heartbeat (every 15 s) saves how far the activity goes: wait for a save past the last burst
    # after the 5 s silence (13.6 s), then for the segments after it to reach COS.
    deadline = time.monotonic() + 40
    seen = 0
    while seen < 13_700:
        assert time.monotonic() < deadline, f"the run's saved activity never passed 13.7 s ({seen} ms)"
        manifests = [store.load(rid) for rid in store.runs()]
        seen = max((f.trim.seen_ms for m in manifests if m for f in m.files if f.trim), default=0)
        time.sleep(0.2)
    time.sleep(3)
    child.proc.kill()
    child.proc.wait(10)
    anchor.wait(40)
    anchor.leave()

    [result] = sweep(store, now=time.time() + 120)
    assert result["Reason"] == "recovered"
    original, trimmed = result["Files"]
    assert original["Status"] == 1, original["Message"]
    assert trimmed["Status"] == 1 and trimmed["Trimmed"], trimmed
    assert trimmed["RecordFile"].endswith("_trimmed.mp3") and trimmed["OriginalFile"] == original["RecordFile"]
    for (a, b), (wa, wb) in zip(trimmed["KeptMs"], [[0, 3900], [6300, 7900]]):
        assert abs(a - wa) <= 80 and abs(b - wb) <= 80, trimmed["KeptMs"]
    assert abs(trimmed["KeptMs"][2][0] - 12300) <= 80, trimmed["KeptMs"]  # the 5 s silence cut too

    runs, seconds = audio_runs(studio.fetch(trimmed["RecordFile"], tmp_path / "trimmed.mp3"))
    assert all(abs((b - a) - 1.0) <= 0.06 for a, b in runs[:4]), runs  # the bursts, whole
    quiet = [b2[0] - b1[1] for b1, b2 in zip(runs, runs[1:4])]
    for got, want_s in zip(quiet, (1.0, 2 * MARGIN_MS / 1000, 2 * MARGIN_MS / 1000)):
        assert abs(got - want_s) <= 0.08, quiet
    cut_s = (3.0 - 2 * MARGIN_MS / 1000) + (5.0 - 2 * MARGIN_MS / 1000)  # the two long silences, less their margins
    assert abs(original["Duration"] - seconds - cut_s) <= 0.3, (seconds, original["Duration"])
