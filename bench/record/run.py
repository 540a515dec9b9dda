"""record_stream benchmark: figures side by side with their anchor, in one run (a few minutes).

    .venv/bin/python bench/record/run.py [--seconds 120] [--long-minutes 120] [--anchors 25] [--only abcde]
    (./dev bench runs it; needs Debian's `ffmpeg`)

(a) CPU-seconds per recorded media-second, per Mode, against Debian's `ffmpeg` doing the same job on
    the same input: 48 kHz mono PCM and 640x360 25 fps H.264 (Annex-B, no B-frames, ~600 kbit/s).
    Mode 00: MP3 64 kbit/s (ours: lameenc; ffmpeg: libmp3lame); 01: H.264 stream copy into an MP4;
    02: copy + AAC 64 kbit/s. Ours is `AnchorRecording` fed the frames from memory at full speed
    (what the room hands the recorder, without the room), segmenting as a recording does and joining
    the segments at the end, time.process_time around feed + close; ffmpeg's is its whole process
    (rusage of the child), reading the same media from raw files in the page cache. Target: Mode 00
    at most 1.0x ffmpeg, the copy modes 1.1x.
(b) Memory of one Mode 02 recording of 2 hours, fed faster than real time (full speed) in a child
    process, its segments taken away as they close (as the uploader does): VmRSS each media-minute,
    printed every 10 minutes; after the first minute it must stay within +-10 MB of that minute's.
(c) Stop-to-callback latency, upload excluded: the real handler recording an anchor in a local room
    (emulator rooms, local COS, a local callback receiver); RemoveUser through TrtcClient, then the
    time until the callback arrives, minus the upload time the recorder logs.
(d) One recorder, 25 anchors, Mode 02, 720p (1280x720 25 fps ~1.5 Mbit/s H.264 + Opus audio), for a
    minute in real time through the emulator's room and COS, the recorder in a child process: its
    CPU per anchor (rusage), video frames lost (sent vs in the files; target 0), and each segment's
    upload lag, from its close to its arrival in COS (p99 < SegmentDuration).
(e) Issue 21's extras on one Mode 02 anchor (the input of (a)): CPU-seconds per media-second of the
    plain recording beside the same with SliceVideo 5 (the snapshot's decode from its key frame +
    JPEG), SliceAudio 15 (the slices: WAV, the default, and MP3) and RemoveSilence 2 (the activity
    tap, then the trimmed copy remuxed from the whole file: the worst case, a file where a single
    silence is cut; a file where nothing is cut is copied inside COS, no remux); the delivery's work
    is done in the same process, minus the PUT. Targets: each slice kind adds at most 20 %,
    RemoveSilence at most 10 %.
"""
from __future__ import annotations

import argparse
import fractions
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from bench import measure  # noqa: E402
from emulator.media import pcm_20ms  # noqa: E402
from shared.media.pixels import to_av_frame  # noqa: E402
from shared.room import AUDIO_SAMPLE_RATE, AudioFrame, H264Frame, PixelFrame  # noqa: E402

TARGET_CPU_RATIO = {"00": 1.0, "01": 1.1, "02": 1.1}
TARGET_RSS_DRIFT_MB = 10.0
TARGET_CORE_SHARE = 0.05  # of one core per stream, for the modes that copy video
TARGET_STOP_TO_CALLBACK_S = 1.0
FPS = 25
WIDTH, HEIGHT = 640, 360
VIDEO_BITRATE = 600_000
GOP_S = 2
SOURCE_S = 20  # encoded once, then looped (at a key frame) for longer runs


# --- input ---------------------------------------------------------------------------------------


