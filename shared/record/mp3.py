"""MP3 for Mode 00 through the `lameenc` wheel (LAME 3.100), cut into segments of whole frames.

Why not PyAV's libmp3lame: the same LAME behind PyAV costs about 4x the CPU here (PyAV's bundled
build), and lameenc at quality 3 is a little cheaper than Debian's ffmpeg.

- `Mp3Encoder`      48 kHz s16 PCM (mono or stereo) in, whole MPEG-1 Layer III frames out
                     (64 kbit/s per channel, CBR, quality 3: what writer.py asks of libmp3lame).
- `split_frames`     the frame lengths in a run of MP3 bytes (and what is left of a partial frame).
- `info_frame`       the Xing "Info" frame with LAME's extension that starts a final file: frame
                     count, byte count, seek table, and the encoder delay and padding, so that a
                     player reads the right duration at once and trims LAME's priming samples.
- `hls_timestamp_tag` the ID3 PRIV tag that starts each HLS packed-audio segment (RFC 8216 3.4).

A segment is a run of whole frames; segments concatenated are one valid MP3 stream (LAME's bit
reservoir may reach back across a cut, which is fine when they are played in order).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

SAMPLE_RATE = 48_000
SAMPLES_PER_FRAME = 1152  # MPEG-1 Layer III
BITRATE_PER_CHANNEL_KBPS = 64  # as writer.py: 64 kbit/s mono, 128 kbit/s stereo
QUALITY = 3  # LAME's -q 3: ffmpeg's -compression_level 3
# LAME's encoder delay (lame_get_encoder_delay with no resampling); the decoder adds 528 + 1.
ENCODER_DELAY = 576
DECODER_DELAY = 529

_BITRATES_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)  # MPEG-1 L3
_SAMPLE_RATES = (44100, 48000, 32000)


@dataclass(frozen=True)
class FrameHeader:
    bitrate_kbps: int
    sample_rate: int
    padding: int
    channels: int

    @property
    def length(self) -> int:
        return 144 * self.bitrate_kbps * 1000 // self.sample_rate + self.padding


def parse_header(data: bytes | memoryview, offset: int = 0) -> FrameHeader | None:
    """The MPEG-1 Layer III frame header at `offset`, or None when there is none."""
    if len(data) - offset < 4:
        return None
    b0, b1, b2, b3 = data[offset:offset + 4]
    if b0 != 0xFF or (b1 & 0xFE) != 0xFA:  # sync, MPEG-1, Layer III (CRC bit either way)
        return None
    br, sr = b2 >> 4, (b2 >> 2) & 3
    if br in (0, 15) or sr == 3:
        return None
    return FrameHeader(_BITRATES_KBPS[br], _SAMPLE_RATES[sr], (b2 >> 1) & 1, 1 if (b3 >> 6) == 3 else 2)


def split_frames(data: bytes | memoryview) -> tuple[list[int], int]:
    """(lengths of the whole frames at the start of `data`, bytes they cover)."""
    lengths: list[int] = []
    offset = 0
    while True:
        header = parse_header(data, offset)
        if header is None or offset + header.length > len(data):
            return lengths, offset
        lengths.append(header.length)
        offset += header.length


class Mp3Encoder:
    """PCM in, whole frames out. Not thread-safe; one per file (or per segmented stay)."""

    def __init__(self, channels: int = 1, quality: int = QUALITY):
        import lameenc

        if channels not in (1, 2):
            raise ValueError(f"MP3 takes 1 or 2 channels, not {channels}")
        self.channels = channels
        self.bitrate_kbps = BITRATE_PER_CHANNEL_KBPS * channels
        self._lame = lameenc.Encoder()
        self._lame.set_in_sample_rate(SAMPLE_RATE)
        self._lame.set_out_sample_rate(SAMPLE_RATE)
        self._lame.set_channels(channels)
        self._lame.set_bit_rate(self.bitrate_kbps)
        self._lame.set_quality(quality)
        self._pending = b""  # a partial frame from LAME (it hands out whole frames, but be safe)
        self.samples_in = 0  # PCM samples (per channel) given
        self.frames_out = 0
        self._flushed = False

    def encode(self, pcm: bytes) -> list[bytes]:
        """Encode interleaved s16 PCM; the frames that are complete."""
        if self._flushed:
            raise ValueError("the encoder was flushed")
        if not pcm:
            return []
        self.samples_in += len(pcm) // (2 * self.channels)
        return self._frames(bytes(self._lame.encode(pcm)))

    def flush(self) -> list[bytes]:
        """The last frames (LAME pads the final one); the encoder takes no more PCM after this."""
        if self._flushed:
            return []
        self._flushed = True
        return self._frames(bytes(self._lame.flush()), final=True)

    def _frames(self, data: bytes, final: bool = False) -> list[bytes]:
        buf = self._pending + data
        lengths, used = split_frames(buf)
        self._pending = b"" if final else buf[used:]
        out, offset = [], 0
        for n in lengths:
            out.append(buf[offset:offset + n])
            offset += n
        self.frames_out += len(out)
        return out

    @property
    def end_padding(self) -> int:
        """Samples LAME added after the PCM (what a player trims at the end)."""
        return max(0, self.frames_out * SAMPLES_PER_FRAME - ENCODER_DELAY - self.samples_in)


# --- the Info frame ---------------------------------------------------------------------------------


def _crc16(data: bytes) -> int:
    """CRC-16/ARC (poly 0xA001 reflected, init 0): the LAME tag's checksum."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def info_frame(frames: int, audio_bytes: int, *, channels: int = 1,
               bitrate_kbps: int | None = None, sample_rate: int = SAMPLE_RATE,
               delay: int = ENCODER_DELAY, padding: int = 0) -> bytes:
    """A silent frame carrying the Xing "Info" tag (CBR) and LAME's extension.

    `frames` and `audio_bytes` count the audio frames after it (the tag's byte count includes the
    tag frame itself, as LAME and ffmpeg write it); `delay`/`padding` are the samples a decoder
    trims at the start (plus its own 529) and at the end.
    """
    bitrate_kbps = bitrate_kbps or BITRATE_PER_CHANNEL_KBPS * channels
    br_index = _BITRATES_KBPS.index(bitrate_kbps)
    sr_index = _SAMPLE_RATES.index(sample_rate)
    mode = 3 if channels == 1 else 0  # mono, or plain stereo
    header = bytes([0xFF, 0xFB, (br_index << 4) | (sr_index << 2), (mode << 6)])
    length = 144 * bitrate_kbps * 1000 // sample_rate
    side_info = 17 if channels == 1 else 32
    total = audio_bytes + length
    toc = bytes(min(255, i * 256 // 100) for i in range(100))  # CBR: byte offset grows linearly
    tag = b"Info" + struct.pack(">III", 0x0F, frames, total) + toc + struct.pack(">I", 0)
    lame = bytearray()
    lame += b"LAME3.100"
    lame += bytes([0x01])  # tag revision 0, VBR method 1 (CBR)
    lame += bytes([min(255, 17000 // 100)])  # lowpass / 100 Hz (informational)
    lame += struct.pack(">f", 0.0)  # peak signal (unknown)
    lame += struct.pack(">HH", 0, 0)  # radio / audiophile replay gain
    lame += bytes([0])  # encoding flags + ATH type
    lame += bytes([min(255, bitrate_kbps)])
    d, p = max(0, min(4095, delay)), max(0, min(4095, padding))
    lame += bytes([d >> 4, ((d & 0x0F) << 4) | (p >> 8), p & 0xFF])
    lame += bytes([0, 0]) + struct.pack(">H", 0)  # misc, MP3 gain, preset/surround
    lame += struct.pack(">I", total)  # music length: every byte from the tag frame on
    lame += struct.pack(">H", 0)  # music CRC (not computed: nobody checks it)
    body = header + bytes(side_info) + tag + bytes(lame)
    body += struct.pack(">H", _crc16(body))  # the tag CRC covers everything before it
    return body + bytes(length - len(body))


def final_header(frames: int, audio_bytes: int, channels: int, samples: int | None) -> bytes:
    """The Info frame for a final file of `frames` frames (`audio_bytes` bytes) made from
    `samples` PCM samples (None when unknown, as in a recovered recording: no end trim)."""
    padding = 0 if samples is None else max(0, frames * SAMPLES_PER_FRAME - ENCODER_DELAY - samples)
    return info_frame(frames, audio_bytes, channels=channels, padding=padding)


# --- HLS packed audio -------------------------------------------------------------------------------

_TS_OWNER = b"com.apple.streaming.transportStreamTimestamp\x00"


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def hls_timestamp_tag(start_samples: int, sample_rate: int = SAMPLE_RATE) -> bytes:
    """ID3v2.4 with the PRIV frame HLS asks of each packed-audio segment: the 33-bit MPEG-2 (90 kHz)
    time of its first sample."""
    ts = (start_samples * 90_000 // sample_rate) & ((1 << 33) - 1)
    data = _TS_OWNER + struct.pack(">Q", ts)
    frame = b"PRIV" + _syncsafe(len(data)) + b"\x00\x00" + data
    return b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame


HLS_TAG_BYTES = len(hls_timestamp_tag(0))
