"""One push's run: its records, entering the room, why it stops, and the result.

    Run.prepare:  records (Redis) -> the first source and where it starts -> enter the room
    the loop:     Run.stop_reason between frames (room events, SIGTERM, the time limit, fencing)
    Run.finish:   unregister push_control -> the last records -> leave the room -> the result

Every way of stopping (end of source, maxDuration, SIGTERM, the time limit, being removed, the
room dismissed, a newer push taking over) ends in `finish`: a final checkpoint, leaving the room,
and a result saying why. It changes when what a run promises changes (its records, its stop
reasons, its result); what plays is shared.push.programme's, how it goes out shared.push.output's.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Protocol

from shared.contracts.push import PushParams
from shared.failures import Failure, Kind
from shared.media.source import AudioPlan, MediaSource, SourceError, SourceInfo, VideoLimits, VideoPlan, safe_url
from shared.push.checkpoint import Checkpoint, CheckpointUnavailable, PlaylistCheckpoint, Record
from shared.push.control import ControlInbox, ControlUnavailable, PushState
from shared.push.output import Progress, pacing_speed
from shared.push.reader import close_quietly
from shared.push.segment import RoomInput
from shared.push.start import Start, decide_start
from shared.room import (
    NO_MEDIA,
    BitrateRequested,
    EnterParams,
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
from shared.worker import Worker, spawn

ENTER_TIMEOUT_S = 10.0
# How long the last checkpoint write may keep retrying an absent Redis. SIGTERM leaves SCF's grace
# period (and our 2 s promise) for everything else.
FINAL_WRITE_BUDGET_S = 5.0
FINAL_WRITE_BUDGET_TERMINATED_S = 0.8
# TRTC's codes for a UserSig the room refuses: the caller's to fix, not the room's failure.
USERSIG_CODES = (-3317, -3318, -3319, -3320)

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


class Played(Protocol):
    """What the run's end needs of the programme (shared.push.programme.Programme): what played."""

    played: dict[str, dict[str, Any]]
    switches: list[dict[str, Any]]

    @property
    def current_source(self) -> MediaSource: ...

    @property
    def current_name(self) -> Optional[str]: ...

    def abandon_opening(self) -> None: ...

    def note_checkpoint(self, outcome: str) -> None: ...

    def release(self) -> bool: ...


def _redis_required(e: CheckpointUnavailable) -> Failure:
    return Failure(f"redis is required (redis=true) but {e}; nothing was pushed", "redis_unavailable",
                   Kind.UNAVAILABLE)


