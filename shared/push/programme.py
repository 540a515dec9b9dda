"""The push's programme: what plays now and what plays next.

    playlist / push_control (switch, enqueue, pause, resume, volume, stop, status)
        -> the queue -> an Opening (shared.push.segment: opened in the background)
        -> the cut: the opened segment takes over at a frame boundary, on the room's timeline

A push plays segments one after another (the first source, each switch, each queued or playlist
item, the current source again after a resume). The next queued source is opened PREFETCH_S before
the current one ends, so that the join is a cut; a switch is opened while the current source plays
on, and a switch that fails leaves it playing. It changes when what a caller can ask to play
changes; how a frame goes out is shared.push.output's, why the push stops shared.push.run's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from shared.contracts.push import PushParams
from shared.events.emitter import RunEvents
from shared.failures import Failure, Kind
from shared.media.source import MediaSource, PassEnd, SourceError, VideoLimits, VideoPlan, safe_url
from shared.push.checkpoint import Checkpoint, CheckpointUnavailable
from shared.push.control import STATUS_PAUSED, STATUS_PLAYING, Command, ControlInbox, PushState
from shared.push.output import Output, Progress
from shared.push.reader import close_quietly
from shared.push.run import Records
from shared.push.segment import PASSTHROUGH, TRANSCODE, Opening, RoomInput, Segment, make_segment, open_fitting
from shared.push.start import Start, decide_start
from shared.runtime import RunLogger, StopSignal

# The next queued source is opened this long before the current one ends, so that the join is a cut.
PREFETCH_S = 2.0
# A resume reuses the paused source once its reader has let go; a read still stuck after this long
# (a stalled network source) and the source is opened again instead, within the command's budget.
RESUME_READ_WAIT_S = 0.5


@dataclass(frozen=True)
class Queued:
    """A source waiting its turn: a playlist's item (its index in the list) or one push_control enqueued."""

    src: str
    item: Optional[int] = None


class SegmentOpener:
    """Opens the segments that follow the first, on an Opening's thread: each source made to fit
    the room, started where a fresh push of it would start, with its own record claimed."""

    def __init__(self, params: PushParams, log: RunLogger, room_input: RoomInput,
                 video: VideoPlan, records: Records, passes: Optional[int]):
        self.params = params
        self.log = log
        self.room_input = room_input
        self.video = video
        self.records = records
        self.passes = passes  # the push's own repeatNum, for its first source played again

    def _fitting(self, src: str) -> tuple[MediaSource, str]:
        return open_fitting(src, self.room_input, self.video, VideoLimits.from_settings(), self.log)

    def open(self, src: str, seek: Optional[float]) -> Segment:
        """`src` opened to fit the room, from seekSecond if given, else its own record, else 0."""
        p = self.params
        source, path = self._fitting(src)
        cp: Optional[Checkpoint] = None
        try:
            record = None
            if p.redis:
                try:
                    cp = self.records.connect(src)
                    record = cp.load()
                except CheckpointUnavailable as e:
                    self.log.warning("checkpoint: unavailable for the new source; it plays without one", error=str(e))
                    cp = None
            if seek is not None:
                record = None
            start = decide_start(p.model_copy(update={"seekSecond": seek}), record, source.info, self.log)
            if cp is not None:
                cp.start(start.position_s, None if source.info.is_live else source.info.duration_s)
            passes = 1 if p.is_playlist or src != p.sources[0] else self.passes
            return make_segment(src, source, path, start, passes, self.room_input, self.log, checkpoint=cp)
        except Failure as e:
            close_quietly(source)
            raise SourceError(str(e)) from None
        except BaseException:
            close_quietly(source)
            raise

    def resume(self, old: Segment, position: float, passes: Optional[int], loops: int) -> Segment:
        """The paused segment's source again from `position` (bridged to a key frame in passthrough)."""
        old.reader.stop()
        # The source is not thread-safe: it is reused only once its reader is done with it.
        if old.reader.join(RESUME_READ_WAIT_S):
            source, path, own = old.source, old.path, False  # the cut makes it the new segment's
        else:
            self.log.warning("resume: the paused source's last read has not returned; opening it again",
                             videoSrc=old.name)
            source, path = self._fitting(old.src)
            own = True
        info = source.info
        start = Start(0.0 if info.is_live else position, None,
                      bridged=path == PASSTHROUGH and position > 0 and not info.is_live)
        seg = make_segment(old.src, source, path, start, passes, self.room_input, self.log,
                           checkpoint=old.checkpoint, own_source=own)
        seg.loops_before = loops
        return seg


