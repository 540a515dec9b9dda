"""Recording files written as media arrives: one `AnchorRecording` per anchor's stay in the room.

Mode "00" MP3 (LAME through lameenc, from the PCM), "01" MP4 with the room's H.264 or H.265 copied
(never re-encoded; H.265 as `hvc1`), "02" MP4 with the video copied + AAC from the PCM. Each file is written as segments
(segments.py: fragmented MP4 or runs of MP3 frames, one every SegmentDuration of media) that the
recorder uploads as they close, so that a run that dies loses at most the open segment; on its own
(no `on_open` hook) the writer joins them into one file when it closes.

Timing: every frame is placed on one timeline per anchor by `RecordTimeline`, the one place on the
record side where timestamps are decided (its docstring says which jumps it absorbs and how).
Each file has one origin for audio and video, so they stay in sync; audio gaps (a muted microphone,
lost packets) are filled with silence so that the file's timeline is the room's (while a microphone
sends nothing, as time passes, from `tick`). Video starts at a key frame; a new file starts at the
first key frame past MaxMediaFileDuration, and at a key frame with a new picture size or codec
(an anchor that switches between H.264 and H.265); video in another codec than its file's waits
for that key frame, never mixed into the file; a segment
ends at the first key frame past SegmentDuration (one is asked for when it is due).

Memory stays flat: frames go to the segmenter as they come, nothing is held but the one video
access unit whose duration is not known yet, the open segment's fragment in the muxer, and a few
seconds of PCM while a Mode 02 file waits for its first key frame. A fragmented MP4 has no index
that grows with the file.
"""
from __future__ import annotations

import errno
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av

from shared.media.frames import AUDIO_SAMPLE_RATE, CODEC_H264, AudioFrame, H264Frame
from shared.media.h264 import key_frame_dimensions

from .segments import (
    DEFAULT_SEGMENT_S,
    MODE_MP3,
    MODE_MP4_AV,
    MODE_MP4_VIDEO,
    Segmenter,
    SegmentInfo,
    join,
    local_segments,
)
from .taps import MediaTap

EXTENSIONS = {MODE_MP3: "mp3", MODE_MP4_VIDEO: "mp4", MODE_MP4_AV: "mp4"}
AUDIO_CODECS = {MODE_MP3: "mp3", MODE_MP4_AV: "aac"}

_LAYOUTS = {1: "mono", 2: "stereo"}
SAMPLES_20MS = AUDIO_SAMPLE_RATE // 50

# A sender's pts that disagrees with the arrival clock by more than this has jumped: re-anchor.
REBASE_MS = 1000
# Audio arriving this much later than the samples written so far is a gap: fill it with silence.
GAP_FILL_MS = 30
# Audio this much earlier than what is written is a duplicate or from before a jump: drop it.
LATE_DROP_MS = 200
# How long a Mode 02 file waits (media time) for the first key frame before starting audio-only.
VIDEO_WAIT_MS = 3000
# After MaxMediaFileDuration, how long a video file waits for a key frame before splitting anyway.
SPLIT_GRACE_MS = 5000
KEY_FRAME_ASK_EVERY_S = 1.0
# While an anchor sends no audio (muted, or for this long), silence is written as time passes,
# trailing "now" by FILL_LAG_MS so that a frame on its way still lands after it: an hour-long mute
# costs a second of encoding per second, never an hour of encoding at once.
SILENT_AFTER_MS = 2000
FILL_LAG_MS = 1000
DEFAULT_FRAME_MS = 40  # the duration given to a last video frame when it has no successor
SILENCE_CHUNK = AUDIO_SAMPLE_RATE  # silence is written a second at a time, never one huge buffer
# What an MP4 track can describe and a decoder decode (H.264/H.265 level 6.2's largest picture).
MAX_PICTURE_SIDE = 16384
MAX_PICTURE_AREA = 35_651_584
# An access unit larger than this many bytes per pixel of its picture (1 MB at least) is not a
# picture of that size: a crafted unit, refused before it reaches the muxer.
MAX_UNIT_BYTES_PER_PIXEL = 4
MIN_UNIT_LIMIT = 1 << 20

# A file's local name is "{label}_{stamp}_{part}.{ext}"; the label is ours, never the userId (remote
# input: "../x", "/abs", NUL, 200 characters), which stays in RecordedFile.user_id and the COS key.
_LABEL = re.compile(r"[A-Za-z0-9_-]{1,64}")

