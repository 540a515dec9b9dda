"""H.264 in Annex-B: NAL unit types, and the picture size an SPS describes (`key_frame_dimensions`
also reads an H.265 key frame's, through shared.media.hevc)."""
from __future__ import annotations

from shared.media import hevc
from shared.media.nal import BitReader, split_nals

__all__ = ["NAL_IDR", "NAL_PPS", "NAL_SPS", "key_frame_dimensions", "nal_type", "split_nals", "sps_dimensions"]

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


# Complexity (~21) stays: the branches are the SPS syntax of H.264 7.3.2.1.1, in the standard's order.
def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) of the pictures an SPS NAL unit (header byte included) describes."""
    # Complexity above 20 on purpose: the branches are the SPS syntax of H.264 7.3.2.1.1, read in
    # the standard's order; split up, the parser would no longer read side by side with it.
    rbsp = sps[1:].replace(b"\x00\x00\x03", b"\x00\x00")
    b = BitReader(rbsp)
    profile_idc = b.u(8)
    b.u(16)  # constraint flags, level_idc
    b.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes = 1, 0
    if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format_idc = b.ue()
        if chroma_format_idc == 3:
            separate_planes = b.u(1)
        b.ue()
        b.ue()  # bit depths
        b.u(1)  # qpprime_y_zero_transform_bypass_flag
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if b.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.u(1)  # gaps_in_frame_num_value_allowed_flag
    width = (b.ue() + 1) * 16
    map_units = b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        b.u(1)
    b.u(1)  # direct_8x8_inference_flag
    height = (2 - frame_mbs_only) * map_units * 16
    if b.u(1):  # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        chroma = 0 if separate_planes else chroma_format_idc
        unit_x = 2 if chroma in (1, 2) else 1
        unit_y = (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    if width <= 0 or height <= 0:
        raise ValueError("SPS describes an empty picture")
    return width, height


def key_frame_dimensions(data: bytes, codec: str = "h264") -> tuple[int, int] | None:
    """The picture size from the SPS a key frame carries, or None when it carries none;
    `codec` is the access unit's (frames.CODEC_H264 or CODEC_HEVC)."""
    if codec == "hevc":
        return hevc.key_frame_dimensions(data)
    for unit in split_nals(data):
        if nal_type(unit) == NAL_SPS:
            try:
                return sps_dimensions(unit)
            except ValueError:
                return None
    return None
