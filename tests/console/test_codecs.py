"""What the console reads from relayed media without decoding it: the SPS (size, WebCodecs codec
string) and the Opus channel count, checked against what PyAV/libx264/libopus make."""
from __future__ import annotations

import fractions
from pathlib import Path

import av
import pytest

from emulator.console.codecs import nal_units, opus_channels, video_facts
from emulator.media import make_clip


def _first_key_frame_annexb(path: Path) -> tuple[bytes, int, int, str | None]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", stream)
        for packet in c.demux(stream):
            for out in bsf.filter(packet):
                if out.is_keyframe:
                    ctx = stream.codec_context
                    return bytes(out), ctx.width, ctx.height, ctx.profile
    raise AssertionError("no key frame")


@pytest.mark.parametrize("video, width, height, codec_prefix", [
    ("h264", 320, 240, "avc1.42"),        # constrained baseline, a multiple of 16
    ("h264", 322, 242, "avc1.42"),        # cropped to a size that is not
    ("h264-bframes", 1280, 720, "avc1.4d"),  # main profile
])
def test_the_sps_gives_the_picture_size_and_the_codec_string(tmp_path: Path, video: str, width: int, height: int,
                                                             codec_prefix: str):
    clip = make_clip(tmp_path / "c.mp4", duration=0.2, video=video, width=width, height=height, audio=None)
    unit, w, h, _ = _first_key_frame_annexb(clip)
    facts = video_facts(unit)
    assert facts is not None
    assert (facts.width, facts.height) == (w, h) == (width, height)
    assert facts.codec.startswith(codec_prefix) and len(facts.codec) == len("avc1.42c01e")


def test_a_high_profile_sps_with_its_extra_fields(tmp_path: Path):
    out_path = tmp_path / "high.mp4"
    with av.open(str(out_path), "w") as out:
        vs = out.add_stream("libx264", rate=25, options={"profile": "high", "preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = 426, 240, "yuv420p"
        for i in range(3):
            f = av.VideoFrame(426, 240, "yuv420p")
            for plane in f.planes:
                plane.update(bytes([100]) * plane.buffer_size)
            f.pts, f.time_base = i, fractions.Fraction(1, 25)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
    unit, w, h, profile = _first_key_frame_annexb(out_path)
    facts = video_facts(unit)
    assert profile == "High" and facts is not None
    assert (facts.width, facts.height, facts.codec[:7]) == (426, 240, "avc1.64")


def test_nal_units_split_on_three_and_four_byte_start_codes():
    data = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\xcc\xdd"
    assert list(nal_units(data)) == [b"\x67\xaa", b"\x68\xbb", b"\x65\xcc\xdd"]
    assert video_facts(b"\x00\x00\x01\x65\x00\x11") is None  # a unit without SPS
    assert video_facts(b"\x00\x00\x01\x67\x42") is None  # an SPS cut short


@pytest.mark.parametrize("layout, channels", [("mono", 1), ("stereo", 2)])
def test_the_opus_toc_gives_the_channel_count(layout: str, channels: int):
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48000, layout, "s16"
    ctx.time_base = fractions.Fraction(1, 48000)
    ctx.open()
    frame = av.AudioFrame(format="s16", layout=layout, samples=960)
    frame.planes[0].update(bytes(960 * 2 * channels))
    frame.sample_rate, frame.pts = 48000, 0
    packets = [bytes(p) for p in ctx.encode(frame)]
    assert packets and all(opus_channels(p) == channels for p in packets)