class Records:
    """The push's records in Redis: the current source's checkpoint and, for a playlist, the whole
    list's. Any of them fenced (a newer push claimed it) stops the push `superseded`."""

    def __init__(self, params: PushParams, inv: Invocation, log: RunLogger, stop: StopSignal):
        self.params = params
        self.inv = inv
        self.log = log
        self.stop = stop
        self.current: Optional[Checkpoint] = None  # the current source's record
        self.playlist: Optional[PlaylistCheckpoint] = None  # a playlist's record of the whole list
        self.writers: list[Worker] = []  # the last writes of the sources switched away from

    def connect(self, src: str, playlist: Optional[list[str]] = None) -> Checkpoint:
        p = self.params
        assert p.redisHost is not None
        return Checkpoint.connect(
            host=p.redisHost, port=p.redisPort,
            password=p.redisPassword.get_secret_value() if p.redisPassword else None,
            db=p.redisDb, sdk_app_id=p.sdkAppId, room=p.room, video_src=src,
            request_id=self.inv.request_id, log=self.log, playlist=playlist)

    def _superseded(self) -> None:
        self.stop.request("superseded")

    def follow(self, cp: Optional[Checkpoint]) -> None:
        """`cp` is the current source's record from now on."""
        self.current = cp
        if cp is not None:
            cp.on_fenced = self._superseded

    def start(self, start: Start, info: SourceInfo, item: int, list_passes: int) -> None:
        """Claim the records for the first source (Failure when Redis is required and absent)."""
        duration = None if info.is_live else info.duration_s
        for cp in (self.current, self.playlist):
            if cp is None:
                continue
            cp.on_fenced = self._superseded
            if isinstance(cp, PlaylistCheckpoint):
                cp.at(item, list_passes, start.position_s, info.duration_s)
            try:
                cp.start(start.position_s, duration)
            except CheckpointUnavailable as e:
                raise _redis_required(e) from None

    @property
    def fenced(self) -> bool:
        return any(cp is not None and cp.fenced for cp in (self.current, self.playlist))

    def update(self, position_s: float, in_list: bool) -> None:
        if self.current is not None:
            self.current.update(position_s)
        if self.playlist is not None and in_list:
            self.playlist.update(position_s)

    def retire(self, cp: Checkpoint, ended: bool, position_s: float, clear: bool,
               entry: Optional[dict[str, Any]]) -> None:
        """A source cut away from: its record left where it was left, in the background."""

        def write() -> None:
            outcome = cp.finish("completed" if ended else "stopped", "end_of_source" if ended else "switched",
                                position=position_s, clear=clear, budget_s=2.0)
            if entry is not None:
                entry["checkpoint"] = outcome
            cp.close()

        self.writers.append(spawn(write, "checkpoint-finish"))

    def finish(self, status: str, reason: str, position_s: float, live: bool) -> str:
        """The last writes: the list's in the background, the current source's here. Its outcome."""
        budget = FINAL_WRITE_BUDGET_TERMINATED_S if status == "terminated" else FINAL_WRITE_BUDGET_S
        lcp = self.playlist
        if lcp is not None:
            # The list's record: cleared when the whole list ended; else it keeps its item and position.
            self.writers.append(spawn(lambda: lcp.finish(status, reason, clear=reason == "end_of_source",
                                                         budget_s=budget), "checkpoint-list-finish"))
        cp = self.current
        if cp is None:
            return "off"
        # The end of the source clears the record: the next push starts from the beginning.
        return cp.finish(status, reason, position=position_s, clear=reason == "end_of_source" and not live,
                         budget_s=budget)

    def join_writers(self, timeout_s: float) -> None:
        for w in self.writers:
            w.join(timeout_s)

    def internal_error(self, position_s: float) -> None:
        """A bug, not a stop: still leave a truthful record behind for the next push."""
        if self.current is not None and self.current.started:
            self.current.finish("failed", "internal_error", position=position_s, budget_s=1.0)
        if self.playlist is not None and self.playlist.started:
            self.playlist.finish("failed", "internal_error", budget_s=1.0)

    def close(self) -> None:
        for c in (self.current, self.playlist):
            if c is not None:
                c.close()