def make_units(seconds: int = SOURCE_S, width: int = WIDTH, height: int = HEIGHT,
               bitrate: int = VIDEO_BITRATE) -> list[H264Frame]:
    """H.264 access units of a moving pattern, as the room hands them over (Annex-B, SPS/PPS on keys)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, 1000)
    ctx.framerate = fractions.Fraction(FPS, 1)
    ctx.gop_size = FPS * GOP_S
    ctx.max_b_frames = 0
    ctx.bit_rate = bitrate
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "repeat-headers": "1"}
    units: list[H264Frame] = []
    row = bytes(range(256)) * (width // 256 + 2)
    chroma = bytes([128]) * (2 * (width // 2) * (height // 2))
    noisy = height // 8  # rows of noise at the bottom: something for the rate control to spend bits on
    for i in range(seconds * FPS):
        rows = [row[(i * 3 + r) % 256:(i * 3 + r) % 256 + width] for r in range(height - noisy)]
        picture = PixelFrame(b"".join(rows) + os.urandom(width * noisy) + chroma, width, height, 0)
        frame = to_av_frame(picture)
        frame.pts = i * 1000 // FPS
        units.extend(H264Frame(bytes(p), int(p.pts), bool(p.is_keyframe), int(p.dts)) for p in ctx.encode(frame))
    units.extend(H264Frame(bytes(p), int(p.pts), bool(p.is_keyframe), int(p.dts)) for p in ctx.encode(None))
    return units


def tone_second() -> list[bytes]:
    """One second of a 440 Hz tone as fifty 20 ms PCM frames (repeated: a whole number of periods)."""
    return [pcm_20ms(i) for i in range(50)]


def stream(units: list[H264Frame], tone: list[bytes], seconds: int, audio: bool, video: bool,
           loop_s: int = SOURCE_S):
    """("a"|"v", frame) in arrival order for `seconds` of media, looping the source (`loop_s` long)."""
    loop_ms = loop_s * 1000
    v = 0
    for i in range(seconds * 50):
        t = i * 20
        if audio:
            yield "a", AudioFrame(tone[i % 50], t)
        while video:
            n, k = divmod(v, len(units))
            u = units[k]
            pts = u.pts_ms + n * loop_ms
            if pts > t:
                break
            yield "v", H264Frame(u.data, pts, u.key, pts)
            v += 1


# --- (a) CPU against ffmpeg ----------------------------------------------------------------------


def ours_cpu(mode: str, units, tone, seconds: int, workdir: Path) -> tuple[float, float]:
    from shared.record.writer import AnchorRecording

    out = workdir / f"ours-{mode}"
    out.mkdir()
    rec = AnchorRecording("bench", mode, out)
    frames = list(stream(units, tone, seconds, audio=mode != "01", video=mode != "00"))
    cpu0 = time.process_time()
    for kind, frame in frames:
        if kind == "a":
            rec.add_audio(frame)
        else:
            rec.add_video(frame)
    files = rec.close()
    cpu = time.process_time() - cpu0
    assert len(files) == 1 and files[0].error is None, files
    duration = files[0].duration_s
    shutil.rmtree(out)
    return cpu, duration


def codec_only_cpu(tone, seconds: int) -> float:
    """lameenc fed directly (the PCM in 20 ms frames, no writer): the floor for Mode 00."""
    from shared.record.mp3 import Mp3Encoder

    encoder = Mp3Encoder(1)
    cpu0 = time.process_time()
    for i in range(seconds * 50):
        encoder.encode(tone[i % 50])
    encoder.flush()
    return time.process_time() - cpu0


def ffmpeg_cpu(mode: str, units, tone, seconds: int, workdir: Path) -> float:
    pcm = workdir / "in.pcm"
    h264 = workdir / "in.h264"
    if not pcm.exists():
        with open(pcm, "wb") as f:
            for i in range(seconds * 50):
                f.write(tone[i % 50])
        with open(h264, "wb") as f:
            for _kind, frame in stream(units, tone, seconds, audio=False, video=True):
                f.write(frame.data)
    audio_in = ["-f", "s16le", "-ar", str(AUDIO_SAMPLE_RATE), "-ac", "1", "-i", str(pcm)]
    video_in = ["-f", "h264", "-framerate", str(FPS), "-i", str(h264)]
    out = workdir / f"ffmpeg-{mode}.{'mp3' if mode == '00' else 'mp4'}"
    if mode == "00":
        args = audio_in + ["-c:a", "libmp3lame", "-b:a", "64k"]
    elif mode == "01":
        args = video_in + ["-c:v", "copy", "-movflags", "+faststart"]
    else:
        args = video_in + audio_in + ["-c:v", "copy", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(out)], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.unlink()
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_cpu(seconds: int) -> list[str]:
    units, tone = make_units(), tone_second()
    lines = [f"(a) CPU-seconds per recorded media-second, {seconds} s of media per run, ours vs Debian ffmpeg "
             f"{ffmpeg_version()}"]
    lines.append(f"    {'mode':<28} {'ours':>10} {'ffmpeg':>10} {'ratio':>7} {'target':>8}  {'core share':>10}")
    with tempfile.TemporaryDirectory(prefix="bench-record-") as tmp:
        workdir = Path(tmp)
        ours_cpu("00", units, tone, 5, workdir)  # warm-up: first-use costs of PyAV and the codecs
        for mode, name in (("00", "00 MP3 (lameenc)"), ("01", "01 MP4 (H.264 copy)"), ("02", "02 MP4 (copy + AAC)")):
            ours, duration = min((ours_cpu(mode, units, tone, seconds, workdir) for _ in range(2)), key=lambda r: r[0])
            theirs = min(ffmpeg_cpu(mode, units, tone, seconds, workdir) for _ in range(2))
            ratio = ours / theirs if theirs > 0 else float("inf")
            share = ours / duration
            target = TARGET_CPU_RATIO[mode]
            ok = "ok" if ratio <= target else "OVER"
            core = f"{share * 100:.2f} %" + ("" if mode == "00" else (" ok" if share < TARGET_CORE_SHARE else " OVER"))
            lines.append(f"    {name:<28} {ours / duration:>10.5f} {theirs / seconds:>10.5f} {ratio:>7.2f} "
                         f"{'<=' + str(target):>8} {ok:>4}  {core:>10}")
            if mode == "00":
                floor = min(codec_only_cpu(tone, seconds) for _ in range(2))
                lines.append(f"    {'   lameenc alone':<28} {floor / seconds:>10.5f} {theirs / seconds:>10.5f} "
                             f"{floor / theirs:>7.2f}   (the encoder itself; segmenter + writer on it: "
                             f"x{ours / duration / (floor / seconds):.2f})")
    return lines


# --- (e) slices, snapshots, trimmed copy -----------------------------------------------------------

TARGET_EXTRA = {"SliceVideo 5": 0.20, "SliceAudio 15": 0.20, "SliceAudio 15 mp3": 0.20, "RemoveSilence 2": 0.10}


def extras_cpu(extra: str | None, units, tone, seconds: int, workdir: Path) -> tuple[float, float]:
    """CPU of one Mode 02 anchor with `extra` (a TARGET_EXTRA name, None: plain) for `seconds`."""
    from shared.record.slices import AudioSlicer, Piece
    from shared.record.snapshots import Snapshotter
    from shared.record.trim import Trimmer, trim_mp4
    from shared.record.writer import AnchorRecording

    out = workdir / f"extras-{(extra or 'plain').replace(' ', '')}"
    out.mkdir()
    trimmers: list[Trimmer] = []

    def submit(piece: Piece) -> None:
        piece.make()  # what the delivery worker does with it, minus the PUT

    def tap_for(path: Path, ask):
        if extra == "SliceVideo 5":
            return Snapshotter(5, "bench/f.mp4", "bench", submit)
        if extra == "SliceAudio 15":
            return AudioSlicer(15, "bench/f.mp4", "bench", submit)  # WAV, the default
        if extra == "SliceAudio 15 mp3":
            return AudioSlicer(15, "bench/f.mp4", "bench", submit, "mp3")
        if extra == "RemoveSilence 2":
            trimmers.append(Trimmer(2, True, True, ask))
            return trimmers[-1]
        return None

    rec = AnchorRecording("bench", "02", out, tap_for=tap_for)
    frames = list(stream(units, tone, seconds, audio=True, video=True))
    cpu0 = time.process_time()
    for kind, frame in frames:
        if kind == "a":
            rec.add_audio(frame)
        else:
            rec.add_video(frame)
    files = rec.close()
    for trimmer, f in zip(trimmers, files):
        trim_mp4(f.path, out / "trimmed.mp4", trimmer.kept())
    cpu = time.process_time() - cpu0
    duration = files[0].duration_s
    shutil.rmtree(out)
    return cpu, duration


EXTRAS_ROUNDS = 4  # each configuration once a round, in turn; its least CPU over the rounds


def bench_extras(seconds: int) -> list[str]:
    """Plain and each extra measured in turn, round after round (a drift of the machine's speed
    touches them all alike), each figure the least of its rounds."""
    units, tone = make_units(), tone_second()
    lines = [f"(e) issue 21's extras on one Mode 02 anchor ({WIDTH}x{HEIGHT}), CPU-seconds per media-second, "
             f"{seconds} s of media per run, the least of {EXTRAS_ROUNDS} interleaved rounds"]
    configs: list[str | None] = [None, *TARGET_EXTRA]
    best: dict[str | None, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-record-e-") as tmp:
        workdir = Path(tmp)
        extras_cpu(None, units, tone, 5, workdir)  # warm-up
        for _ in range(EXTRAS_ROUNDS):
            for extra in configs:
                cpu, duration = extras_cpu(extra, units, tone, seconds, workdir)
                best[extra] = min(best.get(extra, float("inf")), cpu / duration)
    plain = best[None]
    lines.append(f"    {'plain Mode 02':<20} {plain:>10.5f}")
    for extra, target in TARGET_EXTRA.items():
        added = best[extra] / plain - 1
        lines.append(f"    {'+ ' + extra:<20} {best[extra]:>10.5f}  {added * 100:+6.1f} %  target <= +{target * 100:.0f} % "
                     f"{'ok' if added <= target else 'OVER'}")
    return lines


def ffmpeg_version() -> str:
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
        return first.split()[2]
    except Exception:
        return "?"


# --- (b) RSS over a long recording ----------------------------------------------------------------


def rss_child(minutes: int) -> None:
    """Mode 02 for `minutes` of media at full speed, each segment removed as it closes (what the
    uploader does once it is in COS); prints JSON with VmRSS each media-minute."""
    from shared.record.writer import AnchorRecording

    units, tone = make_units(), tone_second()
    segments = {"count": 0, "bytes": 0}

    def on_open(user_id: str, part: int, start: float, path: Path):
        def taken(info) -> None:
            segments["count"] += 1
            segments["bytes"] += info.bytes
            info.path.unlink()
        return taken

    with tempfile.TemporaryDirectory(prefix="bench-record-rss-") as tmp:
        rec = AnchorRecording("bench", "02", Path(tmp), on_open=on_open)
        samples = []
        started = time.monotonic()
        cpu0 = time.process_time()
        next_sample = 0
        for kind, frame in stream(units, tone, minutes * 60, audio=True, video=True):
            if kind == "a":
                rec.add_audio(frame)
                if frame.pts_ms >= next_sample:
                    samples.append((frame.pts_ms // 60000, measure.own_rss_mb()))
                    next_sample += 60_000
            else:
                rec.add_video(frame)
        closing = time.monotonic()
        files = rec.close()
        closed = time.monotonic()
        print(json.dumps({"samples": samples, "end_rss_mb": measure.own_rss_mb(),
                          "peak_mb": measure.own_peak_rss_mb(), "wall_s": closed - started,
                          "cpu_s": time.process_time() - cpu0, "close_s": closed - closing,
                          "segments": segments["count"], "media_mb": segments["bytes"] / (1 << 20),
                          "duration_s": files[0].duration_s}), flush=True)


def bench_rss(minutes: int) -> list[str]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--rss-child", str(minutes)],
                         capture_output=True, text=True, timeout=3600, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    samples = r["samples"]
    base = next((mb for m, mb in samples if m >= 1), samples[-1][1])
    after = [mb for m, mb in samples if m >= 1]
    drift = max(abs(mb - base) for mb in after) if after else 0.0
    curve = ", ".join(f"{m} min {mb:.0f}" for m, mb in samples if m % 10 == 0 or m == 1)
    ok = "ok" if drift <= TARGET_RSS_DRIFT_MB else "OVER"
    return [
        f"(b) RSS of one Mode 02 recording of {minutes} min fed at full speed "
        f"({r['duration_s'] / r['wall_s']:.0f}x real time; {r['segments']} segments, {r['media_mb']:.0f} MB, "
        f"taken away as they closed)",
        f"    VmRSS MB: {curve}; at the end {r['end_rss_mb']:.0f}, peak (VmHWM) {r['peak_mb']:.0f}",
        f"    after the first minute: {min(after):.1f}..{max(after):.1f} MB, at most {drift:.1f} MB from the "
        f"1-minute {base:.1f} MB   target +-{TARGET_RSS_DRIFT_MB:.0f} MB  {ok}",
        f"    closing the file: {r['close_s'] * 1000:.0f} ms; CPU {r['cpu_s'] / r['duration_s'] * 100:.2f} % of a "
        f"core per stream",
    ]


# --- (c) stop to callback --------------------------------------------------------------------------


class _Capture:
    """Keeps the recorder's log records (instead of printing them) to read its upload time."""

    def __init__(self) -> None:
        import logging

        self.records: list[dict] = []
        capture = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                capture.records.append({"msg": record.getMessage(), **(getattr(record, "fields", None) or {})})

        base = logging.getLogger("trtc_media")
        base.addHandler(Handler())
        base.setLevel(logging.INFO)
        base.propagate = False

    def last(self, msg: str) -> dict:
        return [r for r in self.records if r["msg"] == msg][-1]


