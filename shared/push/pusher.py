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

import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from shared.settings import settings
from shared.push.checkpoint import Checkpoint, CheckpointUnavailable, Record
from shared.push.reader import END_OF_SOURCE, NOTHING_YET, FrameReader, close_quietly
from shared.push.start import Start, decide_start, frames_from
from shared.contracts.push import PushParams
from shared.gateway import UserError
from shared.media.pacing import Pacer
from shared.media.source import AudioPlan, MediaSource, PassEnd, SourceError, VideoLimits, VideoPlan, safe_url
from shared.room import (
    AudioFrame, BitrateRequested, EnterParams, H264Frame, KeyFrameRequested, Role, Room,
    RoomClosed, RoomConfigError, RoomError, VideoEncodeConfig, VideoFormat, open_room,
)
from shared.runtime import Invocation, RunLogger, StopSignal, redact_value

PACING_SPEED_ENV = "PACING_SPEED"
PROGRESS_EVERY_S = 5.0
ENTER_TIMEOUT_S = 10.0
# How long the last checkpoint write may keep retrying an absent Redis. SIGTERM leaves SCF's grace
# period (and our 2 s promise) for everything else.
FINAL_WRITE_BUDGET_S = 5.0
FINAL_WRITE_BUDGET_TERMINATED_S = 0.8

