"""record_stream benchmark: figures side by side with their anchor, in one run (a couple of minutes).

    .venv/bin/python bench/record/run.py [--seconds 120] [--long-minutes 30] [--only abc]
    (./dev bench runs it; needs Debian's `ffmpeg`)

(a) CPU-seconds per recorded media-second, per Mode, against Debian's `ffmpeg` doing the same job on
    the same input: 48 kHz mono PCM and 640x360 25 fps H.264 (Annex-B, no B-frames, ~600 kbit/s).
    Mode 00: libmp3lame 64 kbit/s; 01: H.264 stream copy into a faststart MP4; 02: copy + AAC
    64 kbit/s. Ours is `AnchorRecording` fed the frames from memory at full speed (what the room
    hands the recorder, without the room), time.process_time around feed + close; ffmpeg's is its
    whole process (rusage of the child), reading the same media from raw files in the page cache.
(b) Peak RSS of one Mode 02 recording of 30 minutes, fed faster than real time (full speed) in a
    child process: VmRSS sampled every 5 media-minutes and VmHWM at the end, plus how long closing
    (faststart moving the index to the front) takes.
(c) Stop-to-callback latency, upload excluded: the real handler recording an anchor in a local room
    (emulator rooms, local COS, a local callback receiver); RemoveUser through TrtcClient, then the
    time until the callback arrives, minus the upload time the recorder logs.
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

from emulator.media import h264_units, pcm_20ms  # noqa: E402
from shared.room import AUDIO_SAMPLE_RATE, AudioFrame, H264Frame  # noqa: E402

TARGET_CPU_RATIO = 1.1
TARGET_CORE_SHARE = 0.05  # of one core per stream, for the modes that copy video
TARGET_RSS_MB = 150.0
TARGET_STOP_TO_CALLBACK_S = 1.0
FPS = 25
WIDTH, HEIGHT = 640, 360
VIDEO_BITRATE = 600_000
GOP_S = 2
SOURCE_S = 20  # encoded once, then looped (at a key frame) for longer runs


# --- input ---------------------------------------------------------------------------------------


def make_units(seconds: int = SOURCE_S) -> list[H264Frame]:
    """H.264 access units of FFmpeg's moving test pattern, as the room hands them over (Annex-B,
    SPS/PPS on keys), at the bitrate a 360p anchor sends."""
    return h264_units(seconds * FPS, WIDTH, HEIGHT, FPS, FPS * GOP_S, pictures="pattern", bitrate=VIDEO_BITRATE)


def tone_second() -> list[bytes]:
    """One second of a 440 Hz tone as fifty 20 ms PCM frames (repeated: a whole number of periods)."""
    return [pcm_20ms(i) for i in range(50)]


def stream(units: list[H264Frame], tone: list[bytes], seconds: int, audio: bool, video: bool):
    """("a"|"v", frame) in arrival order for `seconds` of media, looping the source."""
    loop_ms = SOURCE_S * 1000
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
    """PyAV's libmp3lame fed directly (s16p, 1152-sample frames, no writer): the floor for Mode 00."""
    ctx = av.CodecContext.create("libmp3lame", "w")
    ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = AUDIO_SAMPLE_RATE, "mono", "s16p", 64_000
    ctx.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
    ctx.open()
    raw = b"".join(tone) * seconds
    cpu0 = time.process_time()
    for n, off in enumerate(range(0, len(raw) - 2304 + 1, 2304)):
        frame = av.AudioFrame(format="s16p", layout="mono", samples=1152)
        frame.planes[0].update(raw[off:off + 2304])
        frame.sample_rate, frame.pts = AUDIO_SAMPLE_RATE, n * 1152
        ctx.encode(frame)
    ctx.encode(None)
    return time.process_time() - cpu0


def ffmpeg_cpu(mode: str, units, tone, seconds: int, workdir: Path) -> float:
    pcm = workdir / "in.pcm"
    h264 = workdir / "in.h264"
    if not pcm.exists():
        with open(pcm, "wb") as f:
            for i in range(seconds * 50):
                f.write(tone[i % 50])
        with open(h264, "wb") as f:
            for kind, frame in stream(units, tone, seconds, audio=False, video=True):
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
        for mode, name in (("00", "00 MP3 (libmp3lame)"), ("01", "01 MP4 (H.264 copy)"), ("02", "02 MP4 (copy + AAC)")):
            ours, duration = min((ours_cpu(mode, units, tone, seconds, workdir) for _ in range(2)), key=lambda r: r[0])
            theirs = min(ffmpeg_cpu(mode, units, tone, seconds, workdir) for _ in range(2))
            ratio = ours / theirs if theirs > 0 else float("inf")
            share = ours / duration
            ok = "ok" if ratio <= TARGET_CPU_RATIO else "OVER"
            core = f"{share * 100:.2f} %" + ("" if mode == "00" else (" ok" if share < TARGET_CORE_SHARE else " OVER"))
            lines.append(f"    {name:<28} {ours / duration:>10.5f} {theirs / seconds:>10.5f} {ratio:>7.2f} "
                         f"{'<=' + str(TARGET_CPU_RATIO):>8} {ok:>4}  {core:>10}")
            if mode == "00":
                floor = min(codec_only_cpu(tone, seconds) for _ in range(2))
                lines.append(f"    {'   PyAV libmp3lame alone':<28} {floor / seconds:>10.5f} {theirs / seconds:>10.5f} "
                             f"{floor / theirs:>7.2f}   (the wheel's LAME build itself; writer overhead on it: "
                             f"x{ours / duration / (floor / seconds):.2f})")
    return lines


