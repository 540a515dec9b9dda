"""One push: a video source into a TRTC room in real time, with Redis checkpoints and graceful stops.

    source.play (start.py: where it starts) --FrameReader thread--> Pacer --> room.send_*

The frames arrive on the push's one timeline (shared.media.timeline: loops, jumps and resets are
already absorbed there), so this loop only paces, sends and accounts. It is the only thing on the
main thread: room events are polled between frames, Redis is written by the checkpoint's own
thread, and every way of stopping (end of source, maxDuration, SIGTERM, the time limit, being
removed, the room dismissed, a newer push taking over) ends in the same place: a final checkpoint,
leaving the room, and a result saying why.
"""
from __future__ import annotations

import array
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from shared.contracts.push import PushParams
from shared.failures import Failure, Kind
from shared.media.frames import AUDIO_FRAME_MS, AUDIO_SAMPLE_RATE
from shared.media.pacing import Pacer
from shared.media.source import AudioPlan, MediaSource, PassEnd, SourceError, VideoLimits, VideoPlan, safe_url
from shared.push.checkpoint import Checkpoint, CheckpointUnavailable, PlaylistCheckpoint, Record
from shared.push.control import (
    STATUS_PAUSED,
    STATUS_PLAYING,
    Command,
    ControlInbox,
    ControlUnavailable,
    PushState,
)
from shared.push.reader import END_OF_SOURCE, NOTHING_YET, close_quietly
from shared.push.segment import (
    PASSTHROUGH,
    TRANSCODE,
    Opening,
    RoomInput,
    Segment,
    make_segment,
    open_fitting,
)
from shared.push.start import Start, decide_start
from shared.room import (
    AudioFrame,
    BitrateRequested,
    EnterParams,
    H264Frame,
    KeyFrameRequested,
    Role,
    Room,
    RoomClosed,
    RoomConfigError,
    RoomError,
    VideoEncodeConfig,
    VideoFormat,
    open_room,
)
from shared.runtime import Invocation, RunLogger, StopSignal
from shared.secrets import redact_value
from shared.settings import settings

PROGRESS_EVERY_S = 5.0
ENTER_TIMEOUT_S = 10.0
# How long the last checkpoint write may keep retrying an absent Redis. SIGTERM leaves SCF's grace
# period (and our 2 s promise) for everything else.
FINAL_WRITE_BUDGET_S = 5.0
FINAL_WRITE_BUDGET_TERMINATED_S = 0.8
# The next queued source is opened this long before the current one ends, so that the join is a cut.
PREFETCH_S = 2.0
# A resume reuses the paused source once its reader has let go; a read still stuck after this long
# (a stalled network source) and the source is opened again instead, within the command's budget.
RESUME_READ_WAIT_S = 0.5

# Why a push stopped -> the result's status.
STATUS_BY_REASON = {
    "end_of_source": "completed",
    "max_duration": "completed",
    "terminated": "terminated",
    "control_stop": "terminated",
    "time_limit": "terminated",
    "removed": "stopped",
    "replaced": "stopped",
    "dismissed": "stopped",
    "ended_by_server": "stopped",
    "exited": "stopped",
    "superseded": "stopped",
    "room_error": "failed",
    "source_error": "failed",
}


def pacing_speed(env: Mapping[str, str]) -> float:
    """PACING_SPEED (default 1): >1 pushes faster than real time, for tests and benchmarks."""
    return settings(env).pacing_speed


@dataclass
class _Stats:
    audio: int = 0
    video: int = 0
    video_bytes: int = 0
    # over the current progress window
    win_start: float = 0.0
    win_video: int = 0
    win_video_bytes: int = 0
    win_media_ms: int = 0


@dataclass
class _State:
    position_ms: int = 0  # source time of the last frame sent
    first_pts: Optional[int] = None  # room time of the first frame this run
    last_pts: int = 0  # room time of the last frame sent
    pass_offset_ms: int = 0  # room time of the current pass's source time 0
    loops: int = 0  # passes finished
    stats: _Stats = field(default_factory=_Stats)


@dataclass(frozen=True)
class Queued:
    """A source waiting its turn: a playlist's item (its index in the list) or one push_control enqueued."""

    src: str
    item: Optional[int] = None


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


