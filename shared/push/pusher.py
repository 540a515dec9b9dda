"""One push: a video source into a TRTC room in real time, with Redis checkpoints and graceful stops.

    videoSrc --MediaSource.play (start.py: where it starts)--> Segment --FrameReader thread-->
        the loop below --Output (pacing, silence, gain)--> room.send_audio / room.send_video

Three parts meet in the loop, each changing for its own reasons:

- the run (shared.push.run): the records in Redis, entering the room, why the push stops and the
  result. Every way of stopping (end of source, maxDuration, SIGTERM, the time limit, being
  removed, the room dismissed, a newer push taking over) ends in `Run.finish`: a final checkpoint,
  leaving the room, and a result saying why;
- the programme (shared.push.programme): what plays now and next (playlist, queue, push_control's
  switch, pause and resume, the prefetch and the cut between two segments);
- the output (shared.push.output): pacing to the room's clock, silence where a cut or a silent
  source leaves a gap, the volume, the send.

The frames arrive on the push's one timeline (shared.media.timeline: loops, jumps and resets are
already absorbed there), so the loop only hands items on. It is the only thing on the main thread:
room events are polled between frames, Redis is written by the checkpoint's own worker, and sources
are read (and the next one opened) on workers of their own (shared.worker).
"""
from __future__ import annotations

import time
from typing import Any, Optional

from shared.contracts.push import PushParams
from shared.events.emitter import RunEvents
from shared.events.idempotency import RedisKeys
from shared.events.lifecycle import Who, run_with_events
from shared.failures import Failure, Kind
from shared.media.source import PassEnd, SourceError
from shared.push.control import STATUS_PAUSED, STATUS_PLAYING
from shared.push.output import Output, Progress
from shared.push.programme import Programme
from shared.push.reader import END_OF_SOURCE, NOTHING_YET
from shared.push.run import Run
from shared.room import AudioFrame
from shared.runtime import Invocation, RunLogger, StopSignal

PROGRESS_EVERY_S = 5.0