# OSError numbers that mean "no room left to write" (a full disk, a quota, a file size limit).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class WriteError(OSError):
    """Writing a recording file failed; `no_space` when the disk (or quota) is full."""

    def __init__(self, path: Path, cause: BaseException):
        code = getattr(cause, "errno", None)
        super().__init__(code, f"writing {path.name} failed: {cause}")
        self.path = path
        self.no_space = code in NO_SPACE_ERRNOS


@dataclass
class RecordedFile:
    """One finished file: what the recorder uploads and reports."""

    user_id: str
    path: Path
    part: int  # 1, 2, ... when MaxMediaFileDuration split the stay
    start_time: float  # wall clock (epoch seconds) of the file's first media
    duration_s: float
    error: str | None = None  # set when the file could not be finalised (it may not play)
    segments: list[SegmentInfo] = field(default_factory=list)  # what the segmenter made, in order
    samples: int = 0  # PCM samples given to the audio encoder (the final MP3's end trim)
    no_space: bool = False  # `error` is the disk (or quota) that filled: what came before is whole

    @property
    def ext(self) -> str:
        return self.path.suffix.lstrip(".")


def _decodes_to(frame: H264Frame, size: tuple[int, int] | None) -> bool:
    """Whether a key frame decodes by itself to a picture of `size` (done once per file it starts)."""
    try:
        ctx = av.CodecContext.create("hevc" if frame.codec == "hevc" else "h264", "r")
        pictures = list(ctx.decode(av.Packet(frame.data))) + list(ctx.decode(None))
    except (av.FFmpegError, ValueError):
        return False
    return any((p.width, p.height) == size for p in pictures)


# --- one file ------------------------------------------------------------------------------------


