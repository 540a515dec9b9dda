"""H.264 in Annex-B: NAL units, their types, and the picture size an SPS describes."""
from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


def split_nals(data: bytes) -> list[bytes]:
    """Annex-B NAL units (without their start codes)."""
    nals = []
    i, n = 0, len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else n
        # a 4-byte start code leaves a trailing zero on the previous unit
        while k + 1 < len(starts) and end > s and data[end - 1] == 0:
            end -= 1
        nals.append(data[s:end])
    return [u for u in nals if u]


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


class _Bits:
    def __init__(self, rbsp: bytes):
        self.value = int.from_bytes(rbsp, "big")
        self.left = len(rbsp) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("SPS ends early")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) of the pictures an SPS NAL unit (header byte included) describes."""
    # Complexity above 20 on purpose: the branches are the SPS syntax of H.264 7.3.2.1.1, read in
    # the standard's order; split up, the parser would no longer read side by side with it.
    rbsp = sps[1:].replace(b"\x00\x00\x03", b"\x00\x00")
    b = _Bits(rbsp)
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
        from .hevc import key_frame_dimensions as hevc_dimensions

        return hevc_dimensions(data)
    for unit in split_nals(data):
        if nal_type(unit) == NAL_SPS:
            try:
                return sps_dimensions(unit)
            except ValueError:
                return None
    return None