def bench_latency(runs: int = 3) -> list[str]:
    capture = _Capture()  # before any logger is made, so the JSON lines stay off the terminal
    from tencentcloud.trtc.v20190722 import models

    from emulator.callbacks import CallbackReceiver
    from emulator.cos import CosService
    from emulator.trtc import RoomService
    from functions.record_stream.index import main_handler
    from shared.room import NO_MEDIA, EnterParams, Role, RoomRef, VideoFormat
    from shared.room.local import LocalRoom

    units, tone = make_units(4), tone_second()
    lat: list[float] = []
    uploads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-record-cb-") as tmp, \
            RoomService(1400000001, "bench-sdk-secret-key-0123456789abcdef") as rooms, \
            CosService(state_dir=str(Path(tmp) / "cos")) as cos:
        receiver = CallbackReceiver(path="/cb").start()
        os.environ.update({**rooms.env, "COS_ENDPOINT": cos.endpoint_url, "CFS_PATH": str(Path(tmp) / "cfs"),
                           "CALLBACK_ALLOWLIST": "127.0.0.0/8"})
        client = rooms.trtc_client()
        host, _, port = rooms.address.rpartition(":")
        for n in range(runs):
            room_id = 900 + n
            params = {"SdkAppId": rooms.sdk_app_id, "RoomId": room_id, "UserId": "recorder",
                      "UserSig": rooms.usersig("recorder"), "Mode": "02", "Callback": receiver.url,
                      "CosConfig": {"SecretId": cos.secret_id, "SecretKey": cos.secret_key, "Region": cos.region,
                                    "Bucket": cos.bucket, "Path": "/bench"}}
            result: dict = {}
            t = threading.Thread(target=lambda result=result, params=params, n=n:  # bound: a thread per run
                                 result.update(main_handler(params, {"request_id": f"bench-{n}"})))
            t.start()
            while "recorder" not in rooms.rooms.user_ids(rooms.sdk_app_id, room_id):
                time.sleep(0.01)
            anchor = LocalRoom(host, int(port))
            anchor.enter(EnterParams(rooms.sdk_app_id, RoomRef(room_id), "alice", rooms.usersig("alice"),
                                     role=Role.ANCHOR, video_input=VideoFormat.H264, receive=NO_MEDIA))
            anchor.start_audio(1)
            anchor.start_video()
            start = time.monotonic()
            frames = stream(units, tone, 3, audio=True, video=True)
            for kind, frame in frames:  # 3 s in real time
                if kind == "a":
                    delay = start + frame.pts_ms / 1000 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    anchor.send_audio(frame)
                else:
                    anchor.send_video(frame)
            req = models.RemoveUserRequest()
            req.SdkAppId, req.RoomId, req.UserIds = rooms.sdk_app_id, room_id, ["recorder"]
            removed = time.monotonic()
            client.RemoveUser(req)
            got = receiver.wait_for(n + 1, 30)[-1]
            arrived, body = got.arrived_at, got.json
            t.join(30)
            anchor.exit()
            assert body["Files"] and body["Files"][0]["Status"] == 1, body
            upload_s = capture.last("recording stopped")["upload_s"]
            uploads.append(upload_s)
            lat.append(arrived - removed - upload_s)
        receiver.stop()
    ok = "ok" if max(lat) <= TARGET_STOP_TO_CALLBACK_S else "OVER"
    return [f"(c) stop-to-callback latency without the upload, Mode 02, 3 s recordings, {runs} runs "
            f"(RemoveUser sent -> callback received, minus the logged upload time)",
            f"    {', '.join(f'{x * 1000:.0f} ms' for x in lat)}   worst {max(lat) * 1000:.0f} ms   "
            f"target <= {TARGET_STOP_TO_CALLBACK_S * 1000:.0f} ms  {ok}   (uploads took "
            f"{', '.join(f'{u * 1000:.0f} ms' for u in uploads)})"]


