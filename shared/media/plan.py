"""What a push asks of its video and audio, what the room takes at most, and the one decision that
follows from them: is the source's H.264 sent as it is (passthrough), or decoded and handed to the
room as pictures (transcode), and at what size and rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from shared.media.convert import plan_size
from shared.settings import DEFAULT_PUSH_MAX_AREA, DEFAULT_PUSH_MAX_FPS, settings

MAX_AREA_ENV = "PUSH_MAX_AREA"
MAX_FPS_ENV = "PUSH_MAX_FPS"
# TRTC's ingest takes at most 1080p at 30 fps.


@dataclass
class VideoPlan:
    """What the caller asked for; all None keeps source size and rate and allows passthrough."""

    width: int | None = None
    height: int | None = None
    fps: int | None = None
    bitrate_kbps: int | None = None
    gop_s: int | None = None

    @property
    def asked(self) -> bool:
        return any(v is not None for v in (self.width, self.height, self.fps, self.bitrate_kbps, self.gop_s))


@dataclass
class AudioPlan:
    volume: int = 100  # 0..100
    channels: int | None = None  # None: 1 for mono sources, 2 otherwise (more channels downmixed)


@dataclass(frozen=True)
class VideoLimits:
    """The largest picture (in pixels, any shape) and the highest frame rate the room is given;
    a source above either is scaled down / slowed down on the transcode path."""

    max_area: int = DEFAULT_PUSH_MAX_AREA
    max_fps: int = DEFAULT_PUSH_MAX_FPS

    @classmethod
    def from_settings(cls) -> "VideoLimits":
        """PUSH_MAX_AREA (pixels, or WxH such as 1920x1080) and PUSH_MAX_FPS (shared/settings.py)."""
        s = settings()
        return cls(s.push_max_area, s.push_max_fps)


@dataclass(frozen=True)
class VideoPath:
    """How the video reaches the room."""

    passthrough: bool
    why: str  # why it is decoded ("" when passed through)
    width: int  # the picture the room gets (passthrough: the source's)
    height: int
    fps: int | None  # the frame rate pictures are made at (None: the source's own)
    rotation: int  # degrees clockwise the pictures are turned (known at open for H.264 only)


@dataclass(frozen=True)
class VideoSource:
    """What the probe knows about the source's video."""

    codec: str
    pix_fmt: str | None
    has_b_frames: bool
    width: int
    height: int
    fps: float | None


# Complexity (~22) stays: each condition that rules passthrough out is named once, in the order it is cheapest.
def choose_video_path(src: VideoSource, plan: VideoPlan, limits: VideoLimits,
                      reorders: Callable[[], bool], rotation: Callable[[], int]) -> VideoPath:
    """Passthrough only when nothing has to change the H.264: no parameters asked, 8-bit 4:2:0
    without B-frames, upright, within the room's maximum size and rate. `reorders` and `rotation`
    read the source (its first GOP, its first picture), so they are asked last."""
    # Complexity above 20 on purpose: every reason a source cannot pass through is decided here,
    # in one place, so that "why was this transcoded?" has one answer (VideoPath.why).
    too_fast = src.fps is not None and src.fps > limits.max_fps + 0.5
    turn = 0
    why = ""
    if plan.asked:
        why = "video parameters were asked for"
    elif src.codec != "h264":
        why = f"source video is {src.codec}, not H.264"
    elif src.pix_fmt is not None and src.pix_fmt not in ("yuv420p", "yuvj420p"):
        why = f"source H.264 is {src.pix_fmt}, not 8-bit 4:2:0"
    elif src.has_b_frames:
        why = "source H.264 has B-frames"
    elif src.width * src.height > limits.max_area:
        why = f"source is {src.width}x{src.height}, more than the room's {limits.max_area} pixels"
    elif too_fast:
        why = f"source is {src.fps:g} fps, more than the room's {limits.max_fps} fps"
    elif reorders():
        why = "source H.264 has B-frames (frames out of order in the first GOP)"
    else:
        turn = rotation()
        if turn:
            why = f"source's display matrix turns the picture {turn} degrees"
    if not why:
        return VideoPath(True, "", src.width, src.height, None, 0)
    w, h = (src.height, src.width) if turn in (90, 270) else (src.width, src.height)
    asked_w, asked_h = plan_size(w, h, plan.width, plan.height)
    w, h = plan_size(w, h, plan.width, plan.height, limits.max_area)
    notes = [why]
    if turn:
        notes.append(f"turned upright to {w}x{h}")
    if (w, h) != (asked_w, asked_h):
        notes.append(f"scaled down to {w}x{h} ({MAX_AREA_ENV} {limits.max_area})")
    fps = min(plan.fps, limits.max_fps) if plan.fps else (limits.max_fps if too_fast else None)
    if fps is not None and (too_fast or (plan.fps or 0) > fps):
        notes.append(f"{plan.fps or src.fps:g} fps made {fps} fps ({MAX_FPS_ENV} {limits.max_fps})")
    return VideoPath(False, "; ".join(notes), w, h, fps, turn)