class _Part:
    """One open file: its segmenter and cursors, all relative to `origin_ms`.

    Its media goes to a Segmenter (segments.py) as it comes; each closed segment is handed to
    `on_segment` (the recorder uploads it). Without `on_segment` nobody takes them, and close()
    joins them into `path`, the one file a caller of the writer alone expects.
    """

    def __init__(self, path: Path, number: int, mode: str, origin_ms: int, start_time: float,
                 channels: int, video_size: tuple[int, int] | None, segment_s: float = DEFAULT_SEGMENT_S,
                 on_segment: Callable[[SegmentInfo], None] | None = None, key_frame: H264Frame | None = None,
                 tap: MediaTap | None = None):
        self.path = path
        self.tap = tap  # issue 21's outputs beside the file (slices, snapshots, trimmed copy)
        self.number = number
        self.origin_ms = origin_ms
        self.start_time = start_time
        self.channels = channels
        self.samples = 0  # audio samples written (silence included)
        self.video_end_ms = 0  # end of the last video frame written, relative to origin
        self.last_dts: int | None = None
        self.held: tuple[bytes, bool] | None = None  # the last access unit, waiting for its duration
        self.held_pts = 0
        self.last_duration = DEFAULT_FRAME_MS
        self.has_video = video_size is not None
        self.video_size = video_size
        self.video_codec = key_frame.codec if key_frame is not None else CODEC_H264
        self.audio = AUDIO_CODECS.get(mode)  # the audio codec, None when the file has no audio
        self.local = on_segment is None
        self.seg = Segmenter(path.parent, mode, channels, video_size, segment_s, on_segment,
                             name_prefix=path.stem + ".", video_codec=self.video_codec,
                             key_frame=key_frame.data if key_frame is not None else b"")

    @property
    def duration_ms(self) -> int:
        audio_ms = self.samples * 1000 // AUDIO_SAMPLE_RATE
        return max(audio_ms, self.video_end_ms)

    # audio
    def write_pcm(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap.audio(data, self.samples, self.channels)
        self.samples += len(data) // (2 * self.channels)
        self.seg.write_pcm(data)

    def write_silence_until(self, target_samples: int) -> None:
        while self.samples < target_samples:
            n = min(SILENCE_CHUNK, target_samples - self.samples)
            self.write_pcm(bytes(n * 2 * self.channels))

    def place_audio(self, frame: AudioFrame, at_ms: int) -> None:
        """Write a frame whose place is `at_ms` (relative to origin) where RecordTimeline says."""
        target = RecordTimeline.audio_sample(at_ms, self.samples)
        if target is None:
            return
        self.write_silence_until(target)
        self.write_pcm(frame.data)

    # video
    def write_video(self, frame: H264Frame, at_ms: int) -> None:
        pts = max(0, at_ms)
        if self.last_dts is not None and pts <= self.last_dts:
            pts = self.last_dts + 1  # the muxer needs strictly increasing timestamps
        self.last_dts = pts
        self._release_held(pts)
        self.held, self.held_pts = (frame.data, frame.key), pts

    def _release_held(self, next_pts: int | None) -> None:
        held, self.held = self.held, None
        if held is None:
            return
        if next_pts is not None:
            self.last_duration = max(1, next_pts - self.held_pts)
        self.video_end_ms = self.held_pts + self.last_duration
        self.seg.write_video(held[0], self.held_pts, self.last_duration, held[1])
        if self.tap is not None:
            self.tap.video(held[0], self.held_pts, self.last_duration, held[1], self.video_codec)

    def close(self, pad_audio_to_ms: int | None = None) -> None:
        try:
            self._release_held(None)
            if self.audio is not None and pad_audio_to_ms is not None:
                self.write_silence_until(pad_audio_to_ms * AUDIO_SAMPLE_RATE // 1000)
        finally:
            self.seg.close()
            if self.tap is not None:
                self.tap.close(self.duration_ms)
        if self.local and self.seg.segments:
            paths = [s.path for s in sorted(self.seg.segments, key=lambda s: s.index)]
            join(paths, self.path, channels=self.channels, samples=self.seg.samples)
            for p in paths:
                p.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove what this file left on disk (nothing was recorded into it)."""
        self.path.unlink(missing_ok=True)
        for _, p in local_segments(self.path.parent, self.path.stem + "."):
            p.unlink(missing_ok=True)


# --- one anchor's stay ---------------------------------------------------------------------------


class RecordTimeline:
    """Where each frame of one anchor goes in its files: the one place on the record side where
    timestamps are decided (shared.media.timeline is the push side's). Milliseconds from the
    anchor's first frame.

    Which jumps it absorbs, and how:
    - One origin for both kinds: audio and video start from the first frame's pts, in sync.
    - Network delay: the sender's pts are trusted, so a frame that arrives late keeps its place
      (a muted microphone shows as a pts gap as long as the arrival gap).
    - A sender's clock restart: pts going back by more than REBASE_MS, or leaping ahead of the
      time that passed by more than REBASE_MS. That kind is re-anchored on the arrival clock: it
      continues after its last frame by the time that passed.
    - Audio jitter: a frame up to GAP_FILL_MS after, or up to LATE_DROP_MS before, where the
      written samples end is written right after them (no click, no gap).
    - Audio gaps (a muted microphone, lost packets): a frame more than GAP_FILL_MS after the
      written samples is preceded by silence up to its place, so the file keeps the room's time.
    - Audio more than LATE_DROP_MS before what is written (a duplicate, from before a jump): dropped.
    - A microphone that sends nothing at all: `silence_until` says how far silence is written as
      time passes, trailing the arrival clock by FILL_LAG_MS so that a frame on its way still lands
      after it.
    """

    def __init__(self) -> None:
        # timeline = pts + offset, per kind: both start from the first frame's pts (one origin, in
        # sync); a clock restart seen on one kind re-anchors that kind only.
        self.offset: dict[str, int] = {}
        self._origin: int | None = None
        self._last: dict[str, tuple[int, float | None, int]] = {}  # kind -> (pts, arrival, timeline)
        self._latest: tuple[float | None, int] = (None, 0)  # (arrival, timeline) of the newest frame

    def place(self, kind: str, pts_ms: int, arrival: float | None) -> int:
        """The timeline ms of a `kind` frame with the sender's `pts_ms` that arrived at `arrival`
        (monotonic seconds; None: the pts is all there is)."""
        if self._origin is None:
            self._origin = -pts_ms
        offset = self.offset.setdefault(kind, self._origin)
        at = pts_ms + offset
        last = self._last.get(kind)
        if last is not None and arrival is not None and last[1] is not None:
            d_pts = pts_ms - last[0]
            d_arrival = int((arrival - last[1]) * 1000)
            if d_pts < -REBASE_MS or d_pts > d_arrival + REBASE_MS:
                at = last[2] + max(0, d_arrival)
                self.offset[kind] = at - pts_ms
        self._last[kind] = (pts_ms, arrival, at)
        if at >= self._latest[1] or self._latest[0] is None:
            self._latest = (arrival, at)
        return at

    def now(self, arrival: float | None) -> int | None:
        """Where `arrival` falls on the timeline (from the newest frame); None without arrivals."""
        last_arrival, last_at = self._latest
        if arrival is None or last_arrival is None:
            return None
        return last_at + int((arrival - last_arrival) * 1000)

    def silence_until(self, arrival: float) -> int | None:
        """How far a silent microphone's silence is written by `arrival` (ms on the timeline)."""
        now = self.now(arrival)
        return None if now is None else now - FILL_LAG_MS

    @staticmethod
    def audio_sample(at_ms: int, written: int) -> int | None:
        """The sample a frame placed at `at_ms` (from its file's origin) is written at, when
        `written` samples are in the file: right after them unless it is a gap (silence first, up
        to its place) or too early (None: dropped)."""
        target = at_ms * AUDIO_SAMPLE_RATE // 1000
        if target > written + GAP_FILL_MS * AUDIO_SAMPLE_RATE // 1000:
            return target
        if target < written - LATE_DROP_MS * AUDIO_SAMPLE_RATE // 1000:
            return None
        return written


@dataclass
class AnchorRecording:
    """One anchor, from its first frame until it leaves or the recording stops, into one or more files.

    Feed it with `add_audio` / `add_video` from one thread; `close()` finalises and returns every file.
    Raises WriteError when a file cannot be written (`no_space` for a full disk).
    """

    user_id: str
    mode: str
    directory: Path
    max_file_ms: int | None = None
    request_key_frame: Callable[[], None] | None = None
    label: str = ""  # the files' name prefix (letters, digits, "_", "-"); default: a hash of user_id
    channels: int = 1  # the room's PCM layout (AudioChannels); each frame's own count wins
    segment_s: float = DEFAULT_SEGMENT_S
    # Called as each file opens: (user_id, part, start_time, path) -> where its segments go
    # (None: nobody takes them; the file is joined at `path` when it closes).
    on_open: Callable[[str, int, float, Path], Callable[[SegmentInfo], None] | None] | None = None
    # Called as each file opens: (path, ask for a key frame) -> the tap of issue 21's outputs, or None.
    tap_for: Callable[[Path, Callable[[], None]], MediaTap | None] | None = None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    files: list[RecordedFile] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in EXTENSIONS:
            raise ValueError(f"unknown recording mode {self.mode!r}")
        if not self.label:
            self.label = "u" + hashlib.sha256(self.user_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        if not _LABEL.fullmatch(self.label):
            raise ValueError(f"a file label is letters, digits, '_' and '-' (1..64), not {self.label!r}")
        self._timeline = RecordTimeline()
        self._part: _Part | None = None
        self._part_no = 0
        self._pending_audio: list[tuple[AudioFrame, int]] = []  # Mode 02, waiting for a key frame
        self._pending_start: float | None = None
        self._audio_muted = False
        self._last_ask = float("-inf")
        self._last_audio_arrival: float | None = None
        self._closed = False
        self.refused = 0  # video access units refused (they could not be muxed), and the last reason
        self.last_refusal = ""

    # --- input ----------------------------------------------------------------------------------

    @property
    def wants_audio(self) -> bool:
        return self.mode != MODE_MP4_VIDEO

    @property
    def wants_video(self) -> bool:
        return self.mode != MODE_MP3

    def set_audio_muted(self, muted: bool) -> None:
        """The anchor's microphone state: a muted microphone at the end still counts as silence."""
        self._audio_muted = muted

    def add_audio(self, frame: AudioFrame, arrival: float | None = None) -> None:
        if self._closed or not self.wants_audio:
            return
        at = self._timeline.place("audio", frame.pts_ms, arrival)
        self._last_audio_arrival = arrival
        self._guard(self._audio, frame, at)

    def tick(self, arrival: float) -> None:
        """Called about once a second: write the silence of a microphone that sends nothing."""
        part = self._part
        if self._closed or part is None or part.audio is None or self._last_audio_arrival is None:
            return
        if not self._audio_muted and (arrival - self._last_audio_arrival) * 1000 < SILENT_AFTER_MS:
            return
        until = self._timeline.silence_until(arrival)
        if until is None:
            return
        silent = AudioFrame(bytes(SAMPLES_20MS * 2 * self.channels), 0, AUDIO_SAMPLE_RATE, self.channels)
        # Frame by frame through the normal path, so that a split falls where it should.
        while self._part is not None and self._part.audio is not None:
            p = self._part
            at = p.origin_ms + p.samples * 1000 // AUDIO_SAMPLE_RATE
            if at >= until:
                break
            self._guard(self._audio, silent, at)

    def add_video(self, frame: H264Frame, arrival: float | None = None) -> None:
        if self._closed or not self.wants_video:
            return
        why = self._refusal(frame)
        if why is not None:  # skipped, never muxed: what can be recorded goes on being recorded
            self.refused += 1
            self.last_refusal = why
            self._ask_key_frame()
            return
        at = self._timeline.place("video", frame.pts_ms, arrival)
        self._guard(self._video, frame, at)

    def _refusal(self, frame: H264Frame) -> str | None:
        """Why an access unit cannot go into an MP4 (an anchor may send anything), or None."""
        size = key_frame_dimensions(frame.data, frame.codec) if frame.key else None
        if size is not None and (max(size) > MAX_PICTURE_SIDE or size[0] * size[1] > MAX_PICTURE_AREA):
            return f"a key frame whose parameter set describes {size[0]}x{size[1]} pictures"
        picture = size or (self._part.video_size if self._part is not None else None)
        limit = max(MIN_UNIT_LIMIT, MAX_UNIT_BYTES_PER_PIXEL * picture[0] * picture[1]) if picture else MIN_UNIT_LIMIT
        if len(frame.data) > limit:
            return f"a {len(frame.data)}-byte access unit (more than {limit} for its picture size)"
        if size is None:
            return None
        starts_file = (self._part is None or size != self._part.video_size
                       or frame.codec != self._part.video_codec)
        if starts_file and not _decodes_to(frame, size):
            # Its parameter sets become the file's track: a file that would not play is not begun.
            return f"a key frame that does not decode to the {size[0]}x{size[1]} its parameter set says"
        return None

    def _guard(self, fn: Callable, frame: object, at: int) -> None:
        try:
            fn(frame, at)
        except WriteError:
            raise
        except (OSError, av.FFmpegError) as e:
            path = self._part.path if self._part else self.directory
            raise WriteError(path, e) from e

    def _audio(self, frame: AudioFrame, at: int) -> None:
        self.channels = frame.channels if frame.channels in _LAYOUTS else 1
        part = self._part
        if part is None:
            if self.mode == MODE_MP4_AV:
                self._hold_audio(frame, at)
            else:
                self._open(at).place_audio(frame, 0)
            return
        rel = at - part.origin_ms
        if self.max_file_ms and rel >= self.max_file_ms:
            if self.mode == MODE_MP3 or not part.has_video or rel >= self.max_file_ms + SPLIT_GRACE_MS:
                self._roll(at)  # audio splits where it is; video files split at a key frame
                if self.mode == MODE_MP4_AV:
                    self._hold_audio(frame, at)
                    return
                part = self._open(at)
                rel = 0
            else:
                self._ask_key_frame()
        part.place_audio(frame, rel)

    def _hold_audio(self, frame: AudioFrame, at: int) -> None:
        # Mode 02 waits for the first key frame (its size names the video stream) before it opens
        # the file; past VIDEO_WAIT_MS it starts audio-only rather than hold more.
        if not self._pending_audio:
            self._pending_start = self.wall()
        self._pending_audio.append((frame, at))
        if at - self._pending_audio[0][1] >= VIDEO_WAIT_MS:
            self._open_pending(video_size=None)
        else:
            self._ask_key_frame()

    def _open_pending(self, video_size: tuple[int, int] | None, at: int | None = None,
                      key_frame: H264Frame | None = None) -> _Part:
        pending, self._pending_audio = self._pending_audio, []
        origin = pending[0][1] if pending else at
        assert origin is not None
        part = self._open(origin, video_size=video_size, start_time=self._pending_start, key_frame=key_frame)
        self._pending_start = None
        for frame, frame_at in pending:
            part.place_audio(frame, frame_at - origin)
        return part

    def _video(self, frame: H264Frame, at: int) -> None:
        part = self._part
        size = key_frame_dimensions(frame.data, frame.codec) if frame.key else None
        if part is None or not part.has_video:
            if size is None:
                self._ask_key_frame()  # video waits for its first key frame
                return
            if part is not None:
                # A Mode 02 file that started audio-only: video begins a new file, with both.
                self._roll(at)
            if self.mode == MODE_MP4_AV and self._pending_audio:
                part = self._open_pending(video_size=size, at=at, key_frame=frame)
            else:
                part = self._open(at, video_size=size, key_frame=frame)
            part.write_video(frame, at - part.origin_ms)
            return
        rel = at - part.origin_ms
        due = self.max_file_ms is not None and self.max_file_ms > 0 and rel >= self.max_file_ms
        # A new picture size starts a new file: an MP4 track describes one size, and players differ
        # in what they do with a stream that changes it midway.
        resized = size is not None and size != part.video_size
        # Likewise a new codec (one track, one sample entry); until its key frame comes, its units
        # cannot go into this file's track.
        recoded = frame.codec != part.video_codec
        if due or resized or recoded:
            if size is not None:
                self._roll(at)
                part = self._open(at, video_size=size, key_frame=frame)
                rel = 0
            else:
                self._ask_key_frame()
                if recoded:
                    return
        part.write_video(frame, rel)
        if part.seg.wants_key_frame:  # a segment is due: the next key frame closes it
            self._ask_key_frame()

    # --- files ----------------------------------------------------------------------------------

    def _open(self, origin_ms: int, video_size: tuple[int, int] | None = None,
              start_time: float | None = None, key_frame: H264Frame | None = None) -> _Part:
        self._part_no += 1
        start = self.wall() if start_time is None else start_time
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(start)) + f"{int(start * 1000) % 1000:03d}"
        name = f"{self.label}_{stamp}_{self._part_no}.{EXTENSIONS[self.mode]}"
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        try:
            on_segment = self.on_open(self.user_id, self._part_no, start, path) if self.on_open else None
            tap = self.tap_for(path, self._ask_key_frame) if self.tap_for else None
            self._part = _Part(path, self._part_no, self.mode, origin_ms, start, self.channels, video_size,
                               self.segment_s, on_segment, key_frame if video_size is not None else None, tap)
        except (OSError, av.FFmpegError, ValueError) as e:  # ValueError: a key frame no track is made of
            raise WriteError(path, e) from e
        return self._part

    def _roll(self, at: int) -> None:
        """Close the current file (the next frame opens the next one)."""
        part, self._part = self._part, None
        if part is not None:
            self._finish(part, None)

    def _finish(self, part: _Part, end_ms: int | None) -> None:
        pad = None
        if self._audio_muted and end_ms is not None:
            pad = max(end_ms - part.origin_ms, part.video_end_ms)
        elif part.has_video and part.audio is not None:
            # Audio that stopped early, or never came (no microphone), is silence to the video's end.
            pad = part.video_end_ms
        error = None
        no_space = False
        try:
            part.close(pad_audio_to_ms=pad)
        except (OSError, av.FFmpegError) as e:
            error = f"the file could not be finalised: {e}"
            no_space = getattr(e, "errno", None) in NO_SPACE_ERRNOS
            if no_space:
                error = "disk full: the file could not be finalised"
        if part.duration_ms > 0 or error:
            self.files.append(RecordedFile(self.user_id, part.path, part.number, part.start_time,
                                           part.duration_ms / 1000.0, error, list(part.seg.segments),
                                           part.seg.samples, no_space=no_space))
        else:
            part.discard()  # nothing was recorded into it

    def _ask_key_frame(self) -> None:
        now = self.clock()
        if self.request_key_frame is not None and now - self._last_ask >= KEY_FRAME_ASK_EVERY_S:
            self._last_ask = now
            try:
                self.request_key_frame()
            except Exception:  # asking is best effort; the anchor's next GOP comes anyway
                pass

    def close(self, arrival: float | None = None) -> list[RecordedFile]:
        """Finalise every file (so that it plays) and return them all. Safe to call twice."""
        if self._closed:
            return self.files
        self._closed = True
        end_ms = self._timeline.now(arrival)
        if self._part is None and self._pending_audio:
            try:
                self._open_pending(video_size=None)
            except WriteError as e:
                self.files.append(RecordedFile(self.user_id, e.path, self._part_no, self.wall(), 0.0, str(e)))
        part, self._part = self._part, None
        if part is not None:
            self._finish(part, end_ms)
        return self.files