class Pusher:
    """Runs one push; `run()` returns the result dict (or raises Failure before anything is sent)."""

    def __init__(
        self,
        params: PushParams,
        inv: Invocation,
        log: RunLogger,
        env: Optional[Mapping[str, str]] = None,
        stop: Optional[StopSignal] = None,
    ):
        self.params = params
        self.inv = inv
        self.log = log
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.stop = stop or StopSignal(deadline=inv.deadline)
        self.speed = pacing_speed(self.env)
        self.room: Optional[Room] = None
        self.source: Optional[MediaSource] = None  # the current segment's source
        self.checkpoint: Optional[Checkpoint] = None  # the current segment's record
        self.state = _State()
        self.message = ""
        self.video_config = VideoEncodeConfig()
        self.passthrough = False  # the room takes H.264 (fixed at enter)
        self.start = Start(0.0, None, False)
        self.segment: Optional[Segment] = None
        self.room_input: Optional[RoomInput] = None
        self.inbox: Optional[ControlInbox] = None
        self.volume = params.volume
        self.first_item = 0  # playlist: the item the push starts with (a resumed list: where it was)
        self.resumed_item: Optional[int] = None
        self.queue: list[Queued] = []
        self.list_passes = 0  # playlist: passes over the whole list finished
        self.list_checkpoint: Optional[PlaylistCheckpoint] = None  # playlist: the whole list's record
        self.opening: Optional[Opening] = None
        self.paused_at: Optional[float] = None
        self.switches: list[dict[str, Any]] = []
        self.played: dict[str, dict[str, Any]] = {}  # videoSrc -> what the result says of it
        self._after_first_send: Optional[tuple[Optional[Command], Optional[dict[str, Any]]]] = None
        self._fill_audio = False  # after a cut: silence up to the new source's first audio
        self._room_audio = False  # the room's audio was started (the first source has audio)
        self._audio_end_ms: Optional[int] = None  # room time where the audio sent so far ends
        self._last_video_ms: Optional[int] = None
        self._current_ended = False
        self._writers: list[threading.Thread] = []

    @property
    def reader(self) -> Any:
        return None if self.segment is None else self.segment.reader

    # --- the whole run -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        p = self.params
        redact_value(p.userSig.get_secret_value())
        if p.redisPassword is not None:
            redact_value(p.redisPassword.get_secret_value())
        self.stop.install()  # SIGTERM -> "terminated" (a no-op off the main thread)
        try:
            self.log.info("push starting", videoSrc=safe_url(p.sources[0]), sdkAppId=p.sdkAppId, room=p.room.key,
                          userId=p.userId, redis=p.redis, pacingSpeed=self.speed,
                          playlist=[safe_url(s) for s in p.sources] if p.is_playlist else None)
            record = self._open_checkpoint()
            if p.is_playlist:
                self.queue = [Queued(s, i) for i, s in enumerate(p.sources) if i > self.first_item]
            self._open_source(record)
            self._enter_room()
            return self._push()
        except Failure:
            raise
        except Exception:
            # A bug, not a stop: still leave a truthful record behind for the next push.
            if self.inbox is not None:
                self.inbox.close("internal_error", timeout_s=0.5)
            if self.checkpoint is not None and self.checkpoint.started:
                self.checkpoint.finish("failed", "internal_error", position=self.state.position_ms / 1000.0,
                                       budget_s=1.0)
            if self.list_checkpoint is not None and self.list_checkpoint.started:
                self.list_checkpoint.finish("failed", "internal_error", budget_s=1.0)
            raise
        finally:
            self._close()
            self.stop.uninstall()

    # --- setup ---------------------------------------------------------------------------------

    def _connect_checkpoint(self, src: str, playlist: Optional[list[str]] = None) -> Checkpoint:
        p = self.params
        assert p.redisHost is not None
        return Checkpoint.connect(
            host=p.redisHost, port=p.redisPort,
            password=p.redisPassword.get_secret_value() if p.redisPassword else None,
            db=p.redisDb, sdk_app_id=p.sdkAppId, room=p.room, video_src=src,
            request_id=self.inv.request_id, log=self.log, playlist=playlist)

    def _open_checkpoint(self) -> Optional[Record]:
        """The records this push resumes from; a playlist's own record picks the item it starts with."""
        p = self.params
        if not p.redis:
            return None
        listed: Optional[Record] = None
        try:
            if p.is_playlist:
                cp = self._connect_checkpoint(p.sources[0], playlist=p.sources)
                assert isinstance(cp, PlaylistCheckpoint)
                self.list_checkpoint = cp
                listed = self._list_start(cp.load())
            self.checkpoint = self._connect_checkpoint(p.sources[self.first_item])
            record = self.checkpoint.load()
        except CheckpointUnavailable as e:
            raise Failure(f"redis is required (redis=true) but {e}; nothing was pushed",
                            "redis_unavailable", Kind.UNAVAILABLE) from None
        if listed is not None:
            record = listed  # the list's record says where in the item, whatever the item's own says
        if record:
            self.log.info("checkpoint found", key=self.checkpoint.key, position=record.position,
                          previousRequestId=record.request_id, previousStatus=record.status,
                          item=self.resumed_item)
        return record

    def _list_start(self, listed: Optional[Record]) -> Optional[Record]:
        """Where a resumed playlist starts (sets first_item, list_passes): the record to start the item from."""
        n = len(self.params.sources)
        if listed is None or listed.item is None or not 0 <= listed.item < n:
            return None
        item, position = listed.item, listed.position
        if listed.duration and position >= listed.duration:
            item, position = item + 1, 0.0  # that item had ended: the next one
        if item >= n:
            return None  # the list had ended (its end clears the record; a stop just at the end lands here)
        self.first_item, self.resumed_item, self.list_passes = item, item, listed.loop
        self.log.info("playlist checkpoint found", item=item, position=position, loop=listed.loop,
                      previousRequestId=listed.request_id)
        return replace(listed, position=position)

    def _open_source(self, record: Optional[Record]) -> None:
        p = self.params
        video = VideoPlan(width=p.videoWidth, height=p.videoHeight, fps=p.videoFps,
                          bitrate_kbps=p.videoBitrate, gop_s=p.videoGop)
        audio = AudioPlan(volume=100, channels=None)  # the volume is applied at the send (it can change)
        try:
            # The source checks videoSrc against SOURCE_ALLOWLIST (no internal addresses) itself.
            self.source = MediaSource(p.sources[self.first_item], video=video, audio=audio, log=self.log,
                                      limits=VideoLimits.from_env(self.env))
        except SourceError as e:
            raise Failure(str(e), "source_error", Kind.INVALID) from None
        self.passthrough = bool(self.source.info.passthrough)
        self.start = decide_start(p, record, self.source.info, self.log)

    @property
    def _current_source(self) -> MediaSource:
        """The source playing now: set once the push opened its first one, before anything reads it."""
        assert self.source is not None
        return self.source

    def _enter_room(self) -> None:
        p = self.params
        info = self._current_source.info
        try:
            self.room = open_room()
        except RoomConfigError as e:
            raise Failure(str(e), "room_config", Kind.INTERNAL) from None
        params = EnterParams(
            sdk_app_id=p.sdkAppId, room=p.room, user_id=p.userId, user_sig=p.userSig.get_secret_value(),
            role=Role.ANCHOR, timeout=ENTER_TIMEOUT_S,
            video_input=VideoFormat.H264 if self.passthrough else VideoFormat.YUV420P,
            receive_media=False,
        )
        fps = max(1, int(round(info.out_fps or 25)))  # what the source makes (capped at PUSH_MAX_FPS)
        try:
            self.room.enter(params)
            if info.has_audio:
                self.room.start_audio(channels=self._audio_channels())
                self._room_audio = True
            if info.has_video:
                self.video_config = VideoEncodeConfig(
                    fps=fps, bitrate_bps=(p.videoBitrate or 0) * 1000, gop_seconds=p.videoGop or 2)
                self.room.start_video(self.video_config)
        except RoomError as e:
            raise Failure(f"could not enter room {p.room.id} of sdkAppId {p.sdkAppId} as {p.userId}: "
                            f"{e}", "room_error", Kind.FORBIDDEN if e.code in (-3317, -3318, -3319, -3320) else Kind.UPSTREAM) from None
        # Every later source is made to fit what the room was entered with (shared.push.segment).
        self.room_input = RoomInput(h264=self.passthrough, width=info.out_width, height=info.out_height, fps=fps,
                                    channels=self._audio_channels(), gop_s=p.videoGop or 2)
        self.log.info("entered the room", room=p.room.key, userId=p.userId, path=self._path(),
                      videoInput=params.video_input.value)

    def _audio_channels(self) -> int:
        # What the source's frames carry: mono stays mono, anything more is (downmixed to) stereo.
        channels = getattr(self.source, "channels", None) or self._current_source.info.audio_channels or 1
        return 2 if channels >= 2 else 1

    def _path(self) -> str:
        """What the room was entered with (each source's own path is in `sources`)."""
        return "passthrough" if self.passthrough else "transcode"

    def _register_control(self) -> None:
        p = self.params
        try:
            address = p.redis_address(self.env)
        except ValueError:
            address = None
        if address is None:
            return
        try:
            self.inbox = ControlInbox.register(
                address, request_id=self.inv.request_id, sdk_app_id=p.sdkAppId, room=p.room, user_id=p.userId,
                state=self._push_state(), log=self.log, checkpoint=p.redis, user_sig=p.userSig.get_secret_value(),
                control_token=p.controlToken.get_secret_value() if p.controlToken else None)
        except ControlUnavailable as e:
            self.log.warning("control: unavailable; pushing without push_control", error=str(e))

    def _push_state(self) -> PushState:
        seg = self.segment
        src = seg.src if seg is not None else self.params.sources[self.first_item]
        return PushState(status=STATUS_PAUSED if self.paused_at is not None else STATUS_PLAYING,
                         video_src=safe_url(src), position=self.state.position_ms / 1000.0,
                         queue=[safe_url(q.src) for q in self.queue], volume=self.volume)

    def _publish(self) -> None:
        if self.inbox is not None:
            self.inbox.publish_state(self._push_state())

    # --- the loop ------------------------------------------------------------------------------

    def _passes(self) -> Optional[int]:
        p = self.params
        if p.is_playlist:
            return 1  # repeatNum applies to the whole list
        return None if p.repeatNum == -1 else p.repeatNum + 1

    def _push(self) -> dict[str, Any]:
        p, source, room = self.params, self.source, self.room
        assert source is not None and room is not None and self.room_input is not None
        info = source.info
        cp = self.checkpoint
        if cp is not None:
            cp.on_fenced = lambda: self.stop.request("superseded")
            try:
                cp.start(self.start.position_s, None if info.is_live else info.duration_s)
            except CheckpointUnavailable as e:
                raise Failure(f"redis is required (redis=true) but {e}; nothing was pushed",
                                "redis_unavailable", Kind.UNAVAILABLE) from None
        lcp = self.list_checkpoint
        if lcp is not None:
            lcp.on_fenced = lambda: self.stop.request("superseded")
            lcp.at(self.first_item, self.list_passes, self.start.position_s, info.duration_s)
            try:
                lcp.start(self.start.position_s, None if info.is_live else info.duration_s)
            except CheckpointUnavailable as e:
                raise Failure(f"redis is required (redis=true) but {e}; nothing was pushed",
                                "redis_unavailable", Kind.UNAVAILABLE) from None

        pacer = Pacer(speed=self.speed, sleep=self._sleep)
        st = self.state
        st.position_ms = self.start.position_ms
        st.stats.win_start = time.monotonic()
        next_progress = st.stats.win_start + PROGRESS_EVERY_S
        max_ms = None if p.maxDuration is None else int(round(p.maxDuration * 1000))
        self.segment = make_segment(p.sources[self.first_item], source, PASSTHROUGH if self.passthrough else TRANSCODE,
                                    self.start, self._passes(), self.room_input, self.log, checkpoint=cp)
        self.segment.item = self.first_item if p.is_playlist else None
        self._note_source(self.segment)
        self._register_control()
        held: Any = None
        reason: Optional[str] = None
        while reason is None:
            reason = self._stop_reason()
            if reason:
                break
            cut = self._control()
            if cut is not None:
                held = cut
                continue
            seg = self.segment
            if self.paused_at is not None or self._current_ended:
                if self._current_ended and self.opening is None and not self._take_next():
                    reason = "end_of_source"
                    break
                self.stop.wait(0.01)
                continue
            if held is not None:
                item, held = held, None
            else:
                item = seg.reader.next(timeout=0.05 if self.inbox is not None else 0.1)
            reason = self._stop_reason()
            if reason:
                break
            if item is NOTHING_YET:
                continue  # the source is slow: keep answering stops and room events
            if item is END_OF_SOURCE:
                st.loops = seg.loops_before + (seg.passes or 1)
                if self.queue or (self.opening is not None and self.opening.command is None) or self._refill():
                    self._current_ended = True
                    continue
                reason = "end_of_source"
                break
            if isinstance(item, SourceError):
                self.message = str(item)
                self.log.error("the source failed mid-push", error=str(item), position=st.position_ms / 1000,
                               videoSrc=seg.name)
                reason = "source_error"
                break
            if isinstance(item, PassEnd):
                st.loops, seg.pass_offset_ms = seg.loops_before + item.passes, item.offset_ms
                self.log.info("looping the source", loop=st.loops, repeatNum=p.repeatNum)
                continue
            reason = self._send_paced(item, isinstance(item, AudioFrame), max_ms, pacer)
            if reason:
                break
            if self._after_first_send is not None:
                self._acknowledge_cut()
            if self.checkpoint is not None:
                self.checkpoint.update(st.position_ms / 1000.0)
            if self.list_checkpoint is not None and self.segment is not None and self.segment.item is not None:
                self.list_checkpoint.update(st.position_ms / 1000.0)
            self._maybe_prefetch()
            now = time.monotonic()
            if now >= next_progress:
                self._progress(now, pacer)
                next_progress = now + PROGRESS_EVERY_S
        if self.segment is not None:
            self.segment.stop()
        return self._finish(reason, self.start.resumed_from)

    # --- control -------------------------------------------------------------------------------

    def _control(self) -> Any:
        """Apply what push_control sent; the first item of a segment cut over to, or None."""
        inbox = self.inbox
        if inbox is not None:
            for cmd in inbox.poll():
                self._apply(cmd)
            for cmd in inbox.expire_overdue():
                op = self.opening
                if op is not None and op.command is not None and op.command.id == cmd.id:
                    self._abandon(op)
                    self.log.warning("control: a switch could not be made in time; dropped", action=cmd.action)
        op = self.opening
        if op is None or not op.done.is_set():
            return None
        if op.command is None and not self._current_ended:
            return None  # the queue's next item waits for the current one to end
        self.opening = None
        if op.command is not None and op.command.expired:
            self._abandon(op)
            return None
        if op.segment is None:
            self._failed_switch(op)
            return None
        return self._cut(op)

    def _abandon(self, op: Opening) -> None:
        """Drop what a command that ran out of time started; a resume leaves the paused source as it was."""
        op.abandon()
        if self.opening is op:
            self.opening = None
        if op.trigger == "resume" and self.segment is not None:
            self.segment.own_source = True

    def _apply(self, cmd: Command) -> None:
        inbox = self.inbox
        assert inbox is not None
        a = cmd.action
        self.log.info("control: applying", action=a, commandId=cmd.id)
        if a == "status":
            inbox.ack(cmd, self._push_state())
        elif a == "volume":
            self.volume = int(cmd.volume if cmd.volume is not None else self.volume)
            inbox.ack(cmd, self._push_state())
        elif a == "stop":
            inbox.ack(cmd, self._push_state())
            self.stop.request("control_stop")
        elif a == "enqueue":
            self.queue += [Queued(s) for s in cmd.sources]
            inbox.ack(cmd, self._push_state())
        elif a == "pause":
            if self.paused_at is None and not (self.opening is not None and self.opening.trigger == "resume"):
                self.paused_at = time.monotonic()
                self.log.info("paused", position=round(self.state.position_ms / 1000, 3))
            inbox.ack(cmd, self._push_state())
        elif a == "resume":
            if self.paused_at is None:
                inbox.ack(cmd, self._push_state())
            elif self.opening is not None and self.opening.command is not None:
                inbox.refuse(cmd, 409, "busy", "a switch is in progress; resume after it")
            else:
                self._begin_resume(cmd)
        elif a == "switch":
            if self.opening is not None and self.opening.command is not None:
                inbox.refuse(cmd, 409, "busy", f"a {self.opening.trigger} is in progress; try again when it is done")
                return
            self._drop_prefetch()
            src = cmd.video_src or ""
            self.opening = Opening(lambda: self._open_segment(src, cmd.seek_second), label="switch", command=cmd,
                                   trigger="switch", target=src, seek=cmd.seek_second).begin()
        else:
            inbox.refuse(cmd, 400, "invalid_parameters", f"action {a} is not known to this push")

    def _drop_prefetch(self) -> None:
        op = self.opening
        if op is not None and op.command is None:
            op.abandon()
            self.queue.insert(0, Queued(op.target, op.item))
            self.opening = None

    def _open_segment(self, src: str, seek: Optional[float]) -> Segment:
        """On the opener's thread: open `src` to fit the room, find where it starts, claim its record."""
        assert self.room_input is not None
        p = self.params
        video = VideoPlan(width=p.videoWidth, height=p.videoHeight, fps=p.videoFps,
                          bitrate_kbps=p.videoBitrate, gop_s=p.videoGop)
        source, path = open_fitting(src, self.room_input, video, VideoLimits.from_env(self.env), self.log)
        cp: Optional[Checkpoint] = None
        try:
            record = None
            if p.redis:
                try:
                    cp = self._connect_checkpoint(src)
                    record = cp.load()
                except CheckpointUnavailable as e:
                    self.log.warning("checkpoint: unavailable for the new source; it plays without one", error=str(e))
                    cp = None
            # The start follows a fresh push's rule: seekSecond if given, else its own record, else 0.
            if seek is not None:
                record = None
            start = decide_start(p.model_copy(update={"seekSecond": seek}), record, source.info, self.log)
            if cp is not None:
                cp.start(start.position_s, None if source.info.is_live else source.info.duration_s)
            return make_segment(src, source, path, start, 1 if p.is_playlist or src != p.sources[0] else
                                self._passes(), self.room_input, self.log, checkpoint=cp)
        except Failure as e:
            close_quietly(source)
            raise SourceError(str(e)) from None
        except BaseException:
            close_quietly(source)
            raise

    def _begin_resume(self, cmd: Command) -> None:
        """Restart the current source at its position (a key frame first), on the opener's thread."""
        old = self.segment
        assert old is not None and self.room_input is not None
        position = self.state.position_ms / 1000.0
        room = self.room_input
        passes = None if old.passes is None else max(1, old.passes - (self.state.loops - old.loops_before))

        p = self.params
        video = VideoPlan(width=p.videoWidth, height=p.videoHeight, fps=p.videoFps,
                          bitrate_kbps=p.videoBitrate, gop_s=p.videoGop)

        def run() -> Segment:
            old.reader.stop()
            # The source is not thread-safe: it is reused only once its reader is done with it.
            if old.reader.wait(RESUME_READ_WAIT_S):
                source, path, own = old.source, old.path, False  # the cut makes it the new segment's
            else:
                self.log.warning("resume: the paused source's last read has not returned; opening it again",
                                 videoSrc=old.name)
                source, path = open_fitting(old.src, room, video, VideoLimits.from_env(self.env), self.log)
                own = True
            info = source.info
            start = Start(0.0 if info.is_live else position, None,
                          bridged=path == PASSTHROUGH and position > 0 and not info.is_live)
            seg = make_segment(old.src, source, path, start, passes, room, self.log,
                               checkpoint=old.checkpoint, own_source=own)
            seg.loops_before = self.state.loops
            return seg

        old.own_source = False  # the resumed segment owns it now
        self.opening = Opening(run, label="resume", command=cmd, trigger="resume", target=old.src,
                               item=old.item).begin()

    def _maybe_prefetch(self) -> None:
        """Open the next queued source PREFETCH_S before the current one ends."""
        if self.opening is not None or not self.queue or self.segment is None:
            return
        seg = self.segment
        info = seg.source.info
        if info.is_live or not info.duration_s or seg.passes is None:
            return
        if self.state.loops - seg.loops_before < seg.passes - 1:
            return  # not the last pass yet
        if self.state.position_ms / 1000.0 >= info.duration_s - PREFETCH_S * self.speed:
            self._take_next()

    def _refill(self) -> bool:
        """A playlist whose last item ended: the whole list again while repeatNum allows."""
        p = self.params
        if not p.is_playlist or self.queue:
            return bool(self.queue)
        self.list_passes += 1
        if p.repeatNum != -1 and self.list_passes > p.repeatNum:
            return False
        self.queue = [Queued(s, i) for i, s in enumerate(p.sources)]
        self.log.info("playlist: playing the list again", loop=self.list_passes, repeatNum=p.repeatNum)
        return True

    def _take_next(self) -> bool:
        """Begin opening the queue's next item; False when there is none."""
        if not self.queue and not (self._current_ended and self._refill()):
            return False
        q = self.queue.pop(0)
        self.opening = Opening(lambda: self._open_segment(q.src, None), label="queue", trigger="queue",
                               target=q.src, item=q.item).begin()
        self._publish()
        return True

    def _failed_switch(self, op: Opening) -> None:
        error = op.error or "could not be opened"
        self.log.warning("switch failed; the current source plays on" if op.command else "queued source failed",
                         videoSrc=safe_url(op.target), error=error, trigger=op.trigger)
        if op.trigger != "resume":
            self.switches.append({"at": self._pushed_s(), "from": self._current_name(), "to": safe_url(op.target),
                                  "latencyMs": None, "trigger": op.trigger, "ok": False, "error": error})
        if op.command is not None and self.inbox is not None:
            if op.trigger == "resume":
                assert self.segment is not None  # a resume resumes the current segment
                self.segment.own_source = True
            self.inbox.refuse(op.command, 409, "source_error", error)

    def _current_name(self) -> Optional[str]:
        return None if self.segment is None else self.segment.name

    def _pushed_s(self) -> float:
        st = self.state
        return 0.0 if st.first_pts is None else round((st.last_pts - st.first_pts) / 1000.0, 3)

    def _cut(self, op: Opening) -> Any:
        """Cut over to the opened segment at this frame boundary; its first item."""
        new, old = op.segment, self.segment
        assert new is not None and old is not None and self.room_input is not None
        frame_ms = max(1, round(1000 / self.room_input.fps))
        ends = [e for e in (self._audio_end_ms, None if self._last_video_ms is None else
                            self._last_video_ms + frame_ms) if e is not None]
        cut_ms = max(ends) if ends else self.state.last_pts
        if op.trigger == "resume" and self.paused_at is not None:
            # The room's clock went on while paused: timestamps stay in step with it.
            cut_ms += int((time.monotonic() - self.paused_at) * 1000 * self.speed)
        new.offset_ms = cut_ms - int(new.first.pts_ms)
        resumed = op.trigger == "resume"
        if not resumed:
            self._retire(old, ended=op.trigger == "queue")
        else:
            self.paused_at = None
            new.own_source = True
            if new.source is not old.source:  # opened again: the old one closes once its stuck read returns
                old.own_source = True
                old.release()
        new.item = op.item
        self.segment = new
        self.source = new.source
        if self.list_checkpoint is not None and new.item is not None:
            info = new.source.info
            self.list_checkpoint.at(new.item, self.list_passes, new.start.position_s,
                                    None if info.is_live else info.duration_s)
        self.checkpoint = new.checkpoint
        if self.checkpoint is not None:
            self.checkpoint.on_fenced = lambda: self.stop.request("superseded")
        self._current_ended = False
        self._fill_audio = not resumed
        self.state.position_ms = new.start.position_ms
        self.state.pass_offset_ms = 0
        self._note_source(new)
        record = None
        if not resumed:
            # at: seconds pushed when it happened; roomMs: the room timestamp the new source starts at.
            record = {"at": self._pushed_s(), "from": old.name, "to": new.name, "latencyMs": None,
                      "trigger": op.trigger, "ok": True, "path": new.path, "roomMs": cut_ms}
            self.switches.append(record)
            self.log.info("switching", **{k: v for k, v in record.items() if k != "latencyMs"},
                          startsAt=new.start.position_s)
        self._after_first_send = (op.command, record)
        self._op_started = op.command.received if op.command is not None else time.monotonic()
        self._publish()
        return new.first

    def _acknowledge_cut(self) -> None:
        assert self._after_first_send is not None  # set by the cut that calls this
        cmd, record = self._after_first_send
        self._after_first_send = None
        latency = round((time.monotonic() - self._op_started) * 1000, 1)
        if record is not None:
            record["latencyMs"] = latency if record["trigger"] != "queue" else None
            self.log.info("switched", to=record["to"], latencyMs=latency, path=record["path"])
        if cmd is not None and self.inbox is not None:
            extra: dict[str, Any] = {}
            if record is not None:
                extra["switch"] = {"from": record["from"], "to": record["to"], "latencyMs": latency,
                                   "path": record["path"]}
            self.inbox.ack(cmd, self._push_state(), **extra)
        else:
            self._publish()

    def _retire(self, old: Segment, ended: bool) -> None:
        """The source cut away from: stop it, and leave its record where it was left (in the background)."""
        position = old.position_ms / 1000.0
        self._note_source(old)
        old.release()
        cp = old.checkpoint
        if cp is None:
            return
        info = old.source.info
        clear = ended and not info.is_live
        entry = self.played.get(old.src)

        def write() -> None:
            outcome = cp.finish("completed" if ended else "stopped", "end_of_source" if ended else "switched",
                                position=position, clear=clear, budget_s=2.0)
            if entry is not None:
                entry["checkpoint"] = outcome
            cp.close()

        t = threading.Thread(target=write, name="checkpoint-finish", daemon=True)
        t.start()
        self._writers.append(t)

    def _note_source(self, seg: Segment) -> None:
        entry = self.played.setdefault(seg.src, {"videoSrc": seg.name, "path": seg.path, "position": 0.0,
                                                 "checkpoint": "off" if seg.checkpoint is None else "running"})
        entry["path"] = seg.path
        if seg is self.segment:
            entry["position"] = round(self.state.position_ms / 1000.0, 3)
        else:
            entry["position"] = round(seg.position_ms / 1000.0, 3)

    # --- sending -------------------------------------------------------------------------------

    def _send_paced(self, frame: Any, is_audio: bool, max_ms: Optional[int], pacer: Pacer) -> Optional[str]:
        """Wait for the frame's time, send it and account for it; a stop reason, or None."""
        st = self.state
        seg = self.segment
        assert seg is not None
        own = frame.pts_ms
        pts = own + seg.offset_ms
        frame.pts_ms = pts
        if not is_audio and getattr(frame, "dts_ms", None) is not None:
            frame.dts_ms += seg.offset_ms
        if st.first_pts is None:
            st.first_pts = pts
        if max_ms is not None and pts - st.first_pts >= max_ms:
            return "max_duration"
        if is_audio and self._fill_audio:
            self._fill_audio = False
            reason = self._silence_until(pts, pacer)
            if reason:
                return reason
        elif not is_audio and self._room_audio and not seg.source.info.has_audio:
            # A source without audio in a room that has audio: silence at the audio cadence, so that
            # receivers hear no dropout (their audio timeline keeps going), not only at the cut.
            reason = self._silence_until(pts, pacer)
            if reason:
                return reason
        pacer.wait(pts, "audio" if is_audio else "video")
        reason = self._stop_reason()
        if reason:
            return reason
        if not self._send(frame, is_audio):
            return self._closed_reason()
        # A pass's first audio frame may begin with the last samples of the pass before.
        st.position_ms = seg.position_ms = max(0, own - seg.pass_offset_ms)
        st.last_pts = max(st.last_pts, pts)
        if is_audio:
            self._audio_end_ms = pts + frame.samples * 1000 // max(1, frame.sample_rate)
        else:
            self._last_video_ms = pts
        return None

    def _silence_until(self, pts: int, pacer: Pacer) -> Optional[str]:
        """Fill the audio a cut left out with silence, so that audio never stops at a switch."""
        at = self._audio_end_ms
        if at is None or self.room_input is None:
            return None
        channels = self.room_input.channels
        samples = AUDIO_SAMPLE_RATE * AUDIO_FRAME_MS // 1000
        while pts - at >= AUDIO_FRAME_MS // 2:
            pacer.wait(at, "audio")
            silence = AudioFrame(bytes(2 * samples * channels), at, AUDIO_SAMPLE_RATE, channels)
            if not self._send(silence, True):
                return self._closed_reason()
            at += AUDIO_FRAME_MS
            self._audio_end_ms = at
        return None

    def _sleep(self, seconds: float) -> None:
        # Pacing waits wake up at once on SIGTERM, a room closing, or a fenced checkpoint.
        if seconds > 0:
            self.stop.wait(seconds)

    def _send(self, frame: Any, is_audio: bool) -> bool:
        room = self.room
        assert room is not None
        try:
            if is_audio:
                if self.room_input is not None and self.room_input.channels != frame.channels:
                    return True  # the room's audio was started for other frames (only a source without audio)
                room.send_audio(apply_gain(frame, self.volume))
                self.state.stats.audio += 1
            else:
                room.send_video(frame)
                st = self.state.stats
                st.video += 1
                st.win_video += 1
                if isinstance(frame, H264Frame):
                    st.video_bytes += len(frame.data)
                    st.win_video_bytes += len(frame.data)
        except RoomError as e:
            if room.closed is None:
                self.message = str(e)
                self.log.error("the room refused a frame", error=str(e))
                self.stop.request("room_error")
            return False
        return True

    def _stop_reason(self) -> Optional[str]:
        """Drain room events; then whatever has asked us to stop."""
        room = self.room
        assert room is not None
        while True:
            event = room.poll(0)
            if event is None:
                break
            if isinstance(event, RoomClosed):
                self._on_closed(event)
            elif isinstance(event, BitrateRequested):
                if not self.passthrough:
                    self.video_config = VideoEncodeConfig(self.video_config.fps, event.bitrate_bps,
                                                          self.video_config.gop_seconds)
                    room.set_video_encode(self.video_config)
                    self.log.info("video bitrate changed at the room's request", bitrate=event.bitrate_bps)
            elif isinstance(event, KeyFrameRequested):
                # Transcoding: the room's encoder makes one. Passthrough: the source's GOP decides.
                pass
        if any(cp is not None and cp.fenced for cp in (self.checkpoint, self.list_checkpoint)):
            self.stop.request("superseded")
        return self.stop.reason

    def _on_closed(self, event: RoomClosed) -> None:
        reason = event.result_reason
        if not self.message:
            self.message = event.message or f"the room closed: {event.reason.value}"
        self.log.warning("out of the room", reason=reason, code=event.code, detail=event.message)
        self.stop.request(reason)

    def _closed_reason(self) -> str:
        room = self.room
        assert room is not None
        closed = room.closed
        if closed is not None:
            self._on_closed(closed)
        return self.stop.reason or "room_error"

    def _progress(self, now: float, pacer: Pacer) -> None:
        st = self.state
        s = st.stats
        elapsed = max(1e-6, now - s.win_start)
        media_ms = st.last_pts - (st.first_pts or 0)
        info = self._current_source.info
        if self.passthrough:
            kbps: Optional[float] = round(s.win_video_bytes * 8 / elapsed / 1000, 1)
        else:
            kbps = (self.video_config.bitrate_bps // 1000) or None  # the encoder's target
        self.log.info(
            "progress",
            videoSrc=self._current_name(),
            status=STATUS_PAUSED if self.paused_at is not None else STATUS_PLAYING,
            switches=len(self.switches),
            position=round(st.position_ms / 1000, 3),
            duration=info.duration_s,
            fps=round(s.win_video / elapsed, 2),
            bitrateKbps=kbps,
            speed=round((media_ms - s.win_media_ms) / 1000 / elapsed, 3),
            lagMs=round(getattr(pacer, "lag_ms", 0) or 0, 1),
            framesSent={"audio": s.audio, "video": s.video},
            checkpoint=None if self.checkpoint is None else ("ok" if self.checkpoint.reachable else "redis unreachable"),
        )
        s.win_start, s.win_video, s.win_video_bytes, s.win_media_ms = now, 0, 0, media_ms
        self._publish()

    # --- stopping ------------------------------------------------------------------------------

    def _finish(self, reason: str, resumed_from: Optional[float]) -> dict[str, Any]:
        st = self.state
        status = STATUS_BY_REASON.get(reason, "stopped")
        info = self._current_source.info
        position = st.position_ms / 1000.0
        if self.inbox is not None:
            # Unregister first: a control call from now on is told the push is ending (409), then 404.
            self.inbox.close(reason, timeout_s=0.3 if status == "terminated" else 1.0)
        op, self.opening = self.opening, None
        if op is not None:
            op.abandon()
        lcp = self.list_checkpoint
        if lcp is not None:
            # The list's record: cleared when the whole list ended; else it keeps its item and position.
            list_budget = FINAL_WRITE_BUDGET_TERMINATED_S if status == "terminated" else FINAL_WRITE_BUDGET_S
            writer = threading.Thread(target=lambda: lcp.finish(status, reason, clear=reason == "end_of_source",
                                                                budget_s=list_budget),
                                      name="checkpoint-list-finish", daemon=True)
            writer.start()
            self._writers.append(writer)
        checkpoint = "off"
        cp = self.checkpoint
        if cp is not None:
            budget = FINAL_WRITE_BUDGET_TERMINATED_S if status == "terminated" else FINAL_WRITE_BUDGET_S
            # The end of the source clears the record: the next push starts from the beginning.
            clear = reason == "end_of_source" and not info.is_live
            checkpoint = cp.finish(status, reason, position=position, clear=clear, budget_s=budget)
        room = self.room
        if room is not None:
            room.exit()
        for t in self._writers:  # the records of the sources switched away from
            t.join(timeout=0.5 if status == "terminated" else 2.0)
        if self.segment is not None:
            self._note_source(self.segment)
            self.played[self.segment.src]["checkpoint"] = checkpoint
        pushed = 0.0 if st.first_pts is None else (st.last_pts - st.first_pts) / 1000.0
        result: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "position": round(position, 3),
            "duration": info.duration_s,
            "resumedFrom": resumed_from,
            "pushedSeconds": round(pushed, 3),
            "loops": st.loops,
            "framesSent": {"audio": st.stats.audio, "video": st.stats.video},
            "framesSkipped": int(getattr(self.source, "skipped", 0) or 0),
            "path": self._path(),
            "live": info.is_live,
            "checkpoint": checkpoint,
            "requestId": self.inv.request_id,
            "videoSrc": self._current_name(),
            "sources": list(self.played.values()),
            "switches": self.switches,
        }
        if self.resumed_item is not None:
            result["resumedItem"] = self.resumed_item  # a playlist resumed at this item (resumedFrom: where in it)
        if self.message:
            result["message"] = self.message
        log = self.log.warning if status in ("failed",) else self.log.info
        log("push finished", **result)
        return result

    def _close(self) -> None:
        if self.inbox is not None:
            self.inbox.close("internal_error", timeout_s=0.3)  # a no-op when _finish closed it
        if self.opening is not None:
            self.opening.abandon()
        for c in (self.checkpoint, self.list_checkpoint):
            if c is not None:
                c.close()
        if self.room is not None:
            try:
                self.room.exit()
            except Exception:  # leaving is best effort once the result is decided
                pass
        if self.segment is not None:
            self.segment.own_source = True
            self.segment.release()
        elif self.source is not None:
            close_quietly(self.source)


def run_push(params: PushParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """shared.gateway's `work` for push_stream."""
    return Pusher(params, inv, log).run()
