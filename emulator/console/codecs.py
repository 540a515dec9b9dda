"""What the console reads from the media it relays without decoding it: an H.264 access unit's SPS
(picture size, and the `avc1.PPCCLL` codec string WebCodecs is configured with) and an Opus
packet's channel count (its TOC byte).

The room's video is Annex B (start codes, SPS/PPS in band on key frames), as the pusher sends it.
"""
from __future__ import annotations

from dataclasses import dataclass

from shared.media.h264 import NAL_SPS, nal_type, split_nals as nal_units, sps_dimensions


@dataclass(frozen=True)
class VideoFacts:
    codec: str  # "avc1.42c01e": what VideoDecoder.configure takes
    width: int
    height: int


def parse_sps(nal: bytes) -> VideoFacts:
    """Size (shared.media.h264's SPS reader) and codec string of an SPS NAL unit (header byte
    included); ValueError if unreadable."""
    if len(nal) < 4 or nal_type(nal) != NAL_SPS:
        raise ValueError("not an SPS")
    width, height = sps_dimensions(nal)
    return VideoFacts(f"avc1.{nal[1]:02x}{nal[2]:02x}{nal[3]:02x}", width, height)


def video_facts(access_unit: bytes) -> VideoFacts | None:
    """The facts of the first readable SPS in an access unit; None when it carries none."""
    for nal in nal_units(access_unit):
        if nal and nal_type(nal) == NAL_SPS:
            try:
                return parse_sps(nal)
            except ValueError:
                return None
    return None


def opus_channels(packet: bytes) -> int:
    """1 or 2, from the stereo flag of the packet's TOC byte (RFC 6716 3.1)."""
    return 2 if packet and packet[0] & 0x04 else 1
