"""One pass over an open source: what its two loops share (shared.media.decode, shared.media.demux).

- `Pass.packets()`: the container's packets in order; a read error is a SourceError naming the
  source (a live stream that closes ends the pass instead).
- `Pass.decode()` and `Health`: a packet that does not decode is skipped and counted (passed-through
  video, checked by decoding it as a receiver would, then waits for its next key frame). Only a stream that decodes nothing for
  SOURCE_TIMEOUT_SECONDS of media fails the source: FFmpeg's own player plays on over a corrupt
  stretch, and so does the push.
- `Pass.audio()`: decoded audio placed on the timeline (shared.media.timeline) and cut into room
  frames (shared.media.convert).
- `Interleaver`: frames of both streams handed out in timestamp order.

The loops are handed what they read explicitly (`Opened`: the container, its two streams and how
to name a failure), as aiortc's player workers are handed their container and streams: they never
reach into shared.media.source, which opens the input and runs them.
"""
from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import av

from shared.media.convert import AccessUnitCheck, AudioConverter, H264Passthrough, VideoConverter
from shared.media.frames import AudioFrame, Frame
from shared.media.timeline import Timeline
from shared.runtime import RunLogger

# How far one stream may run ahead of the other in the interleaving buffer before it is released
# anyway (a stream that ended early, or a long gap in one of them).
MAX_INTERLEAVE_MS = 2000
# A passthrough stream must show a key frame within this much media time, or it cannot be sent.
MAX_WAIT_FOR_KEY_MS = 20_000


@dataclass(frozen=True)
class Opened:
    """An opened input as the reading loops see it: the container and the streams pushed (None:
    absent), and how a failure names the source."""

    container: av.container.InputContainer
    video: Any  # av.VideoStream | None
    audio: Any  # av.AudioStream | None
    passthrough: bool  # video is sent as the source's own access units
    is_live: bool
    is_file: bool  # a local file (a read error says "truncated or corrupt", never "connection lost")
    name: str  # the URL as it may be shown
    log: RunLogger
    fail: Callable[[str], Exception]  # reason -> the error naming the source
    reason: Callable[[BaseException], str]  # a person-readable reason from a PyAV error


@dataclass(frozen=True)
class PassSpec:
    """What one pass over the source is asked to do."""

    start_ms: int  # source time to start at (0 for every pass after the first)
    first: bool  # the push's first pass: frames before start_ms are dropped
    last: bool  # no pass follows: the last audio frame is padded out instead of carried over
    audio_from_key: bool  # passthrough: audio starts with the first key frame, not at start_ms


class Health:
    """Undecodable packets of a source, per stream: skipped, counted, and given up on only when a
    stream has decoded nothing for `window_ms` of media."""

    def __init__(self, window_ms: int, fail: Callable[[str], Exception], log: RunLogger, name: str):
        self.window_ms = window_ms
        self._fail = fail
        self._log = log
        self._name = name
        self.skipped = 0  # undecodable packets, and pictures dropped waiting for a key frame
        self.in_a_row: dict[str, int] = {}
        self._since: dict[str, int] = {}  # stream -> source ms since which nothing decoded

    def ok(self, kind: str, ms: int | None) -> None:
        self.in_a_row[kind] = 0
        if ms is not None:
            self._since[kind] = ms

    def bad(self, kind: str, ms: int | None, error: BaseException) -> None:
        self.skipped += 1
        n = self.in_a_row[kind] = self.in_a_row.get(kind, 0) + 1
        if self.skipped <= 3 or self.skipped % 100 == 0:
            self._log.warning("undecodable frame skipped", source=self._name, stream=kind, skipped=self.skipped,
                              error=str(getattr(error, "strerror", None) or error))
        since = self._since.setdefault(kind, ms) if ms is not None else self._since.get(kind)
        # Without timestamps, count a packet as one 40 ms frame.
        span = (ms - since) if ms is not None and since is not None else n * 40
        if span > self.window_ms:
            raise self._fail(f"nothing on its {kind} stream decoded for {span / 1000:.1f} s of media "
                             f"({n} undecodable {kind} frames in a row; corrupt source)")

    def dropped(self) -> None:
        self.skipped += 1

    def new_pass(self) -> None:
        self.in_a_row.clear()
        self._since.clear()


class Interleaver:
    """Frames of both streams in pts order. Passthrough holds audio until the first key frame
    (nothing before it can be shown), then drops audio before it when asked to."""

    def __init__(self, has_audio: bool, has_video: bool, hold_audio: bool, fail: Callable[[str], Exception]):
        self.aq: collections.deque[Frame] = collections.deque()
        self.vq: collections.deque[Frame] = collections.deque()
        self.a_done = not has_audio
        self.v_done = not has_video
        self.hold_audio = hold_audio
        self._audio_from: int | None = None
        self._fail = fail

    def key_found(self, at_ms: int, drop_earlier_audio: bool) -> None:
        self.hold_audio = False
        if drop_earlier_audio:
            self._audio_from = at_ms
            kept = [f for f in self.aq if f.pts_ms >= at_ms]
            self.aq.clear()
            self.aq.extend(kept)

    def audio(self, frames: Iterable[Frame]) -> None:
        for f in frames:
            if self._audio_from is not None:
                if f.pts_ms < self._audio_from:
                    continue
                self._audio_from = None  # only until the first one at or after it
            self.aq.append(f)

    def video(self, frames: Iterable[Frame]) -> None:
        self.vq.extend(frames)

    def release(self, final: bool) -> Iterator[Frame]:
        aq, vq = self.aq, self.vq
        while aq or vq:
            if self.hold_audio and not self.v_done:
                if aq and aq[-1].pts_ms - aq[0].pts_ms > MAX_WAIT_FOR_KEY_MS:
                    raise self._fail(f"no H.264 key frame within {MAX_WAIT_FOR_KEY_MS // 1000} s of media")
                return
            if aq and vq:
                q = aq if aq[0].pts_ms <= vq[0].pts_ms else vq
            elif final or (aq and self.v_done) or (vq and self.a_done):
                q = aq or vq
            else:
                q = aq or vq
                if q[-1].pts_ms - q[0].pts_ms <= MAX_INTERLEAVE_MS:
                    return
            yield q.popleft()