def ffmpeg_version() -> str:
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
        return first.split()[2]
    except Exception:
        return "?"


# --- (b) RSS over a long recording ----------------------------------------------------------------


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_child(minutes: int) -> None:
    """Mode 02 for `minutes` of media at full speed; prints JSON with RSS samples."""
    from shared.record.writer import AnchorRecording

    units, tone = make_units(), tone_second()
    with tempfile.TemporaryDirectory(prefix="bench-record-rss-") as tmp:
        rec = AnchorRecording("bench", "02", Path(tmp))
        samples = []
        started = time.monotonic()
        cpu0 = time.process_time()
        next_sample = 0
        for kind, frame in stream(units, tone, minutes * 60, audio=True, video=True):
            if kind == "a":
                rec.add_audio(frame)
                if frame.pts_ms >= next_sample:
                    samples.append((frame.pts_ms // 60000, _rss_kb("VmRSS") // 1024))
                    next_sample += 300_000
            else:
                rec.add_video(frame)
        closing = time.monotonic()
        files = rec.close()
        closed = time.monotonic()
        size = files[0].path.stat().st_size
        print(json.dumps({"samples": samples, "end_rss_mb": _rss_kb("VmRSS") // 1024,
                          "peak_mb": _rss_kb("VmHWM") // 1024, "wall_s": closed - started,
                          "cpu_s": time.process_time() - cpu0, "close_s": closed - closing,
                          "file_mb": size / (1 << 20), "duration_s": files[0].duration_s}), flush=True)


def bench_rss(minutes: int) -> list[str]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--rss-child", str(minutes)],
                         capture_output=True, text=True, timeout=900, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    trail = ", ".join(f"{m} min {mb} MB" for m, mb in r["samples"])
    ok = "ok" if r["peak_mb"] <= TARGET_RSS_MB else "OVER"
    return [
        f"(b) peak RSS, one Mode 02 recording of {minutes} min fed at full speed "
        f"({r['duration_s'] / r['wall_s']:.0f}x real time, {r['file_mb']:.0f} MB file)",
        f"    VmRSS: {trail}, at the end {r['end_rss_mb']} MB",
        f"    peak (VmHWM) {r['peak_mb']} MB   target <= {TARGET_RSS_MB:.0f} MB  {ok}",
        f"    closing the file (faststart moves the index to the front): {r['close_s']:.2f} s; "
        f"CPU {r['cpu_s'] / r['duration_s'] * 100:.2f} % of a core per stream",
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
    from emulator.callbacks import CallbackReceiver
    from emulator.cos import CosService
    from emulator.trtc import RoomService
    from shared.room import EnterParams, Role, RoomRef, VideoFormat
    from shared.room.local import LocalRoom
    from tencentcloud.trtc.v20190722 import models

    from functions.record_stream.index import main_handler

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
            t = threading.Thread(target=lambda: result.update(main_handler(params, {"request_id": f"bench-{n}"})))
            t.start()
            while "recorder" not in rooms.rooms.user_ids(rooms.sdk_app_id, room_id):
                time.sleep(0.01)
            anchor = LocalRoom(host, int(port))
            anchor.enter(EnterParams(rooms.sdk_app_id, RoomRef(room_id), "alice", rooms.usersig("alice"),
                                     role=Role.ANCHOR, video_input=VideoFormat.H264, receive_media=False))
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=120, help="media seconds per CPU run (a)")
    ap.add_argument("--long-minutes", type=int, default=30, help="length of the RSS recording (b)")
    ap.add_argument("--only", default="abc")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    if "a" in args.only and shutil.which("ffmpeg") is None:
        sys.exit("bench/record needs Debian's ffmpeg as its anchor: apt-get install -y ffmpeg (./dev bench does)")
    print("record_stream benchmark")
    started = time.monotonic()
    for key, fn in (("a", lambda: bench_cpu(args.seconds)), ("b", lambda: bench_rss(args.long_minutes)),
                    ("c", bench_latency)):
        if key in args.only:
            for line in fn():
                print(line, flush=True)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
