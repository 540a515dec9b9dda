"""The decode loop: every stream decoded; pictures become upright YUV420p at the planned size and
rate, audio 20 ms frames. For sources that cannot be passed through (shared.media.plan).

After an undecodable packet the decoder conceals what it lost and plays on, as FFmpeg's own
player does: the pictures it makes are whole, if smeared until the next key frame.
"""
from __future__ import annotations

from typing import Any, Iterator

from shared.media.frames import Frame, PixelFrame
from shared.media.reading import Pass


def decode_pass(p: Pass) -> Iterator[Frame]:
    """One pass over the source, decoding everything; frames in timestamp order."""
    v, a = p.video_stream, p.audio_stream
    for packet in p.packets():
        if packet.stream is v:
            p.buffer.video(_pictures(p, p.decode(v, packet)))
        elif packet.stream is a:
            p.buffer.audio(p.audio(p.decode(a, packet)))
        yield from p.buffer.release(False)
    # End of the source: what the decoders still hold, then everything buffered.
    if v is not None:
        p.buffer.video(_pictures(p, p.decode(v, None)))
    p.end_audio()
    yield from p.finish()


def _pictures(p: Pass, decoded: list[Any]) -> list[PixelFrame]:
    assert p.vconv is not None
    out: list[PixelFrame] = []
    tb = p.video_stream.time_base
    for frame in decoded:
        src = p.timeline.source_ms(frame.pts, frame.time_base or tb)
        if p.before_start:
            if src is not None and src < p.spec.start_ms:
                continue  # before the start (a seek lands on the key frame before it)
            p.before_start = False  # only until the first one: a later timestamp reset is not "before"
        at = p.timeline.video(src, picture=True)
        if at is None:
            continue
        rotation = p.vconv.rotation
        out += p.vconv.push(frame, at)
        if p.vconv.rotation != rotation:
            p.opened.log.info("turning the picture upright, as the source's display matrix says",
                              source=p.opened.name, degrees=p.vconv.rotation)
    return out
