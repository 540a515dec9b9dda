"""The whole demo, as `python -m emulator demo` runs it: push, record, stop both, download, resume;
then the AI class (a wrong answer, then the right one, each feedback seen in the room)."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_pushes_records_stops_downloads_and_resumes(tmp_path: Path):
    state = tmp_path / "state"
    done = subprocess.run([sys.executable, "-m", "emulator", "demo", "--state-dir", str(state)], cwd=REPO,
                          capture_output=True, text=True, timeout=150)
    out = done.stdout
    assert done.returncode == 0, f"demo failed:\n{out}\n{done.stderr}"
    assert out.rstrip().endswith("demo OK")
    assert "push at" in out  # progress was shown while it ran

    # The recording it downloaded from COS is an H.264 + AAC MP4 that decodes.
    downloaded = Path(re.search(r"downloaded to (\S+\.mp4)", out).group(1))
    with av.open(str(downloaded)) as c:
        codecs = {s.type: s.codec_context.name for s in c.streams}
        duration = c.duration / 1_000_000
        frames = sum(1 for p in c.demux(c.streams.video[0]) for _ in p.decode())
    assert codecs == {"video": "h264", "audio": "aac"}
    assert 3.0 < duration < 9.5 and frames > 50
    # ... and is the object in the local COS (persisted under the state directory).
    bucket_dir = state / "cos" / "emulator-1250000000"
    assert [p.name for p in bucket_dir.rglob("*.mp4")] == [downloaded.name]

    # Three runs kept by request id: push (ABORTED), record (FINISHED), the resumed push (FINISHED).
    runs = {json.loads(p.read_text())["requestId"]: json.loads(p.read_text()) for p in (state / "runs").glob("*/run.json")}
    story = {k: r for k, r in runs.items() if _caller(r) in ("demo-pusher", "demo-recorder")}
    by_function = sorted((r["functionName"], r["status"]) for r in story.values())
    assert by_function == [("push_stream", "ABORTED"), ("push_stream", "FINISHED"), ("record_stream", "FINISHED")]
    second = next(r for r in story.values() if r["functionName"] == "push_stream" and r["status"] == "FINISHED")
    first = next(r for r in story.values() if r["functionName"] == "push_stream" and r["status"] == "ABORTED")
    resumed = json.loads(second["result"]["body"])["resumedFrom"]
    stopped = json.loads(first["result"]["body"])["position"]
    assert resumed is not None and abs(resumed - stopped) < 1.0
    assert f"resumed from {resumed:.2f} s" in out

    # The class: the wrong answer's try-again and the right answer's feedback were seen in the room, through
    # the lesson's push, recognize_stream and push_control (switch, enqueue, each answer; stop at the end).
    assert "the viewer saw 'try-again'" in out and "the viewer saw 'right'" in out
    rest = sorted((r["functionName"], r["status"]) for k, r in runs.items() if k not in story)
    assert rest == [("push_control", "FINISHED")] * 5 + [("push_stream", "FINISHED"), ("recognize_stream", "FINISHED")]

    # The cloud the demo started is gone.
    assert not (state / "cloud.json").exists()
    redis_port = int(re.search(r"Redis 127\.0\.0\.1:(\d+)", out).group(1))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", redis_port)) != 0


def _caller(run: dict) -> str | None:
    """The user a run was started for (push_stream's userId, record_stream's UserId)."""
    event = run.get("event") or {}
    body = event.get("body") if isinstance(event, dict) else None
    params = json.loads(body) if isinstance(body, str) else event
    return params.get("userId") or params.get("UserId") if isinstance(params, dict) else None
