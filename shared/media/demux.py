"""The passthrough loop: the source's H.264 demuxed and sent as it is (Annex-B access units with
SPS/PPS on key frames), audio decoded to 20 ms frames. Video starts, and after undecodable
packets restarts, at a key frame: nothing before one can be shown. Each unit is decoded before it
goes (shared.media.convert.AccessUnitCheck): a damaged one never reaches the room.
"""
from __future__ import annotations

from typing import Iterator

import av

from shared.media.frames import Frame, H264Frame
from shared.media.reading import Pass


def passthrough_pass(p: Pass) -> Iterator[Frame]:
    """One pass over the source, video passed through; frames in timestamp order."""
    v, a = p.video_stream, p.audio_stream
    for packet in p.packets():
        if packet.stream is v:
            p.buffer.video(_access_units(p, packet))
        elif packet.stream is a:
            p.buffer.audio(p.audio(p.decode(a, packet)))
        yield from p.buffer.release(False)
    p.end_audio()
    yield from p.finish()


def _access_units(p: Pass, packet: av.Packet) -> list[H264Frame]:
    assert p.h264 is not None
    try:
        units = p.h264.push(packet)
    except av.FFmpegError as e:
        p.undecodable("video", p.packet_ms(packet), e)
        return []
    p.health.ok("video", p.packet_ms(packet))
    out: list[H264Frame] = []
    for data, key, unit in units:
        src = p.timeline.source_ms(unit.pts if unit.pts is not None else unit.dts, unit.time_base)
        if src is None:
            continue
        if p.buffer.hold_audio:
            if not key:
                p.health.dropped()  # nothing decodes before the first key frame: dropped, and counted
                continue
            if p.damaged(data, unit):
                continue
            # The first key frame fixes where this pass starts (a seek lands at or before the start).
            first = p.timeline.video(src, picture=False)
            assert first is not None
            p.buffer.key_found(first, drop_earlier_audio=p.spec.first and p.spec.audio_from_key)
            at: int | None = first
        elif not p.video_resumes(key) or p.damaged(data, unit):
            continue
        else:
            at = p.timeline.video(src, picture=False)
        assert at is not None
        dts = p.timeline.video_dts(p.timeline.source_ms(unit.dts, unit.time_base), src, at)
        out.append(H264Frame(data, at, key, dts))
    return out
