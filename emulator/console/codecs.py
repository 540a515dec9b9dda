"""What the console reads from the media it relays without decoding it: an H.264 access unit's SPS
(picture size, and the `avc1.PPCCLL` codec string WebCodecs is configured with) and an Opus
packet's channel count (its TOC byte).

The room's video is Annex B (start codes, SPS/PPS in band on key frames), as the pusher sends it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

NAL_SPS = 7
NAL_IDR = 5
# profile_idc values whose SPS carries chroma_format_idc and the bit depths (H.264 7.3.2.1.1).
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


@dataclass(frozen=True)
class VideoFacts:
    codec: str  # "avc1.42c01e": what VideoDecoder.configure takes
    width: int
    height: int


def nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B access unit (without start codes)."""
    starts: list[tuple[int, int]] = []  # (start code offset, payload offset)
    i, n = 0, len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append((j - 1 if j > 0 and data[j - 1] == 0 else j, j + 3))
        i = j + 3
    for k, (_, begin) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else n
        if begin < end:
            yield data[begin:end]


def _unescape(rbsp: bytes) -> bytes:
    """Drop the emulation-prevention bytes (00 00 03 -> 00 00)."""
    return rbsp.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise ValueError("SPS ends early")
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_ = 8
    for _ in range(size):
        if next_:
            next_ = (last + bits.se() + 256) % 256
        last = next_ or last


def parse_sps(nal: bytes) -> VideoFacts:
    """Size and codec string of an SPS NAL unit (header byte included); ValueError if unreadable."""
    if len(nal) < 4 or nal[0] & 0x1F != NAL_SPS:
        raise ValueError("not an SPS")
    profile, constraints, level = nal[1], nal[2], nal[3]
    bits = _Bits(_unescape(nal[4:]))
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue(), bits.ue(), bits.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        if bits.u(1):  # seq_scaling_matrix_present
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1), bits.se(), bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue(), bits.u(1)  # max_num_ref_frames, gaps_in_frame_num_allowed
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field
    bits.u(1)  # direct_8x8_inference
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):  # frame_cropping
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        chroma_array = 0 if separate_planes else chroma_format
        unit_x = 2 if chroma_array in (1, 2) else 1
        unit_y = (2 if chroma_array == 1 else 1) * (2 - frame_mbs_only)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError("SPS gives no picture size")
    return VideoFacts(f"avc1.{profile:02x}{constraints:02x}{level:02x}", width, height)


def video_facts(access_unit: bytes) -> VideoFacts | None:
    """The facts of the first readable SPS in an access unit; None when it carries none."""
    for nal in nal_units(access_unit):
        if nal and nal[0] & 0x1F == NAL_SPS:
            try:
                return parse_sps(nal)
            except ValueError:
                return None
    return None


def opus_channels(packet: bytes) -> int:
    """1 or 2, from the stereo flag of the packet's TOC byte (RFC 6716 3.1)."""
    return 2 if packet and packet[0] & 0x04 else 1
