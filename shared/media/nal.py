"""Annex-B NAL units and the bit reader of their payloads: what H.264 (shared.media.h264) and
H.265 (shared.media.hevc) share. Nothing here knows a codec's header or unit types."""
from __future__ import annotations


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


class BitReader:
    """Reads an RBSP (a unit's payload without emulation-prevention bytes) MSB first: u(n), ue(), se()."""

    def __init__(self, rbsp: bytes):
        self.value = int.from_bytes(rbsp, "big")
        self.left = len(rbsp) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("parameter set ends early")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code in a parameter set")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)
