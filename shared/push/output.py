"""The push's output: each item placed on the room's timeline, paced to the room's clock, the audio a
cut or a silent source leaves out filled with silence, the volume applied, and sent into the room.

    item (its segment's time) --+offset_ms--> room time --Pacer.wait--> gain --> room.send_audio
                                                                              \\-> room.send_video

It changes when the way media goes out changes (pacing, silence, gain, what is counted); what plays
next is shared.push.programme's business and why the push stops is shared.push.run's.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from shared.media.frames import AUDIO_FRAME_MS, AUDIO_SAMPLE_RATE
from shared.media.pacing import Pacer
from shared.push.segment import RoomInput, Segment
from shared.room import AudioFrame, H264Frame, Room, RoomError
from shared.runtime import RunLogger, StopSignal
from shared.settings import settings


def pacing_speed() -> float:
    """PACING_SPEED (default 1): >1 pushes faster than real time, for tests and benchmarks."""
    return settings().pacing_speed


@dataclass
class Stats:
    audio: int = 0
    video: int = 0
    video_bytes: int = 0
    # over the current progress window
    win_start: float = 0.0
    win_video: int = 0
    win_video_bytes: int = 0
    win_media_ms: int = 0


@dataclass
class Progress:
    """Where the push is: written by the output as it sends, read by the programme and the result."""

    position_ms: int = 0  # source time of the last frame sent
    first_pts: Optional[int] = None  # room time of the first frame this run
    last_pts: int = 0  # room time of the last frame sent
    pass_offset_ms: int = 0  # room time of the current pass's source time 0
    loops: int = 0  # passes finished
    stats: Stats = field(default_factory=Stats)

    @property
    def pushed_s(self) -> float:
        """Seconds of media pushed so far (room time from the first frame to the last)."""
        return 0.0 if self.first_pts is None else round((self.last_pts - self.first_pts) / 1000.0, 3)


class Stops(Protocol):
    """What the output asks the run (shared.push.run.Run) about stopping."""

    def stop_reason(self) -> Optional[str]:
        """Room events drained; whatever has asked the push to stop, or None."""

    def closed_reason(self) -> str:
        """Why a send found the room gone."""

    def refused(self, message: str) -> None:
        """The room refused a frame while still open: the push ends `room_error`."""


def apply_gain(frame: AudioFrame, volume: int) -> AudioFrame:
    """The frame at `volume` percent (s16, clipped)."""
    if volume >= 100:
        return frame
    samples = array.array("h")
    samples.frombytes(frame.data)
    if sys.byteorder != "little":
        samples.byteswap()
    g = volume / 100.0
    scaled = array.array("h", [int(v * g) for v in samples])
    if sys.byteorder != "little":
        scaled.byteswap()
    return AudioFrame(scaled.tobytes(), frame.pts_ms, frame.sample_rate, frame.channels)


class Output:
    """Sends the push's items into the room in real time (`speed` times real time)."""

    def __init__(self, room: Room, room_input: RoomInput, progress: Progress, stops: Stops, stop: StopSignal,
                 speed: float, volume: int, room_audio: bool, log: RunLogger):
        self.room = room
        self.room_input = room_input
        self.progress = progress
        self.stops = stops
        self.stop = stop
        self.volume = volume  # percent, applied at the send (push_control may change it)
        self.room_audio = room_audio  # the room's audio was started (the first source has audio)
        self.log = log
        self.pacer = Pacer(speed=speed, sleep=self._sleep)
        self.fill_audio = False  # after a cut: silence up to the new source's first audio
        self.audio_end_ms: Optional[int] = None  # room time where the audio sent so far ends
        self.last_video_ms: Optional[int] = None

    def _sleep(self, seconds: float) -> None:
        # Pacing waits wake up at once on SIGTERM, a room closing, or a fenced checkpoint.
        if seconds > 0:
            self.stop.wait(seconds)

    def end_ms(self) -> int:
        """Room time where what was sent so far ends (a cut starts the next source there)."""
        frame_ms = max(1, round(1000 / self.room_input.fps))
        ends = [e for e in (self.audio_end_ms, None if self.last_video_ms is None else
                            self.last_video_ms + frame_ms) if e is not None]
        return max(ends) if ends else self.progress.last_pts

    def send_paced(self, frame: Any, is_audio: bool, seg: Segment, max_ms: Optional[int]) -> Optional[str]:
        """Wait for the frame's time, send it and account for it; a stop reason, or None."""
        st = self.progress
        own = frame.pts_ms
        pts = own + seg.offset_ms
        frame.pts_ms = pts
        if not is_audio and getattr(frame, "dts_ms", None) is not None:
            frame.dts_ms += seg.offset_ms
        if st.first_pts is None:
            st.first_pts = pts
        if max_ms is not None and pts - st.first_pts >= max_ms:
            return "max_duration"
        reason = self._fill_before(pts, is_audio, seg)
        if reason:
            return reason
        self.pacer.wait(pts, "audio" if is_audio else "video")
        reason = self.stops.stop_reason()
        if reason:
            return reason
        if not self._send(frame, is_audio):
            return self.stops.closed_reason()
        # A pass's first audio frame may begin with the last samples of the pass before.
        st.position_ms = seg.position_ms = max(0, own - seg.pass_offset_ms)
        st.last_pts = max(st.last_pts, pts)
        if is_audio:
            self.audio_end_ms = pts + frame.samples * 1000 // max(1, frame.sample_rate)
        else:
            self.last_video_ms = pts
        return None

    def _fill_before(self, pts: int, is_audio: bool, seg: Segment) -> Optional[str]:
        if is_audio and self.fill_audio:
            self.fill_audio = False
            return self._silence_until(pts)
        if not is_audio and self.room_audio and not seg.source.info.has_audio:
            # A source without audio in a room that has audio: silence at the audio cadence, so that
            # receivers hear no dropout (their audio timeline keeps going), not only at the cut.
            return self._silence_until(pts)
        return None

    def _silence_until(self, pts: int) -> Optional[str]:
        """Fill the audio a cut left out with silence, so that audio never stops at a switch."""
        at = self.audio_end_ms
        if at is None:
            return None
        channels = self.room_input.channels
        samples = AUDIO_SAMPLE_RATE * AUDIO_FRAME_MS // 1000
        while pts - at >= AUDIO_FRAME_MS // 2:
            self.pacer.wait(at, "audio")
            silence = AudioFrame(bytes(2 * samples * channels), at, AUDIO_SAMPLE_RATE, channels)
            if not self._send(silence, True):
                return self.stops.closed_reason()
            at += AUDIO_FRAME_MS
            self.audio_end_ms = at
        return None

    def _send(self, frame: Any, is_audio: bool) -> bool:
        room = self.room
        try:
            if is_audio:
                if self.room_input.channels != frame.channels:
                    return True  # the room's audio was started for other frames (only a source without audio)
                room.send_audio(apply_gain(frame, self.volume))
                self.progress.stats.audio += 1
            else:
                room.send_video(frame)
                st = self.progress.stats
                st.video += 1
                st.win_video += 1
                if isinstance(frame, H264Frame):
                    st.video_bytes += len(frame.data)
                    st.win_video_bytes += len(frame.data)
        except RoomError as e:
            if room.closed is None:
                self.stops.refused(str(e))
            return False
        return True