class Run:
    """The run of one push: prepared (`prepare`), asked why to stop, and finished into a result."""

    def __init__(self, params: PushParams, inv: Invocation, log: RunLogger,
                 stop: Optional[StopSignal] = None):
        self.params = params
        self.inv = inv
        self.log = log
        self.stop = stop or StopSignal(deadline=inv.deadline)
        self.speed = pacing_speed()
        self.records = Records(params, inv, log, self.stop)
        self.room: Optional[Room] = None
        self.source: Optional[MediaSource] = None  # the first source (then the programme's segments)
        self.room_input: Optional[RoomInput] = None
        self.inbox: Optional[ControlInbox] = None
        self.video_config = VideoEncodeConfig()
        self.passthrough = False  # the room takes H.264 (fixed at enter)
        self.room_audio = False  # the room's audio was started (the first source has audio)
        self.start = Start(0.0, None, False)
        self.message = ""
        self.first_item = 0  # playlist: the item the push starts with (a resumed list: where it was)
        self.resumed_item: Optional[int] = None
        self.list_passes = 0  # playlist: passes over the whole list finished before this push

    # --- before anything is sent -----------------------------------------------------------------

    def begin(self) -> None:
        p = self.params
        redact_value(p.userSig.get_secret_value())
        if p.redisPassword is not None:
            redact_value(p.redisPassword.get_secret_value())
        self.stop.install()  # SIGTERM -> "terminated" (a no-op off the main thread)
        self.log.info("push starting", videoSrc=safe_url(p.sources[0]), sdkAppId=p.sdkAppId, room=p.room.key,
                      userId=p.userId, redis=p.redis, pacingSpeed=self.speed,
                      playlist=[safe_url(s) for s in p.sources] if p.is_playlist else None)

    def prepare(self) -> None:
        """Records, the first source and where it starts, the room entered (Failure: nothing sent)."""
        record = self._open_records()
        self._open_source(record)
        self._enter_room()

    @property
    def first_source(self) -> MediaSource:
        """The first source: opened by `prepare`, before anything reads it."""
        assert self.source is not None
        return self.source

    def _open_records(self) -> Optional[Record]:
        """The records this push resumes from; a playlist's own record picks the item it starts with."""
        p = self.params
        if not p.redis:
            return None
        listed: Optional[Record] = None
        try:
            if p.is_playlist:
                cp = self.records.connect(p.sources[0], playlist=p.sources)
                assert isinstance(cp, PlaylistCheckpoint)
                self.records.playlist = cp
                listed = self._list_start(cp.load())
            self.records.current = current = self.records.connect(p.sources[self.first_item])
            record = current.load()
        except CheckpointUnavailable as e:
            raise _redis_required(e) from None
        if listed is not None:
            record = listed  # the list's record says where in the item, whatever the item's own says
        if record:
            self.log.info("checkpoint found", key=current.key, position=record.position,
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

    def video_plan(self) -> VideoPlan:
        p = self.params
        return VideoPlan(width=p.videoWidth, height=p.videoHeight, fps=p.videoFps,
                         bitrate_kbps=p.videoBitrate, gop_s=p.videoGop)

    def _open_source(self, record: Optional[Record]) -> None:
        p = self.params
        audio = AudioPlan(volume=100, channels=None)  # the volume is applied at the send (it can change)
        try:
            # The source checks videoSrc against SOURCE_ALLOWLIST (no internal addresses) itself.
            self.source = MediaSource(p.sources[self.first_item], video=self.video_plan(), audio=audio, log=self.log,
                                      limits=VideoLimits.from_settings())
        except SourceError as e:
            raise Failure(str(e), "source_error", Kind.INVALID) from None
        self.passthrough = bool(self.source.info.passthrough)
        self.start = decide_start(p, record, self.source.info, self.log)

    def _enter_room(self) -> None:
        p = self.params
        info = self.first_source.info
        try:
            self.room = open_room()
        except RoomConfigError as e:
            raise Failure(str(e), "room_config", Kind.INTERNAL) from None
        params = EnterParams(
            sdk_app_id=p.sdkAppId, room=p.room, user_id=p.userId, user_sig=p.userSig.get_secret_value(),
            role=Role.ANCHOR, timeout=ENTER_TIMEOUT_S,
            video_input=VideoFormat.H264 if self.passthrough else VideoFormat.YUV420P,
            receive=NO_MEDIA,
        )
        fps = max(1, int(round(info.out_fps or 25)))  # what the source makes (capped at PUSH_MAX_FPS)
        try:
            self.room.enter(params)
            if info.has_audio:
                self.room.start_audio(channels=self.audio_channels())
                self.room_audio = True
            if info.has_video:
                self.video_config = VideoEncodeConfig(
                    fps=fps, bitrate_bps=(p.videoBitrate or 0) * 1000, gop_seconds=p.videoGop or 2)
                self.room.start_video(self.video_config)
        except RoomError as e:
            kind = Kind.FORBIDDEN if e.code in USERSIG_CODES else Kind.UPSTREAM
            raise Failure(f"could not enter room {p.room.id} of sdkAppId {p.sdkAppId} as {p.userId}: {e}",
                          "room_error", kind) from None
        # Every later source is made to fit what the room was entered with (shared.push.segment).
        self.room_input = RoomInput(h264=self.passthrough, width=info.out_width, height=info.out_height, fps=fps,
                                    channels=self.audio_channels(), gop_s=p.videoGop or 2)
        self.log.info("entered the room", room=p.room.key, userId=p.userId, path=self.path,
                      videoInput=params.video_input.value)

    def audio_channels(self) -> int:
        # What the source's frames carry: mono stays mono, anything more is (downmixed to) stereo.
        channels = getattr(self.source, "channels", None) or self.first_source.info.audio_channels or 1
        return 2 if channels >= 2 else 1

    @property
    def path(self) -> str:
        """What the room was entered with (each source's own path is in `sources`)."""
        return "passthrough" if self.passthrough else "transcode"

    def start_records(self) -> None:
        self.records.start(self.start, self.first_source.info, self.first_item, self.list_passes)

    def register_control(self, state: PushState) -> None:
        """Take push_control's commands, when the push has a Redis to take them from."""
        p = self.params
        try:
            address = p.redis_address()
        except ValueError:
            address = None
        if address is None:
            return
        try:
            self.inbox = ControlInbox.register(
                address, request_id=self.inv.request_id, sdk_app_id=p.sdkAppId, room=p.room, user_id=p.userId,
                state=state, log=self.log, checkpoint=p.redis, user_sig=p.userSig.get_secret_value(),
                control_token=p.controlToken.get_secret_value() if p.controlToken else None)
        except ControlUnavailable as e:
            self.log.warning("control: unavailable; pushing without push_control", error=str(e))

    # --- why to stop (shared.push.output.Stops) --------------------------------------------------

    def stop_reason(self) -> Optional[str]:
        """Drain room events; then whatever has asked us to stop."""
        room = self.room
        assert room is not None
        while True:
            event = room.poll(0)
            if event is None:
                break
            if isinstance(event, RoomClosed):
                self._on_closed(event)
            elif isinstance(event, BitrateRequested) and not self.passthrough:
                # Passthrough: the source's bitrate is what it is. A key frame request needs nothing
                # either: transcoding, the room's encoder makes one; passthrough, the source's GOP decides.
                self.video_config = VideoEncodeConfig(self.video_config.fps, event.bitrate_bps,
                                                      self.video_config.gop_seconds)
                room.set_video_encode(self.video_config)
                self.log.info("video bitrate changed at the room's request", bitrate=event.bitrate_bps)
        if self.records.fenced:
            self.stop.request("superseded")
        return self.stop.reason

    def _on_closed(self, event: RoomClosed) -> None:
        reason = event.result_reason
        if not self.message:
            self.message = event.message or f"the room closed: {event.reason.value}"
        self.log.warning("out of the room", reason=reason, code=event.code, detail=event.message)
        self.stop.request(reason)

    def closed_reason(self) -> str:
        room = self.room
        assert room is not None
        closed = room.closed
        if closed is not None:
            self._on_closed(closed)
        return self.stop.reason or "room_error"

    def refused(self, message: str) -> None:
        self.message = message
        self.log.error("the room refused a frame", error=message)
        self.stop.request("room_error")

    def source_failed(self, error: SourceError, position_s: float, name: str) -> str:
        self.message = str(error)
        self.log.error("the source failed mid-push", error=str(error), position=position_s, videoSrc=name)
        return "source_error"

    # --- the end ---------------------------------------------------------------------------------

    def finish(self, reason: str, programme: Played, progress: Progress) -> dict[str, Any]:
        """The last records, the room left, and the result."""
        status = STATUS_BY_REASON.get(reason, "stopped")
        terminated = status == "terminated"
        position = progress.position_ms / 1000.0
        if self.inbox is not None:
            # Unregister first: a control call from now on is told the push is ending (409), then 404.
            self.inbox.close(reason, timeout_s=0.3 if terminated else 1.0)
        programme.abandon_opening()
        info = programme.current_source.info
        checkpoint = self.records.finish(status, reason, position, info.is_live)
        if self.room is not None:
            self.room.exit()
        self.records.join_writers(0.5 if terminated else 2.0)  # the records of the sources switched away from
        programme.note_checkpoint(checkpoint)
        result: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "position": round(position, 3),
            "duration": info.duration_s,
            "resumedFrom": self.start.resumed_from,
            "pushedSeconds": progress.pushed_s,
            "loops": progress.loops,
            "framesSent": {"audio": progress.stats.audio, "video": progress.stats.video},
            "framesSkipped": int(getattr(programme.current_source, "skipped", 0) or 0),
            "path": self.path,
            "live": info.is_live,
            "checkpoint": checkpoint,
            "requestId": self.inv.request_id,
            "videoSrc": programme.current_name,
            "sources": list(programme.played.values()),
            "switches": programme.switches,
        }
        if self.resumed_item is not None:
            result["resumedItem"] = self.resumed_item  # a playlist resumed at this item (resumedFrom: where in it)
        if self.message:
            result["message"] = self.message
        log = self.log.warning if status == "failed" else self.log.info
        log("push finished", **result)
        return result

    def internal_error(self, position_s: float) -> None:
        """A bug, not a stop: unregister, and leave a truthful record behind for the next push."""
        if self.inbox is not None:
            self.inbox.close("internal_error", timeout_s=0.5)
        self.records.internal_error(position_s)

    def close(self, programme: Optional[Played]) -> None:
        """Whatever is still open, however the run ended (a no-op for what `finish` closed)."""
        if self.inbox is not None:
            self.inbox.close("internal_error", timeout_s=0.3)
        if programme is not None:
            programme.abandon_opening()
        self.records.close()
        if self.room is not None:
            try:
                self.room.exit()
            except Exception:  # leaving is best effort once the result is decided
                pass
        if programme is not None and programme.release():
            return
        if self.source is not None:
            close_quietly(self.source)
