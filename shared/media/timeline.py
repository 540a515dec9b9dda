"""The push's media timeline: the one place on the push side where timestamps are decided.

The source decodes (or demuxes) and asks the timeline where each item goes; what it hands out is
one timeline per push in integer milliseconds (audio as exact positions at 48 kHz), rising per
stream, audio and video in sync, and the passes of a loop end to end. The converters place what
they are told, the pacer only paces and the pusher only sends. The record side has its own single
place, `shared.record.writer.RecordTimeline`.

Which jumps it absorbs, and how ("step" is a stream's usual frame length):

- The source's origin: the container's start time (a live source: its first timestamp) is 0, and
  the first pass keeps the source's own time (a push from 5 s starts at 5000 ms).
- Audio jitter (rounded timestamps, 1024- or 1152-sample codec frames against 20 ms room frames, HLS
  seams a few ms apart): while a decoded audio frame starts within AUDIO_RESYNC_MS of where the
  samples so far end, its samples follow on sample-exactly (no click, no gap). Further away, audio
  restarts at the new place and the room frame in progress is padded with silence (a real gap).
- A gap in one stream that lands where the other stream is: kept (the time really passed).
- A forward jump of more than MAX_JUMP_MS that lands more than FAR_MS from the other stream (an
  HLS seam with a new clock, a broken file): the stream continues one step after its last item.
- A stream whose first item is more than FAR_MS from where the other one is: it joins there.
  (FAR_MS is larger than the streams ever are apart in a file's packet order, which is the order
  the timeline sees them in.)
- A jump back (a timestamp reset, a broken file): the stream continues one step after the furthest
  item handed out, audio sample-exactly when that is within AUDIO_RESYNC_MS. A decoded picture less
  than DUPLICATE_MS behind its predecessor is a duplicate and is dropped.
- A loop: the next pass starts where this one ended: at the exact end of its audio when the audio
  ends after the last picture (so a clip made to loop loops without a click and audio never drifts
  from video, however many loops), else after the longer stream (the audio gap is silence). Audio
  past the source's declared end is codec padding, not media, and is not handed out.
"""
from __future__ import annotations

from fractions import Fraction

# Audio closer than this to where its samples so far end is the same place (jitter, seams).
AUDIO_RESYNC_MS = 200
# A jump larger than this, landing more than FAR_MS from the other stream, is not time that passed.
MAX_JUMP_MS = 1000
FAR_MS = 3000
# A decoded picture this little behind the previous one is a duplicate, not a timestamp reset.
DUPLICATE_MS = 100

AUDIO = "audio"
VIDEO = "video"
_RESYNC = Fraction(AUDIO_RESYNC_MS, 1000)


def _ms(seconds: Fraction) -> int:
    return int(seconds * 1000)  # floor for positive values: a frame never starts before its samples


