"""Looped sources through the whole push (repeatNum), counted in the room pass by pass: every pass
arrives whole, the seams are as long as one frame, and the push ends `end_of_source` after the
right number of passes."""
from __future__ import annotations

from pathlib import Path

import pytest

from emulator.media import make_clip, make_hls
from functions.push_stream.index import main_handler
from shared.room import RoomRef

from .conftest import PUSH_CLIP, new_room, params_for


@pytest.fixture(scope="session")
def loop8_ts(clip_dir: Path) -> Path:
    """8 s of MPEG-TS (200 pictures, a key frame every second): its first video packet lies before
    its first audio packet in the file, as muxers write TS."""
    return make_clip(clip_dir / "loop8.ts", duration=8.0, **PUSH_CLIP)


def _per_pass(video_pts: list[int], pass_ms: float, passes: int) -> list[int]:
    """How many video frames arrived in each pass's stretch of room time."""
    counts = [0] * passes
    for pts in video_pts:
        counts[min(passes - 1, int(pts // pass_ms))] += 1
    return counts


def _push_looped(push_env, subscribe, src: str, repeat: int):
    room = new_room()
    sub = subscribe(RoomRef(room), "pusher")
    result = main_handler(params_for(push_env, src, room, repeatNum=repeat), {"request_id": f"req-loop-{room}"})
    return result, sub.settle()


@pytest.fixture(scope="session")
def hls_bframes(clips) -> str:
    """An HLS VOD as x264 makes it by default (B-frames: decoded, not passed through), 4 s in 1 s
    segments: its first packet is audio, before the first GOP's decode time."""
    directory = clips.root / "hls_bframes"
    if not (directory / "index.m3u8").exists():
        make_hls(directory, duration=4.0, video="h264-bframes")
    return "hls_bframes/index.m3u8"


@pytest.mark.parametrize("kind", ["passthrough", "bframes"])
def test_an_hls_vod_loops_across_its_seam(push_env, subscribe, clips, media_http, hls_bframes, kind):
    """repeatNum 2 of an HLS VOD: frames keep arriving across both seams, every pass whole, and the
    push ends `end_of_source` after three passes."""
    if kind == "passthrough":
        clips.get("hls")  # 6 s in 1 s segments, 25 fps
        path, frames = "hls/index.m3u8", 150
    else:
        path, frames = hls_bframes, 100
    result, got = _push_looped(push_env, subscribe, media_http.url(path), repeat=2)
    assert (result["status"], result["reason"], result["loops"]) == ("completed", "end_of_source", 3), result
    assert result["path"] == ("passthrough" if kind == "passthrough" else "transcode")
    assert result["framesSent"]["video"] == 3 * frames and len(got.video_pts) == 3 * frames
    assert _per_pass(got.video_pts, result["duration"] * 1000, 3) == [frames] * 3
    steps = [b - a for a, b in zip(got.video_pts, got.video_pts[1:])]
    assert 0 < min(steps) and max(steps) <= 80  # no freeze at a seam


def test_an_mpegts_file_loops_whole(push_env, subscribe, loop8_ts):
    """Every pass of a .ts file delivers every frame: the first GOP is not lost at the seam."""
    result, got = _push_looped(push_env, subscribe, str(loop8_ts), repeat=2)
    assert (result["status"], result["reason"], result["loops"]) == ("completed", "end_of_source", 3), result
    assert result["framesSkipped"] == 0
    assert len(got.video_pts) == result["framesSent"]["video"] == 3 * 200
    assert _per_pass(got.video_pts, result["duration"] * 1000, 3) == [200, 200, 200]
    steps = [b - a for a, b in zip(got.video_pts, got.video_pts[1:])]
    assert max(steps) <= 80  # no freeze at a seam
    assert all(got.video_keys[i] for i in (0, 200, 400))  # each pass starts at its key frame