class Pass:
    """One pass: the opened input, the push's timeline and converters, and the buffer."""

    def __init__(self, opened: Opened, spec: PassSpec, timeline: Timeline, aconv: AudioConverter | None,
                 vconv: VideoConverter | None, health: Health, primed: list[av.Packet]):
        self.opened = opened
        self.spec = spec
        self.timeline = timeline
        self.aconv = aconv
        self.vconv = vconv
        self.health = health
        self.video_stream: Any = opened.video
        self.audio_stream: Any = opened.audio
        self.h264 = H264Passthrough(self.video_stream) if opened.passthrough and self.video_stream else None
        self.check = AccessUnitCheck() if self.h264 is not None else None
        self.buffer = Interleaver(self.audio_stream is not None, self.video_stream is not None,
                                  hold_audio=self.h264 is not None, fail=opened.fail)
        self.resyncing = False  # undecodable video: what follows waits for a key frame
        self.before_start = spec.first  # decoded pictures before the start are dropped
        self._primed = primed
        health.new_pass()
        if aconv is not None and spec.first and not (self.h264 is not None and spec.audio_from_key):
            aconv.drop_before_ms = spec.start_ms  # sample-exact start

    # --- packets ---------------------------------------------------------------------------------

    def packets(self) -> Iterator[av.Packet]:
        src = self.opened
        streams = [s for s in (self.video_stream, self.audio_stream) if s is not None]
        demux = itertools.chain(self._primed, src.container.demux(streams))
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.ExitError as e:
                raise src.fail(src.reason(e)) from None
            except av.FFmpegError as e:
                if src.is_live and self.timeline.reached_ms is not None:
                    # A live stream that closes (the broadcaster stopped) ends the push normally.
                    src.log.warning("live source ended", source=src.name, error=src.reason(e))
                    return
                pos = self.timeline.reached_ms
                at = f" after {pos / 1000:.1f} s" if pos is not None else ""
                what = ("file truncated or corrupt" if src.is_file
                        else "connection lost, or file truncated or corrupt")
                raise src.fail(f"read failed{at} ({what}): {src.reason(e)}") from None
            if packet.size == 0 and packet.pts is None and packet.dts is None:
                continue  # a demuxer's flush packet
            yield packet

    def packet_ms(self, packet: av.Packet) -> int | None:
        ts = packet.pts if packet.pts is not None else packet.dts
        return self.timeline.source_ms(ts, packet.time_base)

    # --- decoding --------------------------------------------------------------------------------

    def decode(self, stream: Any, packet: av.Packet | None) -> list[Any]:
        """Decoded frames, or none when the packet does not decode (skipped and counted)."""
        try:
            frames = stream.codec_context.decode(packet)
        except av.FFmpegError as e:
            if packet is None:
                return []
            self.undecodable(stream.type, self.packet_ms(packet), e)
            return []
        if frames:
            f = frames[-1]
            self.health.ok(stream.type, self.timeline.source_ms(f.pts, f.time_base or stream.time_base))
        return frames

    def undecodable(self, kind: str, ms: int | None, error: BaseException) -> None:
        self.health.bad(kind, ms, error)
        if kind == "video" and self.h264 is not None:
            self.resyncing = True  # passed-through units after it refer to what was lost

    def damaged(self, data: bytes, unit: av.Packet) -> bool:
        """Passthrough: True for an access unit that would reach the room broken (flagged corrupt
        by the demuxer, or failing the decode check); it is skipped and counted as undecodable, and
        video waits for its next key frame."""
        assert self.check is not None
        why = "flagged corrupt by the demuxer" if unit.is_corrupt else self.check.damaged(data)
        if why is None:
            return False
        self.undecodable("video", self.packet_ms(unit), ValueError(why))
        return True

    def video_resumes(self, key: bool) -> bool:
        """Passthrough: False while video waits for its next key frame after an undecodable unit
        (the unit is dropped and counted): a receiver would decode garbage from lost references."""
        if not self.resyncing:
            return True
        if not key:
            self.health.dropped()
            return False
        self.resyncing = False
        self.opened.log.info("video resumes at a key frame after undecodable frames", source=self.opened.name,
                             skipped=self.health.skipped)
        return True

    def audio(self, decoded: list[av.AudioFrame]) -> list[AudioFrame]:
        assert self.aconv is not None
        out: list[AudioFrame] = []
        tb = self.audio_stream.time_base
        for frame in decoded:
            src = self.timeline.source_seconds(frame.pts, frame.time_base or tb)
            at, keep = self.timeline.audio(src, frame.samples, frame.sample_rate)
            out += self.aconv.push(frame, at, keep)
        return out

    def end_audio(self) -> None:
        """The decoder's last frames; on the last pass also the converter's last, padded frame
        (otherwise it is carried over to begin the next pass)."""
        if self.audio_stream is None:
            return
        out = self.audio(self.decode(self.audio_stream, None))
        if self.spec.last and self.aconv is not None:
            out += self.aconv.flush()
        self.buffer.audio(out)

    def finish(self) -> Iterator[Frame]:
        self.buffer.a_done = self.buffer.v_done = True
        yield from self.buffer.release(True)
