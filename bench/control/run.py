"""push_control round trip through the local cloud's gateway: a benchmark (about half a minute).

    .venv/bin/python bench/control/run.py [--calls 60]     (./dev bench runs it)

A real push_stream (a local clip, Redis on) runs in the local cloud; `POST {gateway}/push_control`
with `action: status` is timed from the request to the answer (the running push acknowledged it
through Redis), `--calls` times in a row: p50 and p99, warm (the pool of warm instances,
emulator/scf/pool.py, as SCF keeps an instance between calls), against the anchor of a fresh
Python process per call (the local cloud before the pool; the pool switched off for a few calls).
Each call's server side is also read from its run record (durationMs: hand-over to answer).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TARGET_P50_MS = 50.0
TARGET_P99_MS = 150.0
COLD_CALLS = 5


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))]


def _time_calls(url: str, body: dict[str, Any], n: int) -> tuple[list[float], list[int]]:
    import requests

    session = requests.Session()
    times, codes = [], []
    for _ in range(n):
        t0 = time.monotonic()
        r = session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=30)
        times.append((time.monotonic() - t0) * 1000)
        codes.append(r.status_code)
    return times, codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=60, help="warm status calls to time (default 60)")
    args, _ = ap.parse_known_args()  # ./dev bench passes every bench the same arguments
    import os

    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import requests

    from emulator.cloud import CloudConfig, LocalCloud
    from emulator.media import make_clip

    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        cloud = LocalCloud(CloudConfig(state_dir=Path(tmp) / "state", shutdown_grace_s=2.0)).start()
        try:
            info = cloud.info()
            assert cloud.rooms is not None and cloud.scf is not None
            media = cloud.state_dir / "media"
            media.mkdir(parents=True, exist_ok=True)
            clip = make_clip(media / "control.mp4", duration=60, width=320, height=240, fps=25, gop=25, layout="mono")
            push = {"videoSrc": str(clip), "sdkAppId": info["sdkAppId"], "roomId": 970_001, "userId": "bench",
                    "userSig": cloud.rooms.usersig("bench"), "redis": True, "maxDuration": 120}
            r = requests.post(info["gateway"] + "/push_stream", json=push, timeout=10)
            request_id = r.headers["x-scf-reqid"]
            url = info["gateway"] + "/push_control"
            status = {"requestId": request_id, "action": "status", "userSig": push["userSig"]}
            deadline = time.monotonic() + 30
            while requests.post(url, json=status, timeout=30).status_code != 200:
                if time.monotonic() > deadline:
                    sys.exit("the push never answered status within 30 s")
                time.sleep(0.1)
            warm, codes = _time_calls(url, status, args.calls)
            server = [r.duration_ms for r in cloud.scf.runs("push_control")[-args.calls:]]
            # The anchor: the pool off, a fresh process per call.
            fn = cloud.scf.function("push_control")
            cloud.scf.warm_size = 0
            cloud.scf.add_function(fn)
            cold, cold_codes = _time_calls(url, status, COLD_CALLS)
            requests.post(url, json={**status, "action": "stop"}, timeout=30)
        finally:
            cloud.stop()
    ok = sum(1 for c in codes if c == 200)
    rows = [
        ("push_control status through the gateway, warm", f"p50 {_percentile(warm, .5):.0f} ms, "
         f"p99 {_percentile(warm, .99):.0f} ms", f"fresh process per call: p50 {_percentile(cold, .5):.0f} ms",
         f"target p50 <= {TARGET_P50_MS:.0f} ms, p99 <= {TARGET_P99_MS:.0f} ms"),
        ("  of which in the function's instance", f"p50 {_percentile(server, .5):.0f} ms, "
         f"p99 {_percentile(server, .99):.0f} ms", f"({ok}/{len(codes)} answered 200; "
         f"anchor {sum(1 for c in cold_codes if c == 200)}/{len(cold_codes)})", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"push_control benchmark ({os.cpu_count()} CPUs, {time.monotonic() - t_start:.0f} s)")
    print(f"{'measure':<{width}}  {'ours':<30}  {'anchor':<40}  target")
    for name, ours, anchor, verdict in rows:
        print(f"{name:<{width}}  {ours:<30}  {anchor:<40}  {verdict}")


if __name__ == "__main__":
    main()