# Why a push stopped -> the result's status.
STATUS_BY_REASON = {
    "end_of_source": "completed",
    "max_duration": "completed",
    "terminated": "terminated",
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


class Pusher:
    """Runs one push; `run()` returns the result dict (or raises UserError before anything is sent)."""

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
        self.source: Optional[MediaSource] = None
        self.checkpoint: Optional[Checkpoint] = None
        self.state = _State()
        self.message = ""
        self.video_config = VideoEncodeConfig()
        self.passthrough = False
        self.start = Start(0.0, None, False)
        self.reader: Optional[FrameReader] = None

    # --- the whole run -------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        p = self.params
        redact_value(p.userSig.get_secret_value())
        if p.redisPassword is not None:
            redact_value(p.redisPassword.get_secret_value())
        self.stop.install()  # SIGTERM -> "terminated" (a no-op off the main thread)
        try:
            self.log.info("push starting", videoSrc=safe_url(p.videoSrc), sdkAppId=p.sdkAppId, room=p.room.key,
                          userId=p.userId, redis=p.redis, pacingSpeed=self.speed)
            record = self._open_checkpoint()
            self._open_source(record)
            self._enter_room()
            return self._push()
        except UserError:
            raise
        except Exception:
            # A bug, not a stop: still leave a truthful record behind for the next push.
            if self.checkpoint is not None and self.checkpoint.started:
                self.checkpoint.finish("failed", "internal_error", position=self.state.position_ms / 1000.0,
                                       budget_s=1.0)
            raise
        finally:
            self._close()
            self.stop.uninstall()

    # --- setup ---------------------------------------------------------------------------------

    def _open_checkpoint(self) -> Optional[Record]:
        p = self.params
        if not p.redis:
            return None
        assert p.redisHost is not None
        try:
            self.checkpoint = Checkpoint.connect(
                host=p.redisHost, port=p.redisPort,
                password=p.redisPassword.get_secret_value() if p.redisPassword else None,
                db=p.redisDb, sdk_app_id=p.sdkAppId, room=p.room, video_src=p.videoSrc,
                request_id=self.inv.request_id, log=self.log)
            record = self.checkpoint.load()
        except CheckpointUnavailable as e:
            raise UserError(f"redis is required (redis=true) but {e}; nothing was pushed",
                            "redis_unavailable", 503) from None
        if record:
            self.log.info("checkpoint found", key=self.checkpoint.key, position=record.position,
                          previousRequestId=record.request_id, previousStatus=record.status)
        return record

    def _open_source(self, record: Optional[Record]) -> None:
        p = self.params
        video = VideoPlan(width=p.videoWidth, height=p.videoHeight, fps=p.videoFps,
                          bitrate_kbps=p.videoBitrate, gop_s=p.videoGop)
        audio = AudioPlan(volume=p.volume, channels=None)
        try:
            # The source checks videoSrc against SOURCE_ALLOWLIST (no internal addresses) itself.
            self.source = MediaSource(p.videoSrc, video=video, audio=audio, log=self.log,
                                      limits=VideoLimits.from_env(self.env))
        except SourceError as e:
            raise UserError(str(e), "source_error", 400) from None
        self.passthrough = bool(self.source.info.passthrough)
        self.start = decide_start(p, record, self.source.info, self.log)

    def _enter_room(self) -> None:
        p = self.params
        info = self.source.info  # type: ignore[union-attr]
        try:
            self.room = open_room(dict(self.env))
        except RoomConfigError as e:
            raise UserError(str(e), "room_config", 500) from None
        params = EnterParams(
            sdk_app_id=p.sdkAppId, room=p.room, user_id=p.userId, user_sig=p.userSig.get_secret_value(),
            role=Role.ANCHOR, timeout=ENTER_TIMEOUT_S,
            video_input=VideoFormat.H264 if self.passthrough else VideoFormat.YUV420P,
            receive_media=False,
        )
        try:
            self.room.enter(params)
            if info.has_audio:
                self.room.start_audio(channels=self._audio_channels())
            if info.has_video:
                fps = int(round(info.out_fps or 25))  # what the source makes (capped at PUSH_MAX_FPS)
                self.video_config = VideoEncodeConfig(
                    fps=max(1, fps), bitrate_bps=(p.videoBitrate or 0) * 1000, gop_seconds=p.videoGop or 2)
                self.room.start_video(self.video_config)
        except RoomError as e:
            raise UserError(f"could not enter room {p.room.id} of sdkAppId {p.sdkAppId} as {p.userId}: "
                            f"{e}", "room_error", 403 if e.code in (-3317, -3318, -3319, -3320) else 502) from None
        self.log.info("entered the room", room=p.room.key, userId=p.userId, path=self._path(),
                      videoInput=params.video_input.value)

    def _audio_channels(self) -> int:
        # What the source's frames carry: mono stays mono, anything more is (downmixed to) stereo.
        channels = getattr(self.source, "channels", None) or self.source.info.audio_channels or 1  # type: ignore[union-attr]
        return 2 if channels >= 2 else 1

    def _path(self) -> str:
        return "passthrough" if self.passthrough else "transcode"

    # --- the loop ------------------------------------------------------------------------------

    def _push(self) -> dict[str, Any]:
        p, source, room = self.params, self.source, self.room
        assert source is not None and room is not None
        info = source.info
        cp = self.checkpoint
        if cp is not None:
            cp.on_fenced = lambda: self.stop.request("superseded")
            try:
                cp.start(self.start.position_s, None if info.is_live else info.duration_s)
            except CheckpointUnavailable as e:
                raise UserError(f"redis is required (redis=true) but {e}; nothing was pushed",
                                "redis_unavailable", 503) from None

        pacer = Pacer(speed=self.speed, sleep=self._sleep)
        st = self.state
        st.position_ms = self.start.position_ms
        st.stats.win_start = time.monotonic()
        next_progress = st.stats.win_start + PROGRESS_EVERY_S
        max_ms = None if p.maxDuration is None else int(round(p.maxDuration * 1000))
        passes = None if p.repeatNum == -1 else p.repeatNum + 1
        self.reader = reader = FrameReader(frames_from(self.start, source, passes, self.log), source)
        reason: Optional[str] = None
        while reason is None:
            item = reader.next(timeout=0.1)
            reason = self._stop_reason()
            if reason:
                break
            if item is NOTHING_YET:
                continue  # the source is slow: keep answering stops and room events
            if item is END_OF_SOURCE:
                st.loops += 1
                reason = "end_of_source"
                break
            if isinstance(item, SourceError):
                self.message = str(item)
                self.log.error("the source failed mid-push", error=str(item), position=st.position_ms / 1000)
                reason = "source_error"
                break
            if isinstance(item, PassEnd):
                st.loops, st.pass_offset_ms = item.passes, item.offset_ms
                self.log.info("looping the source", loop=st.loops, repeatNum=p.repeatNum)
                continue
            reason = self._send_paced(item, isinstance(item, AudioFrame), max_ms, pacer)
            if reason:
                break
            if cp is not None:
                cp.update(st.position_ms / 1000.0)
            now = time.monotonic()
            if now >= next_progress:
                self._progress(now, pacer)
                next_progress = now + PROGRESS_EVERY_S
        reader.stop()
        return self._finish(reason, self.start.resumed_from)

    def _send_paced(self, frame: Any, is_audio: bool, max_ms: Optional[int], pacer: Pacer) -> Optional[str]:
        """Wait for the frame's time, send it and account for it; a stop reason, or None."""
        st = self.state
        pts = frame.pts_ms
        if st.first_pts is None:
            st.first_pts = pts
        if max_ms is not None and pts - st.first_pts >= max_ms:
            return "max_duration"
        pacer.wait(pts, "audio" if is_audio else "video")
        reason = self._stop_reason()
        if reason:
            return reason
        if not self._send(frame, is_audio):
            return self._closed_reason()
        # A pass's first audio frame may begin with the last samples of the pass before.
        st.position_ms = max(0, pts - st.pass_offset_ms)
        st.last_pts = pts
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
                room.send_audio(frame)
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
        if self.checkpoint is not None and self.checkpoint.fenced:
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
        info = self.source.info  # type: ignore[union-attr]
        if self.passthrough:
            kbps: Optional[float] = round(s.win_video_bytes * 8 / elapsed / 1000, 1)
        else:
            kbps = (self.video_config.bitrate_bps // 1000) or None  # the encoder's target
        self.log.info(
            "progress",
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

    # --- stopping ------------------------------------------------------------------------------

    def _finish(self, reason: str, resumed_from: Optional[float]) -> dict[str, Any]:
        st = self.state
        status = STATUS_BY_REASON.get(reason, "stopped")
        info = self.source.info  # type: ignore[union-attr]
        position = st.position_ms / 1000.0
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
        }
        if self.message:
            result["message"] = self.message
        log = self.log.warning if status in ("failed",) else self.log.info
        log("push finished", **result)
        return result

    def _close(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.close()
        if self.room is not None:
            try:
                self.room.exit()
            except Exception:  # leaving is best effort once the result is decided
                pass
        if self.source is not None:
            reader = self.reader
            if reader is None or reader.release(self.source):
                close_quietly(self.source)


def run_push(params: PushParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """shared.gateway's `work` for push_stream."""
    return Pusher(params, inv, log).run()