class Timeline:
    """Maps source timestamps (ms since the source's origin, per pass) to the push's timeline.

    `frame_ms`: the video frame length (the step after a jump). `origin_us`: the source's start
    time (None: the first timestamp seen, for live sources). `end_ms`: the source's declared end
    when it is exact (audio after it is dropped), else None.
    """

    def __init__(self, frame_ms: int, origin_us: int | None = None, end_ms: int | None = None):
        self.frame_ms = max(1, int(frame_ms))
        self._origin_us = origin_us
        self.end_ms = end_ms
        self.passes = 0  # passes ended so far
        self._offset = Fraction(0)  # where this pass's source time 0 is on the timeline (seconds)
        self._shift_ms = 0  # video: this pass's correction for jumps, ms
        self._audio_shift = Fraction(0)  # audio: the same, seconds
        self._last: dict[str, int] = {}  # stream -> timeline ms of its last item
        self._step: dict[str, int] = {}  # stream -> its last regular step, ms (video)
        self._line: int | None = None  # the furthest timeline ms handed out on any stream
        self._audio_next: Fraction | None = None  # where the audio samples so far end (seconds)
        self._pass_audio = False
        self._pass_video = False
        self.reached_ms: int | None = None  # the furthest source ms of this pass handed out

    # --- the source's own time -------------------------------------------------------------------

    def source_ms(self, ts: int | None, time_base: Fraction | None) -> int | None:
        """A stream timestamp as ms since the source's origin (None when it has none)."""
        if ts is None or time_base is None:
            return None
        if self._origin_us is None:
            self._origin_us = int(ts * time_base * 1_000_000)  # a live source starts at its first timestamp
        return round(ts * time_base * 1000) - self._origin_us // 1000

    def source_seconds(self, ts: int | None, time_base: Fraction | None) -> Fraction | None:
        """The same, exact (audio positions are kept to the sample)."""
        if ts is None or time_base is None:
            return None
        if self._origin_us is None:
            self._origin_us = int(ts * time_base * 1_000_000)
        return ts * time_base - Fraction(self._origin_us // 1000, 1000)

    @property
    def offset_ms(self) -> int:
        """Where this pass's source time 0 is on the timeline (0 for the first pass)."""
        return _ms(self._offset)

    # --- video -----------------------------------------------------------------------------------

    def video(self, src_ms: int | None, picture: bool = True) -> int | None:
        """The timeline ms of a video item at `src_ms` (None: one frame after the last), or None
        to drop it (a duplicate picture). `picture`: a decoded picture (an access unit cannot be
        dropped without breaking its GOP, so it is moved instead)."""
        last = self._last.get(VIDEO)
        if src_ms is None:  # no timestamp: one frame after the last (the first: at the start)
            src_ms = 0 if last is None else last + self.frame_ms - self.offset_ms - self._shift_ms
        at = src_ms + self.offset_ms + self._shift_ms
        if last is None:
            at = self._join(at, VIDEO)
        elif at <= last:
            back = last - at
            if picture and back < DUPLICATE_MS:
                return None
            at = max(last, self._line or last) + self.frame_ms if back >= DUPLICATE_MS else last + 1
        elif at - last > MAX_JUMP_MS and self._far(at, VIDEO):
            at = last + min(self._step.get(VIDEO, self.frame_ms), MAX_JUMP_MS)
        else:
            self._step[VIDEO] = at - last
        self._shift_ms = at - src_ms - self.offset_ms
        self._pass_video = True
        self._hand_out(VIDEO, at)
        return at

    def video_dts(self, src_dts_ms: int | None, src_pts_ms: int, at: int) -> int:
        """An access unit's dts moved as its pts was (never after the pts)."""
        if src_dts_ms is None:
            return at
        return min(at, at - (src_pts_ms - src_dts_ms))

    # --- audio -----------------------------------------------------------------------------------

    def audio(self, src: Fraction | None, samples: int, rate: int) -> tuple[Fraction, int | None]:
        """Where a decoded audio frame of `samples` at `rate` starting at `src` (seconds since the
        origin; None: right after the last one) goes, in timeline seconds; and how many of its
        samples to keep (None: all, 0: none) when it runs past the source's declared end."""
        expected = self._audio_next
        if src is None:
            at = expected if expected is not None else self._offset
        else:
            at = src + self._offset + self._audio_shift
            if expected is None:
                at = self._join_exact(at)
            elif abs(at - expected) <= _RESYNC:
                at = expected  # jitter: the samples follow on
            elif at < expected:
                # Back (a reset): after the furthest item handed out, sample-exact if that is close.
                line = Fraction(self._line or 0, 1000)
                at = expected if line - expected <= _RESYNC else line
            elif _ms(at - expected) > MAX_JUMP_MS and self._far(_ms(at), AUDIO):
                at = expected
            # else: a real gap in the audio; it restarts at `at`
            self._audio_shift = at - src - self._offset
        keep: int | None = None
        if self.end_ms is not None:
            end = self._offset + Fraction(self.end_ms, 1000)
            if at + Fraction(samples, rate) > end:
                keep = max(0, int((end - at) * rate))
        length = Fraction(samples if keep is None else keep, rate)
        self._audio_next = at + length
        if keep != 0:
            self._pass_audio = True
            self._hand_out(AUDIO, _ms(at))
        return at, keep

    # --- passes ----------------------------------------------------------------------------------

    def end_pass(self) -> int:
        """The pass ended: the next one continues after it. Returns the next pass's offset, ms."""
        a_end = self._audio_next if self._pass_audio else None
        v_last = self._last.get(VIDEO) if self._pass_video else None
        v_end = None if v_last is None else Fraction(v_last + self.frame_ms, 1000)
        if a_end is not None and (v_last is None or _ms(a_end) > v_last):
            nxt = a_end  # sample-exact: the next pass's audio follows on without a gap
        else:
            nxt = max(e for e in (a_end, v_end, Fraction(self._line or 0, 1000)) if e is not None)
        self._offset = nxt
        self._shift_ms = 0
        self._audio_shift = Fraction(0)
        self._pass_audio = self._pass_video = False
        self.reached_ms = None
        self.passes += 1
        return self.offset_ms

    # --- shared ----------------------------------------------------------------------------------

    def _far(self, at_ms: int, kind: str) -> bool:
        """More than FAR_MS from the other stream (from its own last item when it is alone)."""
        other = self._last.get(VIDEO if kind == AUDIO else AUDIO, self._last.get(kind))
        return other is not None and abs(at_ms - other) > FAR_MS

    def _join(self, at: int, kind: str) -> int:
        """A stream's first item far from where the other stream is joins it there."""
        return self._line if self._line is not None and self._far(at, kind) else at

    def _join_exact(self, at: Fraction) -> Fraction:
        return Fraction(self._line, 1000) if self._line is not None and self._far(_ms(at), AUDIO) else at

    def _hand_out(self, kind: str, at_ms: int) -> None:
        self._last[kind] = at_ms
        if self._line is None or at_ms > self._line:
            self._line = at_ms
        pos = at_ms - self.offset_ms
        if self.reached_ms is None or pos > self.reached_ms:
            self.reached_ms = pos
