"""A loop's way back to a source's very first packets, for its next pass: tried, and checked.

Demuxers differ in where a seek to the start lands: MP4 after AAC's priming packet (a click in the
middle of the loop), MPEG-TS at the first audio packet, past the video key frame written before it
(the first GOP lost at every seam), HLS with B-frames refuses its origin or lands a GOP late. So the
first packet of each pushed stream is noted at open (`read_head`), and `rewind_to_head` tries each
way back in turn, keeping the first that lands at or before every one of them (video on a key
frame). The packets read to check are handed back, to be replayed. When none gets there the caller
opens the source again (shared.media.source).

Free functions handed their container and streams, as aiortc's player loops are.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

import av

# Packets read at most, at open and after a seek, to see each pushed stream's first packet.
HEAD_PACKETS = 256

Head = dict[int, tuple[int, bool]]  # stream index -> its first packet's (timestamp, key frame)


def _media(packets: Iterator[av.Packet]) -> Iterator[tuple[av.Packet, Optional[int]]]:
    """Packets with their timestamp (pts, else dts), without the demuxer's flush packets."""
    for packet in packets:
        if packet.size == 0 and packet.pts is None:
            continue
        yield packet, packet.pts if packet.pts is not None else packet.dts


def _note(head: Head, wanted: set[int], packet: av.Packet, ts: Optional[int]) -> None:
    index = packet.stream.index
    if index in wanted and index not in head and ts is not None:
        head[index] = (ts, bool(packet.is_keyframe))


def read_head(container: av.container.InputContainer, streams: list[Any], primed: list[av.Packet]) -> Head:
    """Each stream's first packet as the source begins: from `primed` (the packets the probe read,
    kept for the first pass), then read on (appended to `primed`) while one is missing."""
    wanted = {s.index for s in streams if s is not None}
    head: Head = {}
    for packet, ts in _media(iter(list(primed))):
        _note(head, wanted, packet, ts)
    if len(head) == len(wanted) or len(primed) >= HEAD_PACKETS:
        return head
    for packet, ts in _media(container.demux()):  # carries on where the probe stopped
        primed.append(packet)
        _note(head, wanted, packet, ts)
        if len(head) == len(wanted) or len(primed) >= HEAD_PACKETS:
            break
    return head


def rewind_to_head(container: av.container.InputContainer, video: Any, audio: Any, origin_us: Optional[int],
                   head: Head) -> Optional[list[av.Packet]]:
    """Seek back to the first packets; the packets read to check (to replay first), or None when
    no way of seeking gets there."""
    ways: list[Callable[[], bool]] = [
        lambda: seek_before_audio(container, audio),
        lambda: seek_audio_start(container, audio),
        lambda: seek_origin(container, origin_us),
    ]
    for seek in ways:
        if not seek():
            continue
        flush(video, audio)
        read = _landed_at(container, head, None if video is None else video.index)
        if read is not None:
            return read
    return None


def _landed_at(container: av.container.InputContainer, head: Head, video: Optional[int]) -> Optional[list[av.Packet]]:
    """The packets read until each stream showed its first, when each is at or before where it
    began at open (video: on a key frame); else None."""
    if not head:
        return []  # nothing to check against: trust the seek
    read: list[av.Packet] = []
    seen: Head = {}
    try:
        for packet, ts in _media(container.demux()):
            read.append(packet)
            _note(seen, set(head), packet, ts)
            if len(seen) == len(head) or len(read) >= HEAD_PACKETS:
                break
    except av.FFmpegError:
        return None
    for index, (ts, key) in head.items():
        got = seen.get(index)
        if got is None or got[0] > ts or (index == video and key and not got[1]):
            return None
    return read


def flush(*streams: Any) -> None:
    """Decoders forget what they held before a seek."""
    for s in streams:
        if s is not None:
            s.codec_context.flush_buffers()


def seek_origin(container: av.container.InputContainer, origin_us: Optional[int]) -> bool:
    """The container's own seek to its start (the key frame at or before it)."""
    try:
        container.seek(origin_us or 0, backward=True, any_frame=False)
    except av.FFmpegError:
        return False
    return True


def seek_audio_start(container: av.container.InputContainer, audio: Any) -> bool:
    """A seek on the audio stream to its first timestamp exactly: HLS checks a seek against the
    first timestamp it handed out (an audio one), and keeps what follows the audio it lands on."""
    if audio is None or audio.start_time is None:
        return False
    try:
        container.seek(audio.start_time, stream=audio, backward=True)
    except av.FFmpegError:
        return False
    return True


def seek_before_audio(container: av.container.InputContainer, audio: Any) -> bool:
    """Back to the very first audio packet, the codec's priming one included (AAC's has a negative
    timestamp): a seek to 0 skips it, and the decoder then starts with silence where its overlap is
    missing, a click in the middle of a loop. False when the container refuses."""
    if audio is None or not audio.time_base:
        return False
    before = (audio.start_time or 0) - int(10 / audio.time_base)
    try:
        container.seek(before, stream=audio, backward=True, any_frame=True)
    except av.FFmpegError:
        return False
    return True