# --- (d) one recorder, many anchors ----------------------------------------------------------------

ROOM_W, ROOM_H, ROOM_BITRATE = 1280, 720, 1_500_000
ROOM_LOOP_S = 10


def recorder_child(event_json: str) -> None:
    """The real handler in this process (the recorder alone, so that its CPU can be read)."""
    from functions.record_stream.index import main_handler

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    result = main_handler(json.loads(event_json), {"request_id": f"bench-room-{os.getpid()}",
                                                   "time_limit_in_ms": 3_600_000})
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"result": result, "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
                      "max_rss_mb": measure.own_peak_rss_mb()}), flush=True)


def _opus_second() -> list[bytes]:
    """One second of the tone as fifty Opus packets, encoded once: the anchors send these as they
    are (a room carries Opus), so that 25 publishers cost this process little."""
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = AUDIO_SAMPLE_RATE, "mono", "s16", 48_000
    ctx.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
    ctx.open()
    packets: list[bytes] = []
    for n, pcm in enumerate(tone_second() * 2):
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm)
        frame.sample_rate, frame.pts = AUDIO_SAMPLE_RATE, n * (len(pcm) // 2)
        packets += [bytes(p) for p in ctx.encode(frame)]
    return packets[-50:]


def bench_room(anchors: int, seconds: int, segment_s: int) -> list[str]:
    from tencentcloud.trtc.v20190722 import models

    from emulator.cos import CosService
    from emulator.trtc import RoomService
    from shared.cos.urls import parse_cos_url
    from shared.room import NO_MEDIA, EnterParams, Role, RoomRef, VideoFormat, wire
    from shared.room.local import LocalRoom

    units = make_units(ROOM_LOOP_S, ROOM_W, ROOM_H, ROOM_BITRATE)
    opus = _opus_second()
    room_id = 4242
    with tempfile.TemporaryDirectory(prefix="bench-record-room-") as tmp, \
            RoomService(1400000001, "bench-sdk-secret-key-0123456789abcdef") as rooms, \
            CosService(state_dir=str(Path(tmp) / "cos")) as cos:
        env = {**os.environ, **rooms.env, "COS_ENDPOINT": cos.endpoint_url, "CFS_PATH": str(Path(tmp) / "cfs"),
               "CALLBACK_ALLOWLIST": "127.0.0.0/8", "LOG_LEVEL": "DEBUG", "PYTHONPATH": str(ROOT)}
        event = {"SdkAppId": rooms.sdk_app_id, "RoomId": room_id, "UserId": "recorder",
                 "UserSig": rooms.usersig("recorder"), "Mode": "02", "SegmentDuration": segment_s,
                 "CosConfig": {"SecretId": cos.secret_id, "SecretKey": cos.secret_key, "Region": cos.region,
                               "Bucket": cos.bucket, "Path": "/bench"}}
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--recorder-child", json.dumps(event)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while "recorder" not in rooms.rooms.user_ids(rooms.sdk_app_id, room_id):
            if time.monotonic() > deadline or child.poll() is not None:
                child.kill()
                raise RuntimeError(f"the recorder did not enter: {child.communicate()[1][-2000:]}")
            time.sleep(0.05)
        host, _, port = rooms.address.rpartition(":")
        members = []
        for n in range(anchors):
            anchor = LocalRoom(host, int(port))
            anchor.enter(EnterParams(rooms.sdk_app_id, RoomRef(room_id), f"anchor{n:02d}",
                                     rooms.usersig(f"anchor{n:02d}"), role=Role.ANCHOR,
                                     video_input=VideoFormat.H264, receive=NO_MEDIA))
            anchor.start_audio(1)
            anchor.start_video()
            members.append(anchor)
        sent = [0] * anchors
        late = [0.0]

        def publish(n: int, anchor: LocalRoom) -> None:
            start = time.monotonic()
            skew = n * 0.04 / anchors  # the anchors' frames interleave instead of arriving in bursts
            for kind, frame in stream(units, [b""] * 50, seconds, audio=True, video=True, loop_s=ROOM_LOOP_S):
                at = start + skew + frame.pts_ms / 1000
                delay = at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    late[0] = max(late[0], -delay)
                if kind == "a":
                    anchor._send(wire.Message({"t": wire.AUDIO, "pts": frame.pts_ms}, opus[(frame.pts_ms // 20) % 50]))
                else:
                    anchor.send_video(frame)
                    sent[n] += 1

        threads = [threading.Thread(target=publish, args=(n, a), daemon=True) for n, a in enumerate(members)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        req = models.RemoveUserRequest()
        req.SdkAppId, req.RoomId, req.UserIds = rooms.sdk_app_id, room_id, ["recorder"]
        rooms.trtc_client().RemoveUser(req)
        out, err = child.communicate(timeout=600)
        for a in members:
            a.exit()
        done = json.loads(out.strip().splitlines()[-1])
        lags = sorted(json.loads(line)["lag_s"] for line in err.splitlines()
                      if line.startswith("{") and '"segment uploaded"' in line)
        recorded: dict[str, int] = {}
        for entry in done["result"]["Files"]:
            if entry["Status"] != 1:
                continue
            _, _, key = parse_cos_url(entry["RecordFile"])
            path = Path(tmp) / "got.mp4"
            path.write_bytes(cos.get_object_bytes(key))
            with av.open(str(path)) as c:
                recorded[entry["UserId"]] = recorded.get(entry["UserId"], 0) + sum(
                    1 for p in c.demux(video=0) if p.size)
    lost = sum(max(0, sent[n] - recorded.get(f"anchor{n:02d}", 0)) for n in range(anchors))
    failed = sum(1 for e in done["result"]["Files"] if e["Status"] != 1)
    cpu_share = done["cpu_s"] / seconds / anchors
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan")
    ok_lost = "ok" if lost == 0 and failed == 0 else "OVER"
    ok_lag = "ok" if p99 < segment_s else "OVER"
    return [
        f"(d) one recorder, {anchors} anchors, Mode 02 {ROOM_W}x{ROOM_H} {ROOM_BITRATE // 1000} kbit/s + Opus, "
        f"{seconds} s in real time, SegmentDuration {segment_s} s (emulator room and COS on this machine)",
        f"    recorder CPU {done['cpu_s']:.1f} s: {cpu_share * 100:.2f} % of a core per anchor; peak RSS "
        f"{done['max_rss_mb']:.0f} MB; publishers at most {late[0] * 1000:.0f} ms behind their clock",
        f"    video frames sent {sum(sent)}, lost {lost} ({failed} files not uploaded)   target 0  {ok_lost}",
        f"    upload lag per segment ({len(lags)} segments): median {lags[len(lags) // 2]:.2f} s, p99 {p99:.2f} s, "
        f"max {lags[-1]:.2f} s   target p99 < {segment_s} s  {ok_lag}" if lags else "    no segment uploaded",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=120, help="media seconds per CPU run (a)")
    ap.add_argument("--long-minutes", type=int, default=120, help="length of the RSS recording (b)")
    ap.add_argument("--anchors", type=int, default=25, help="anchors in the room (d)")
    ap.add_argument("--room-seconds", type=int, default=60, help="seconds of the many-anchor recording (d)")
    ap.add_argument("--segment", type=int, default=10, help="SegmentDuration of (d)")
    ap.add_argument("--only", default="abcde")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--recorder-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    if args.recorder_child:
        recorder_child(args.recorder_child)
        return
    if "a" in args.only and shutil.which("ffmpeg") is None:
        sys.exit("bench/record needs Debian's ffmpeg as its anchor: apt-get install -y ffmpeg (./dev bench does)")
    print("record_stream benchmark")
    started = time.monotonic()
    for key, fn in (("a", lambda: bench_cpu(args.seconds)), ("b", lambda: bench_rss(args.long_minutes)),
                    ("c", bench_latency), ("d", lambda: bench_room(args.anchors, args.room_seconds, args.segment)),
                    ("e", lambda: bench_extras(args.seconds))):
        if key in args.only:
            for line in fn():
                print(line, flush=True)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
