"""Room relay benchmark: one 720p30 + 48 kHz publisher to 1 and to 4 subscribers through the emulator.

    .venv/bin/python bench/room_relay/run.py [--seconds 30]

The room server runs in a child process (`python -m emulator.trtc`) so that its CPU time can be read
from /proc. The video is H.264 encoded once up front (PyAV, libx264) and published as access units,
so the figures are the relay's, not an encoder's; audio is 20 ms Opus packets. Publisher and
subscribers are LocalRooms in this process; latency is from the publisher's send call to the
subscriber's poll returning the frame (both on CLOCK_MONOTONIC).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from emulator.media import h264_units  # noqa: E402
from emulator.trtc import signature as usersig  # noqa: E402
from shared.room import (  # noqa: E402
    NO_MEDIA,
    AudioFrame,
    EnterParams,
    H264Frame,
    RemoteAudio,
    RemoteVideo,
    Role,
    RoomClosed,
    RoomRef,
    VideoEncodeConfig,
    VideoFormat,
)
from shared.room.local import LocalRoom  # noqa: E402

TARGET_P99_MS = 50.0
TARGET_CPU_PER_STREAM = 5.0  # % of one core
FPS = 30
WARMUP_S = 1.0


def encode_clip(seconds: float = 2.0, bitrate: int = 2_500_000) -> list[H264Frame]:
    """720p30 H.264 access units of a moving test pattern, one GOP, made once."""
    count = int(seconds * FPS)
    return h264_units(count, 1280, 720, FPS, gop=count, pictures="pattern", bitrate=bitrate)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Subscriber:
    room: LocalRoom
    video_ms: list[float] = field(default_factory=list)
    audio_ms: list[float] = field(default_factory=list)
    thread: threading.Thread | None = None


def run_scenario(info: dict, server_pid: int, room_id: int, subscribers: int, seconds: float,
                 clip: list[H264Frame]) -> dict:
    host, _, port = info["roomAddress"].rpartition(":")
    app, key = info["sdkAppId"], info["sdkSecretKey"]

    def enter(user: str, role: Role, **kw) -> LocalRoom:
        room = LocalRoom(host, int(port))
        room.enter(EnterParams(app, RoomRef(room_id), user, usersig.generate(app, key, user), role=role,
                               timeout=10, **kw))
        return room

    sent_video: dict[int, float] = {}
    sent_audio: dict[int, float] = {}
    measuring = threading.Event()
    subs = [Subscriber(enter(f"sub{i}", Role.AUDIENCE)) for i in range(subscribers)]

    def receive(sub: Subscriber) -> None:
        while True:
            event = sub.room.poll(1.0)
            now = time.monotonic()
            if event is None or isinstance(event, RoomClosed):
                if sub.room.closed is not None:
                    return
                continue
            if not measuring.is_set():
                continue
            if isinstance(event, RemoteVideo) and event.frame.pts_ms in sent_video:
                sub.video_ms.append((now - sent_video[event.frame.pts_ms]) * 1000)
            elif isinstance(event, RemoteAudio) and event.frame.pts_ms in sent_audio:
                sub.audio_ms.append((now - sent_audio[event.frame.pts_ms]) * 1000)

    for sub in subs:
        sub.thread = threading.Thread(target=receive, args=(sub,), daemon=True)
        sub.thread.start()

    pub = enter("publisher", Role.ANCHOR, video_input=VideoFormat.H264, receive=NO_MEDIA)
    pub.start_audio(channels=1, bitrate_bps=64000)
    pub.start_video(VideoEncodeConfig(fps=FPS, bitrate_bps=2_500_000))
    silence = bytes(960 * 2)
    start = time.monotonic()
    cpu_start = wall_start = None
    n_video = n_audio = 0
    # Pace on media time in integer ms against the monotonic clock (no accumulating floats).
    total_ms = int((seconds + WARMUP_S) * 1000)
    while True:
        next_video_ms = n_video * 1000 // FPS
        next_audio_ms = n_audio * 20
        due_ms = min(next_video_ms, next_audio_ms)
        if due_ms >= total_ms:
            break
        delay = start + due_ms / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if cpu_start is None and due_ms >= WARMUP_S * 1000:
            cpu_start, wall_start = cpu_seconds(server_pid), time.monotonic()
            measuring.set()
        if next_audio_ms <= next_video_ms:
            sent_audio[next_audio_ms] = time.monotonic()
            pub.send_audio(AudioFrame(silence, next_audio_ms))
            n_audio += 1
        else:
            unit = clip[n_video % len(clip)]
            sent_video[next_video_ms] = time.monotonic()
            pub.send_video(H264Frame(unit.data, next_video_ms, unit.key))
            n_video += 1
    time.sleep(0.2)  # let the last frames arrive
    assert cpu_start is not None and wall_start is not None
    cpu = cpu_seconds(server_pid) - cpu_start
    wall = time.monotonic() - wall_start
    measuring.clear()
    pub.exit()
    for sub in subs:
        sub.room.exit()
        if sub.thread:
            sub.thread.join(3)

    video = sorted(v for s in subs for v in s.video_ms)
    audio = sorted(a for s in subs for a in s.audio_ms)
    expected_video = (n_video - int(WARMUP_S * FPS)) * subscribers
    return {
        "subscribers": subscribers,
        "video_p50": pct(video, 50), "video_p99": pct(video, 99),
        "audio_p50": pct(audio, 50), "audio_p99": pct(audio, 99),
        "video_received": len(video), "video_expected": expected_video,
        "cpu_pct": 100 * cpu / wall,
        "cpu_pct_per_stream": 100 * cpu / wall / subscribers,
        "mbit_s": sum(len(u.data) for u in clip) * 8 / (len(clip) / FPS) / 1e6,
    }


def pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if p < 100 else values[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per scenario (default 30)")
    parser.add_argument("--subscribers", default="1,4", help="comma-separated subscriber counts (default 1,4)")
    args = parser.parse_args()
    counts = [int(c) for c in args.subscribers.split(",") if c.strip()]
    if args.seconds <= 0 or not counts or min(counts) < 1:
        parser.error("--seconds must be positive and --subscribers a list of counts >= 1")

    print("encoding the 720p30 clip once ...", file=sys.stderr)
    clip = encode_clip()
    server = subprocess.Popen([sys.executable, "-m", "emulator.trtc"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        results = []
        for i, n in enumerate(counts):
            print(f"{n} subscriber(s) for {args.seconds:g} s ...", file=sys.stderr)
            results.append(run_scenario(info, server.pid, 990001 + i, n, args.seconds, clip))
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    print(f"\nroom relay: 1 publisher, 720p30 H.264 (~{results[0]['mbit_s']:.1f} Mbit/s) + 48 kHz Opus, "
          f"{args.seconds:g} s per row, loopback, {os.cpu_count()} cores\n")
    head = (f"{'subs':>4}  {'video p50':>9}  {'video p99':>9}  {'audio p50':>9}  {'audio p99':>9}  "
            f"{'target p99':>10}  {'relay CPU':>9}  {'CPU/stream':>10}  {'target':>7}  {'video frames':>14}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['subscribers']:>4}  {r['video_p50']:>7.1f}ms  {r['video_p99']:>7.1f}ms  "
              f"{r['audio_p50']:>7.1f}ms  {r['audio_p99']:>7.1f}ms  {'< 50 ms':>10}  "
              f"{r['cpu_pct']:>8.2f}%  {r['cpu_pct_per_stream']:>9.2f}%  {'< 5 %':>7}  "
              f"{r['video_received']:>6}/{r['video_expected']:<7}")
    print("\nCPU/stream: the room server's CPU time (its process, all threads) over wall time, divided by the "
          "subscribers\n(one stream = the publisher's audio + video delivered to one subscriber).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