class Programme:
    """What plays: the current segment, the queue, and the segment being opened to follow it."""

    def __init__(self, params: PushParams, log: RunLogger, stop: StopSignal, speed: float,
                 room_input: RoomInput, video: VideoPlan, records: Records, progress: Progress, output: Output,
                 first_item: int, list_passes: int):
        self.params = params
        self.log = log
        self.stop = stop
        self.speed = speed
        self.room_input = room_input
        self.video = video  # the push's own video parameters (each source is made to fit the room)
        self.records = records
        self.progress = progress
        self.output = output
        self.inbox: Optional[ControlInbox] = None  # set once the push registered for push_control
        self.events: Optional[RunEvents] = None  # lifecycle events (EventCallback), when asked for
        self.first_item = first_item
        self.list_passes = list_passes  # playlist: passes over the whole list finished
        self.queue: list[Queued] = []
        if params.is_playlist:
            self.queue = [Queued(s, i) for i, s in enumerate(params.sources) if i > first_item]
        self.segment: Optional[Segment] = None
        self.opening: Optional[Opening] = None
        self.paused_at: Optional[float] = None
        self.current_ended = False  # the current segment ended; the next one is being opened
        self.switches: list[dict[str, Any]] = []
        self.played: dict[str, dict[str, Any]] = {}  # videoSrc -> what the result says of it
        self._after_first_send: Optional[tuple[Optional[Command], Optional[dict[str, Any]]]] = None
        self._op_started = 0.0
        self.opener = SegmentOpener(params, log, room_input, video, records, self.passes())
        self._actions: dict[str, Callable[[Command], None]] = {
            "status": self._ack, "volume": self._volume, "stop": self._stop, "enqueue": self._enqueue,
            "pause": self._pause, "resume": self._resume, "switch": self._switch}

    # --- what plays now --------------------------------------------------------------------------

    def begin(self, source: MediaSource, start: Start) -> Segment:
        """The first segment: the first source from where the push starts."""
        p = self.params
        seg = make_segment(p.sources[self.first_item], source, PASSTHROUGH if self.room_input.h264 else TRANSCODE,
                           start, self.passes(), self.room_input, self.log, checkpoint=self.records.current)
        seg.item = self.first_item if p.is_playlist else None
        self.segment = seg
        self.note_source(seg)
        return seg

    @property
    def current(self) -> Segment:
        assert self.segment is not None  # set by begin(), before the loop asks
        return self.segment

    @property
    def current_source(self) -> MediaSource:
        return self.current.source

    @property
    def current_name(self) -> Optional[str]:
        return None if self.segment is None else self.segment.name

    @property
    def in_list(self) -> bool:
        """The current segment is one of the playlist's items (the list's record follows it)."""
        return self.segment is not None and self.segment.item is not None

    def passes(self) -> Optional[int]:
        p = self.params
        if p.is_playlist:
            return 1  # repeatNum applies to the whole list
        return None if p.repeatNum == -1 else p.repeatNum + 1

    @property
    def idle(self) -> bool:
        """Nothing to read now: paused, or the current source ended and the next is being opened."""
        return self.paused_at is not None or self.current_ended

    def push_state(self) -> PushState:
        seg = self.segment
        src = seg.src if seg is not None else self.params.sources[self.first_item]
        return PushState(status=STATUS_PAUSED if self.paused_at is not None else STATUS_PLAYING,
                         video_src=safe_url(src), position=self.progress.position_ms / 1000.0,
                         queue=[safe_url(q.src) for q in self.queue], volume=self.output.volume)

    def publish(self) -> None:
        if self.inbox is not None:
            self.inbox.publish_state(self.push_state())

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.emit(name, payload)

    # --- the current segment's passes ------------------------------------------------------------

    def pass_ended(self, end: PassEnd) -> None:
        seg = self.current
        self.progress.loops, seg.pass_offset_ms = seg.loops_before + end.passes, end.offset_ms
        self.log.info("looping the source", loop=self.progress.loops, repeatNum=self.params.repeatNum)

    def source_ended(self) -> bool:
        """The current segment read to its end: True when something follows it (the push goes on)."""
        seg = self.current
        self.progress.loops = seg.loops_before + (seg.passes or 1)
        self._event("item_ended", {"VideoSrc": seg.name, "Item": seg.item,
                                   "Position": round(self.progress.position_ms / 1000, 3)})
        if self.queue or (self.opening is not None and self.opening.command is None) or self._refill():
            self.current_ended = True
            return True
        return False

    def ended_for_good(self) -> bool:
        """While idle: the current source ended and nothing follows (nothing opening, nothing queued)."""
        return self.current_ended and self.opening is None and not self._take_next()

    # --- push_control ----------------------------------------------------------------------------

    def control(self) -> Any:
        """Apply what push_control sent; the first item of a segment cut over to, or None."""
        inbox = self.inbox
        if inbox is not None:
            for cmd in inbox.poll():
                self.log.info("control: applying", action=cmd.action, commandId=cmd.id)
                action = self._actions.get(cmd.action)
                if action is None:
                    inbox.refuse(cmd, Kind.INVALID, "invalid_parameters", f"action {cmd.action} is not known to this push")
                else:
                    action(cmd)
            for cmd in inbox.expire_overdue():
                op = self.opening
                if op is not None and op.command is not None and op.command.id == cmd.id:
                    self._abandon(op)
                    self.log.warning("control: a switch could not be made in time; dropped", action=cmd.action)
        return self._ready_cut()

    def _ready_cut(self) -> Any:
        op = self.opening
        if op is None or not op.done.is_set():
            return None
        if op.command is None and not self.current_ended:
            return None  # the queue's next item waits for the current one to end
        self.opening = None
        if op.command is not None and op.command.expired:
            self._abandon(op)
            return None
        if op.segment is None:
            self._failed_switch(op)
            return None
        return self._cut(op)

    def _inbox(self) -> ControlInbox:
        assert self.inbox is not None  # commands come from it
        return self.inbox

    def _ack(self, cmd: Command) -> None:
        self._inbox().ack(cmd, self.push_state())

    def _volume(self, cmd: Command) -> None:
        self.output.volume = int(cmd.volume if cmd.volume is not None else self.output.volume)
        self._ack(cmd)

    def _stop(self, cmd: Command) -> None:
        self._ack(cmd)
        self.stop.request("control_stop")

    def _enqueue(self, cmd: Command) -> None:
        self.queue += [Queued(s) for s in cmd.sources]
        self._ack(cmd)

    def _pause(self, cmd: Command) -> None:
        if self.paused_at is None and not (self.opening is not None and self.opening.trigger == "resume"):
            self.paused_at = time.monotonic()
            self.log.info("paused", position=round(self.progress.position_ms / 1000, 3))
            self._event("paused", {"VideoSrc": self.current_name, "Position": round(self.progress.position_ms / 1000, 3)})
        self._ack(cmd)

    def _resume(self, cmd: Command) -> None:
        if self.paused_at is None:
            self._ack(cmd)
        elif self.opening is not None and self.opening.command is not None:
            self._inbox().refuse(cmd, Kind.CONFLICT, "busy", "a switch is in progress; resume after it")
        else:
            self._begin_resume(cmd)

    def _switch(self, cmd: Command) -> None:
        if self.opening is not None and self.opening.command is not None:
            self._inbox().refuse(cmd, Kind.CONFLICT, "busy",
                                 f"a {self.opening.trigger} is in progress; try again when it is done")
            return
        self._drop_prefetch()
        src = cmd.video_src or ""
        self._begin(Opening(lambda: self.opener.open(src, cmd.seek_second), label="switch", command=cmd,
                            trigger="switch", target=src, seek=cmd.seek_second))

    def _begin(self, op: Opening) -> None:
        op.start()
        self.opening = op

    def _abandon(self, op: Opening) -> None:
        """Drop what a command that ran out of time started; a resume leaves the paused source as it was."""
        op.close()
        if self.opening is op:
            self.opening = None
        if op.trigger == "resume" and self.segment is not None:
            self.segment.own_source = True

    def abandon_opening(self) -> None:
        """The push is ending: whatever is being opened is dropped."""
        op, self.opening = self.opening, None
        if op is not None:
            op.close()

    # --- opening what comes next -----------------------------------------------------------------

    def _drop_prefetch(self) -> None:
        op = self.opening
        if op is not None and op.command is None:
            op.close()
            self.queue.insert(0, Queued(op.target, op.item))
            self.opening = None

    def _begin_resume(self, cmd: Command) -> None:
        """Restart the current source at its position (a key frame first), on the opener's thread."""
        old = self.current
        position = self.progress.position_ms / 1000.0
        passes = None if old.passes is None else max(1, old.passes - (self.progress.loops - old.loops_before))
        loops = self.progress.loops
        old.own_source = False  # the resumed segment owns it now
        self._begin(Opening(lambda: self.opener.resume(old, position, passes, loops), label="resume",
                            command=cmd, trigger="resume", target=old.src, item=old.item))

    def maybe_prefetch(self) -> None:
        """Open the next queued source PREFETCH_S before the current one ends."""
        if self.opening is not None or not self.queue or self.segment is None:
            return
        seg = self.segment
        info = seg.source.info
        if info.is_live or not info.duration_s or seg.passes is None:
            return
        if self.progress.loops - seg.loops_before < seg.passes - 1:
            return  # not the last pass yet
        if self.progress.position_ms / 1000.0 >= info.duration_s - PREFETCH_S * self.speed:
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
        if not self.queue and not (self.current_ended and self._refill()):
            return False
        q = self.queue.pop(0)
        self._begin(Opening(lambda: self.opener.open(q.src, None), label="queue", trigger="queue",
                            target=q.src, item=q.item))
        self.publish()
        return True

    def _failed_switch(self, op: Opening) -> None:
        error = op.error or "could not be opened"
        self.log.warning("switch failed; the current source plays on" if op.command else "queued source failed",
                         videoSrc=safe_url(op.target), error=error, trigger=op.trigger)
        if op.trigger != "resume":
            self.switches.append({"at": self.progress.pushed_s, "from": self.current_name,
                                  "to": safe_url(op.target), "latencyMs": None, "trigger": op.trigger, "ok": False,
                                  "error": error})
        if op.command is not None and self.inbox is not None:
            if op.trigger == "resume":
                self.current.own_source = True  # a resume resumes the current segment
            self.inbox.refuse(op.command, Kind.CONFLICT, "source_error", error)

    # --- the cut ---------------------------------------------------------------------------------

    def _cut(self, op: Opening) -> Any:
        """Cut over to the opened segment at this frame boundary; its first item."""
        new, old = op.segment, self.current
        assert new is not None
        cut_ms = self.output.end_ms()
        resumed = op.trigger == "resume"
        if resumed and self.paused_at is not None:
            # The room's clock went on while paused: timestamps stay in step with it.
            cut_ms += int((time.monotonic() - self.paused_at) * 1000 * self.speed)
        new.offset_ms = cut_ms - int(new.first.pts_ms)
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
        self._follow_records(new)
        self.current_ended = False
        self.output.fill_audio = not resumed
        self.progress.position_ms = new.start.position_ms
        self.progress.pass_offset_ms = 0
        self.note_source(new)
        record = None if resumed else self._switched(op, old, new, cut_ms)
        if resumed:
            self._event("resumed", {"VideoSrc": new.name, "Position": round(new.start.position_s, 3)})
        self._after_first_send = (op.command, record)
        self._op_started = op.command.received if op.command is not None else time.monotonic()
        self.publish()
        return new.first

    def _follow_records(self, new: Segment) -> None:
        lcp = self.records.playlist
        if lcp is not None and new.item is not None:
            info = new.source.info
            lcp.at(new.item, self.list_passes, new.start.position_s, None if info.is_live else info.duration_s)
        self.records.follow(new.checkpoint)

    def _switched(self, op: Opening, old: Segment, new: Segment, cut_ms: int) -> dict[str, Any]:
        # at: seconds pushed when it happened; roomMs: the room timestamp the new source starts at.
        record = {"at": self.progress.pushed_s, "from": old.name, "to": new.name, "latencyMs": None,
                  "trigger": op.trigger, "ok": True, "path": new.path, "roomMs": cut_ms}
        self.switches.append(record)
        self.log.info("switching", **{k: v for k, v in record.items() if k != "latencyMs"},
                      startsAt=new.start.position_s)
        if op.trigger == "queue":  # the playlist's (or the queue's) next source
            self._event("source_started", {"VideoSrc": new.name, "Item": op.item, "Path": new.path,
                                           "Position": round(new.start.position_s, 3)})
        else:
            self._event("switched", {"From": old.name, "To": new.name, "Path": new.path,
                                     "FromPosition": round(old.position_ms / 1000, 3),
                                     "Position": round(new.start.position_s, 3), "RoomMs": cut_ms})
        return record

    def after_send(self) -> None:
        """A frame went out: a cut's first one acknowledges the command that asked for it."""
        if self._after_first_send is None:
            return
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
            self.inbox.ack(cmd, self.push_state(), **extra)
        else:
            self.publish()

    def _retire(self, old: Segment, ended: bool) -> None:
        """The source cut away from: stop it, and leave its record where it was left (in the background)."""
        position = old.position_ms / 1000.0
        self.note_source(old)
        old.release()
        cp = old.checkpoint
        if cp is None:
            return
        clear = ended and not old.source.info.is_live
        self.records.retire(cp, ended, position, clear, self.played.get(old.src))

    # --- what the result says ----------------------------------------------------------------------

    def note_source(self, seg: Segment) -> None:
        entry = self.played.setdefault(seg.src, {"videoSrc": seg.name, "path": seg.path, "position": 0.0,
                                                 "checkpoint": "off" if seg.checkpoint is None else "running"})
        entry["path"] = seg.path
        if seg is self.segment:
            entry["position"] = round(self.progress.position_ms / 1000.0, 3)
        else:
            entry["position"] = round(seg.position_ms / 1000.0, 3)

    def note_checkpoint(self, outcome: str) -> None:
        """The current source's last record written: what the result says of it."""
        if self.segment is not None:
            self.note_source(self.segment)
            self.played[self.segment.src]["checkpoint"] = outcome

    def stop_reading(self) -> None:
        if self.segment is not None:
            self.segment.stop()

    def release(self) -> bool:
        """Close the current segment (its source once its reader let go); False when there is none."""
        if self.segment is None:
            return False
        self.segment.own_source = True
        self.segment.release()
        return True

