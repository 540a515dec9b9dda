"""H.265 (HEVC) in Annex-B: NAL unit types, and the picture size an SPS describes."""
from __future__ import annotations

from shared.media.nal import BitReader, split_nals

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
PARAMETER_SETS = (NAL_VPS, NAL_SPS, NAL_PPS)


def nal_type(nal: bytes) -> int:
    """The type from an HEVC NAL unit's two-byte header."""
    return (nal[0] >> 1) & 0x3F


def _rbsp(nal: bytes) -> bytes:
    """The payload after the two-byte header, without emulation-prevention bytes."""
    out = bytearray()
    zeros = 0
    for byte in nal[2:]:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) of the pictures an HEVC SPS NAL unit (header included) describes
    (H.265 7.3.2.2: the luma size less the conformance window)."""
    b = BitReader(_rbsp(sps))
    b.u(4)  # sps_video_parameter_set_id
    sub_layers = b.u(3)  # sps_max_sub_layers_minus1
    b.u(1)  # sps_temporal_id_nesting_flag
    # profile_tier_level(1, sub_layers): the general part is 96 bits
    b.u(32), b.u(32), b.u(32)
    present = [(b.u(1), b.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        for _ in range(sub_layers, 8):
            b.u(2)  # reserved_zero_2bits
    for profile, level in present:
        if profile:
            b.u(32), b.u(32), b.u(24)  # 88 bits of sub-layer profile
        if level:
            b.u(8)
    b.ue()  # sps_seq_parameter_set_id
    chroma = b.ue()
    if chroma == 3 and b.u(1):  # separate_colour_plane_flag: ChromaArrayType 0
        chroma = 0
    width, height = b.ue(), b.ue()
    if b.u(1):  # conformance_window_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        unit_x = 2 if chroma in (1, 2) else 1
        unit_y = 2 if chroma == 1 else 1
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    if width <= 0 or height <= 0:
        raise ValueError("SPS describes an empty picture")
    return width, height


def key_frame_dimensions(data: bytes) -> tuple[int, int] | None:
    """The picture size from the SPS an HEVC key frame carries, or None when it carries none."""
    for unit in split_nals(data):
        if len(unit) > 2 and nal_type(unit) == NAL_SPS:
            try:
                return sps_dimensions(unit)
            except ValueError:
                return None
    return None


def has_parameter_sets(data: bytes) -> bool:
    """True when an access unit carries VPS, SPS and PPS (what an `hvc1` sample entry is made from)."""
    found = {nal_type(u) for u in split_nals(data) if len(u) > 2}
    return all(t in found for t in PARAMETER_SETS)