class Pusher:
    """Runs one push; `run()` returns the result dict (or raises Failure before anything is sent)."""

    def __init__(self, params: PushParams, inv: Invocation, log: RunLogger,
                 stop: Optional[StopSignal] = None,
                 events: Optional[RunEvents] = None):
        self.the_run = Run(params, inv, log, stop)
        self.events = events  # lifecycle events (EventCallback), sent off this thread by the run's outbox
        self._checkpoint_failed = False
        self.progress = Progress()
        self.programme: Optional[Programme] = None
        self.output: Optional[Output] = None
        self.max_ms = None if params.maxDuration is None else int(round(params.maxDuration * 1000))
        self._next_progress = 0.0

    def run(self) -> dict[str, Any]:
        run = self.the_run
        try:
            run.begin()
            run.prepare()
            return self._push()
        except Failure:
            raise
        except Exception:
            run.internal_error(self.progress.position_ms / 1000.0)
            raise
        finally:
            run.close(self.programme)
            run.stop.uninstall()

    def _push(self) -> dict[str, Any]:
        run = self.the_run
        assert run.room is not None and run.room_input is not None  # entered by prepare()
        run.start_records()
        self.output = Output(run.room, run.room_input, self.progress, run, run.stop, run.speed, run.params.volume,
                             run.room_audio, run.log)
        programme = self.programme = Programme(
            run.params, run.log, run.stop, run.speed, run.room_input, run.video_plan(), run.records,
            self.progress, self.output, run.first_item, run.list_passes)
        self.progress.position_ms = run.start.position_ms
        self.progress.stats.win_start = time.monotonic()
        self._next_progress = self.progress.stats.win_start + PROGRESS_EVERY_S
        programme.events = self.events
        programme.begin(run.first_source, run.start)
        if self.events is not None:  # entered, the source opened, where it starts
            self.events.emit("started", {"VideoSrc": programme.current_name, "Path": run.path,
                                         "Position": round(run.start.position_s, 3),
                                         "ResumedFrom": run.start.resumed_from, "Playlist": run.params.is_playlist})
        run.register_control(programme.push_state())
        programme.inbox = run.inbox
        reason = self._loop(programme)
        programme.stop_reading()
        return run.finish(reason, programme, self.progress)

    def _loop(self, programme: Programme) -> str:
        """Items from the current segment into the room until something stops the push; why."""
        run = self.the_run
        held: Any = None  # the first item of a segment just cut over to
        read_wait = 0.05 if run.inbox is not None else 0.1
        while True:
            reason = run.stop_reason()
            if reason:
                return reason
            cut = programme.control()
            if cut is not None:
                held = cut
                continue
            if programme.idle:
                if programme.ended_for_good():
                    return "end_of_source"
                run.stop.wait(0.01)
                continue
            item, held = (held, None) if held is not None else (programme.current.reader.next(read_wait), None)
            reason = run.stop_reason() or self._take(item, programme)
            if reason:
                return reason

    def _take(self, item: Any, programme: Programme) -> Optional[str]:
        """Do what the item read asks; a stop reason, or None to go on."""
        if item is NOTHING_YET:
            return None  # the source is slow: keep answering stops and room events
        if item is END_OF_SOURCE:
            return None if programme.source_ended() else "end_of_source"
        if isinstance(item, SourceError):
            return self.the_run.source_failed(item, self.progress.position_ms / 1000, programme.current.name)
        if isinstance(item, PassEnd):
            programme.pass_ended(item)
            return None
        return self._send(item, programme)

    def _send(self, frame: Any, programme: Programme) -> Optional[str]:
        assert self.output is not None
        reason = self.output.send_paced(frame, isinstance(frame, AudioFrame), programme.current, self.max_ms)
        if reason:
            return reason
        programme.after_send()
        self.the_run.records.update(self.progress.position_ms / 1000.0, programme.in_list)
        programme.maybe_prefetch()
        now = time.monotonic()
        if now >= self._next_progress:
            self._report(now, programme)
            self._next_progress = now + PROGRESS_EVERY_S
        return None

    def _note_checkpoint(self, reachable: bool, position: float) -> None:
        """checkpoint_failed once when the records stop being written (again after they recover)."""
        if not reachable and not self._checkpoint_failed and self.events is not None:
            self.events.emit("checkpoint_failed", {"Position": round(position, 3),
                                                   "Message": "Redis unreachable: progress is not being recorded"})
        self._checkpoint_failed = not reachable

    def _report(self, now: float, programme: Programme) -> None:
        """The progress line (every PROGRESS_EVERY_S), and the state push_control reads."""
        run, st = self.the_run, self.progress
        assert self.output is not None
        s = st.stats
        elapsed = max(1e-6, now - s.win_start)
        media_ms = st.last_pts - (st.first_pts or 0)
        if run.passthrough:
            kbps: Optional[float] = round(s.win_video_bytes * 8 / elapsed / 1000, 1)
        else:
            kbps = (run.video_config.bitrate_bps // 1000) or None  # the encoder's target
        cp = run.records.current
        self._note_checkpoint(cp is None or cp.reachable, st.position_ms / 1000)
        run.log.info(
            "progress",
            videoSrc=programme.current_name,
            status=STATUS_PAUSED if programme.paused_at is not None else STATUS_PLAYING,
            switches=len(programme.switches),
            position=round(st.position_ms / 1000, 3),
            duration=programme.current_source.info.duration_s,
            fps=round(s.win_video / elapsed, 2),
            bitrateKbps=kbps,
            speed=round((media_ms - s.win_media_ms) / 1000 / elapsed, 3),
            lagMs=round(self.output.pacer.lag_ms or 0, 1),
            framesSent={"audio": s.audio, "video": s.video},
            checkpoint=None if cp is None else ("ok" if cp.reachable else "redis unreachable"),
        )
        s.win_start, s.win_video, s.win_video_bytes, s.win_media_ms = now, 0, 0, media_ms
        programme.publish()


def run_push(params: PushParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """shared.gateway's `work` for push_stream: one push, with its events and its IdempotencyKey."""
    who = Who(params.sdkAppId, params.roomId, params.userId)
    return run_with_events(params, inv, log, function="push_stream", who=who, store=lambda: _idempotency_store(params),
                           work=lambda events: Pusher(params, inv, log, events=events).run())


def _idempotency_store(params: PushParams) -> RedisKeys:
    """IdempotencyKey's store: the push's own Redis (the model refuses the key without one)."""
    from shared.redis.connection import connect

    address = params.redis_address()
    if address is None:
        raise Failure("IdempotencyKey needs a Redis (redis true with redisHost, or the function's REDIS_URL)",
                      "invalid_parameters", Kind.INVALID)
    return RedisKeys(connect(address))
