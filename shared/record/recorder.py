"""One recording: join a room as an audience member, write each anchor to its own files, and on any
stop finalise, upload and report them.

    room.poll() (room.watch.RoomWatch) --RemoteAudio/RemoteVideo--> AnchorRecording (one per anchor's
    stay) --> segments --> COS as they close ; a file's end --> its outputs made in COS (both in
    outputs.RunOutputs, in the background) --> result --> Callback (once: recovery.RunState)

Each file is a run of SegmentDuration-long segments that go to COS while the recording goes on, and
the run keeps its state (recovery.Manifest) in RECORD_STATE_BUCKET: a run that dies (killed, out
of memory, its instance lost) is finished by record_stream's timer from what reached COS.

The loop is the only thing on the main thread. Every way of stopping (removed from the room, the
room dismissed, MaxIdleTime without anchors, MaxDuration, SIGTERM, the time limit drawing near, a
full disk) ends in the same place: every file closed so that it plays, uploaded, and reported in
the seed's result shape, which is returned and POSTed to Callback.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from shared.contracts.record import RecordParams
from shared.events.emitter import RunEvents
from shared.events.idempotency import state_bucket_keys
from shared.events.lifecycle import Who, run_with_events
from shared.record.outputs import RETURN_RESERVE_S, RunOutputs
from shared.record.result import STATUS_FAILED, run_result
from shared.record.writer import AnchorRecording, WriteError
from shared.room import (
    AudioAvailable,
    EnterParams,
    Event,
    H264Frame,
    RemoteAudio,
    RemoteVideo,
    Role,
    Room,
    UserEntered,
    UserLeft,
    VideoFormat,
    open_room,
)
from shared.room.watch import RoomWatch
from shared.runtime import Invocation, RunLogger, StopSignal
from shared.settings import settings

MIN_FREE_ENV = "RECORD_MIN_FREE_MB"
ENTER_TIMEOUT_S = 10.0
# An anchor whose file failed is recorded again, into a new file, after this pause (not at once:
# media that fails every time would otherwise open a file a frame).
BROKEN_PAUSE_S = 3.0


def record_directory(request_id: str) -> Path:
    """This run's own folder: under CFS_PATH when set (a mounted CFS), else /tmp."""
    base = settings().cfs_path or Path("/tmp")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in request_id)[:64] or "run"
    return base / f"record_{safe}"


def min_free_bytes() -> int:
    """RECORD_MIN_FREE_MB: the free space a recording keeps in hand to finalise its files.

    Read at every check, so an operator (or a test) can change it while a recording runs.
    """
    return settings().min_free_bytes


def free_bytes(directory: Path) -> int:
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


@dataclass
class _Stay:
    """One anchor's stay in the room, being recorded."""

    recording: AnchorRecording
    reported: int = 0  # how many of its finished files have gone to the outputs


@dataclass
class Recorder:
    params: RecordParams
    inv: Invocation
    log: RunLogger
    stop: StopSignal
    room_factory: Callable[[], Room] = open_room
    directory: Path | None = None
    events: RunEvents | None = None  # lifecycle events (EventCallback) and the run's outbox
    # Filled in as the run goes.
    _stays: dict[str, _Stay] = field(default_factory=dict)
    _present: set[str] = field(default_factory=set)
    _muted: set[str] = field(default_factory=set)
    # Anchors whose file failed (an error that is not the disk's): not recorded until then (monotonic).
    _broken: dict[str, float] = field(default_factory=dict)
    _stay_count: int = 0  # names the local files: "anchor001_...", never the userId (remote input)

    def __post_init__(self) -> None:
        if self.directory is None:
            self.directory = record_directory(self.inv.request_id)
        p = self.params
        self.watch = RoomWatch(self.stop, self.log, p.MaxIdleTime, p.MaxDuration,
                               activity="recording", who="recorder", done="recorded")
        self.outputs = RunOutputs(p, self.inv, self.log, events=self.events)

    # --- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        p = self.params
        started = time.monotonic()
        self.log.info("recording starting", room=str(p.room), user_id=p.UserId, mode=p.Mode,
                      directory=str(self.directory), max_idle_s=p.MaxIdleTime, max_duration_s=p.MaxDuration,
                      max_file_min=p.MaxMediaFileDuration)
        assert self.directory is not None
        try:
            free = free_bytes(self.directory)
        except OSError as e:
            return self._finish_without_room("disk_full", f"cannot use {self.directory}: {e}")
        if free < min_free_bytes():
            return self._finish_without_room(
                "disk_full", f"only {free // (1 << 20)} MB free in {self.directory.parent}, "
                             f"{MIN_FREE_ENV} asks for {min_free_bytes() // (1 << 20)} MB")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return self._finish_without_room("disk_full", f"cannot create {self.directory}: {e}")

        refused = self.outputs.check_cos()
        if refused is not None:
            return self._finish_without_room("cos_config", refused)
        self.outputs.start()

        room = self.watch.enter(self.room_factory, EnterParams(
            p.SdkAppId, p.room, p.UserId, p.UserSig.get_secret_value(), role=Role.AUDIENCE, timeout=ENTER_TIMEOUT_S,
            video_output=VideoFormat.H264, audio_output_channels=p.AudioChannels))
        if room is None:
            return self._finish_without_room(self.watch.final_reason, self.watch.detail, code=self.watch.enter_code)
        self.log.info("recording", room=str(p.room), seconds_to_enter=round(time.monotonic() - started, 3))
        self._event("started", {"Mode": p.Mode, "OutputFormat": p.OutputFormat,
                                "SecondsToEnter": round(time.monotonic() - started, 3)})

        self.outputs.open_pool()
        # Whatever stopped it (the loop failing too), what was recorded is finalised, uploaded and reported.
        self.watch.run(room, lambda event, now: self._handle(room, event, now), lambda: bool(self._present),
                       self._check)
        return self._finish()

    def _handle(self, room: Room, event: Event, now: float) -> bool:
        """One event; True when it stops the run (a full disk)."""
        try:
            self._on_event(room, event, now)
        except WriteError as e:
            if e.no_space:
                self.watch.end("disk_full", str(e))
                return True
            self._give_up_on(getattr(event, "user_id", ""), now, str(e))
        except Exception as e:  # one anchor's bad media must not cost the others their files
            self._give_up_on(getattr(event, "user_id", ""), now, f"{type(e).__name__}: {e}")
        return False

    def _check(self, now: float) -> bool:
        """Every second: the stays' silence, MaxIdleTime, MaxDuration, the free disk; True to stop."""
        return self._tick(now) or self.watch.limit_reached(now) or self._disk_full()

    def _disk_full(self) -> bool:
        assert self.directory is not None
        try:
            free = free_bytes(self.directory)
        except OSError:
            free = 0
        if free < min_free_bytes():
            self.watch.end("disk_full", f"{free // (1 << 20)} MB left in {self.directory}, "
                                        f"{MIN_FREE_ENV} keeps {min_free_bytes() // (1 << 20)} MB")
            return True
        return False

    def _tick(self, now: float) -> bool:
        """Let each stay write the silence of a quiet microphone; True when that found a full disk."""
        for user_id, stay in list(self._stays.items()):
            try:
                stay.recording.tick(now)
            except WriteError as e:
                if e.no_space:
                    self.watch.end("disk_full", str(e))
                    return True
                self._give_up_on(user_id, now, str(e))
                continue
            self._collect(stay)
        return False

    def _give_up_on(self, user_id: str, now: float, error: str) -> None:
        """Close what this anchor's stay wrote so far; record it again, in a new file, after a pause."""
        self.log.error("recording file failed; this anchor is recorded again, into a new file, after a pause",
                       anchor=user_id, error=error)
        try:
            self._end_stay(user_id, now)
        except Exception as e:
            self.log.error("finalising a file failed", anchor=user_id, error=f"{type(e).__name__}: {e}")
        if user_id:
            self._broken[user_id] = now + BROKEN_PAUSE_S

    def _on_event(self, room: Room, event: Any, now: float) -> None:
        if isinstance(event, RemoteAudio):
            stay = self._stay_for(room, event.user_id, now)
            if stay is not None:
                stay.recording.add_audio(event.frame, now)
                self._collect(stay)
        elif isinstance(event, RemoteVideo):
            if isinstance(event.frame, H264Frame):
                stay = self._stay_for(room, event.user_id, now)
                if stay is not None:
                    stay.recording.add_video(event.frame, now)
                    self._collect(stay)
        elif isinstance(event, UserEntered):
            if event.user_id != self.params.UserId:
                self._present.add(event.user_id)
                self.log.info("anchor entered", anchor=event.user_id, recorded=self.params.records(event.user_id))
                self._event("anchor_joined", {"AnchorId": event.user_id,
                                              "Recorded": self.params.records(event.user_id)})
        elif isinstance(event, UserLeft):
            self._present.discard(event.user_id)
            self._muted.discard(event.user_id)
            self._broken.pop(event.user_id, None)
            self._end_stay(event.user_id, now)
            self.log.info("anchor left", anchor=event.user_id, reason=event.reason)
            if event.user_id != self.params.UserId:
                self._event("anchor_left", {"AnchorId": event.user_id, "Reason": event.reason})
        elif isinstance(event, AudioAvailable):
            if event.available:
                self._muted.discard(event.user_id)
            else:
                self._muted.add(event.user_id)
            stay = self._stays.get(event.user_id)
            if stay is not None:
                stay.recording.set_audio_muted(not event.available)

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.emit(name, payload)

    def _stay_for(self, room: Room, user_id: str, now: float) -> _Stay | None:
        stay = self._stays.get(user_id)
        if stay is not None:
            return stay
        if not self.params.records(user_id) or self._broken.get(user_id, now) > now:
            return None
        self._present.add(user_id)  # media proves presence even if the entry event was missed
        assert self.directory is not None

        def ask_key_frame() -> None:
            room.request_key_frame(user_id)

        self._stay_count += 1
        recording = AnchorRecording(user_id, self.params.Mode, self.directory, max_file_ms=self.outputs.max_file_ms,
                                    request_key_frame=ask_key_frame, label=f"anchor{self._stay_count:03d}",
                                    channels=self.params.AudioChannels, segment_s=self.params.SegmentDuration,
                                    on_open=self.outputs.on_open, tap_for=self.outputs.tap_for(user_id))
        recording.set_audio_muted(user_id in self._muted)
        stay = self._stays[user_id] = _Stay(recording)
        self.log.info("recording anchor", anchor=user_id, files=f"{recording.label}_*")
        return stay

    def _end_stay(self, user_id: str, now: float) -> None:
        stay = self._stays.pop(user_id, None)
        if stay is None:
            return
        try:
            stay.recording.close(now)
        finally:
            self._collect(stay)

    def _collect(self, stay: _Stay) -> None:
        """Send the stay's newly finished files to be finalised (in the pool, never on this loop)."""
        files = stay.recording.files
        while stay.reported < len(files):
            f = files[stay.reported]
            stay.reported += 1
            self.outputs.file_done(f)

    # --- the end --------------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        now = time.monotonic()
        for user_id in list(self._stays):
            try:
                self._end_stay(user_id, now)
            except Exception as e:  # one anchor's file must not cost the others theirs
                self.log.error("finalising a file failed", anchor=user_id, error=f"{type(e).__name__}: {e}")
        finalised = time.monotonic()
        if not self.outputs.claim():
            return self._taken_over()
        files, slices = self.outputs.collect()
        self._tidy()
        uploaded = time.monotonic()
        result = self._result(files)
        if slices is not None:
            result["Slices"] = slices
        self.log.info("recording stopped", reason=self.watch.reason, files=len(files),
                      uploaded=sum(1 for f in files if f["Status"] == 1),
                      finalise_s=round(finalised - (self.watch.stopped_at or now), 3),
                      upload_s=round(uploaded - finalised, 3))
        self.outputs.report(result, lambda: self._callback(result))
        return result

    def _taken_over(self) -> dict[str, Any]:
        """A recovery claimed this run (it thought it dead): it assembles and reports; we stop."""
        self.log.warning("a recovery took this run over; it finishes the files and sends the callback")
        if self.events is not None:  # the recovery's `recovered` is the run's last event
            self.events.silence("taken over by the recovery")
        self.outputs.taken_over(time.monotonic())
        result = self._result([])
        result["Message"] = "this run was finished by the recovery of record_stream, which sent the callback"
        return result

    def _finish_without_room(self, reason: str, detail: str, code: int | None = None) -> dict[str, Any]:
        self.watch.end(reason, detail)
        self.log.error("recording did not start", reason=reason, detail=detail, code=code)
        self.outputs.never_started(time.monotonic())
        self._tidy()
        result = self._result([])
        result["status"] = STATUS_FAILED  # the run ends FAILED (a recording that never started)
        if code is not None:
            result["Code"] = code
        self.outputs.report(result, lambda: self._callback(result))
        return result

    def _result(self, files: list[dict[str, Any]]) -> dict[str, Any]:
        p = self.params
        return run_result(sdk_app_id=p.SdkAppId, room_id=p.RoomId if p.RoomId is not None else 0,
                          user_id=p.UserId, str_room_id=p.StrRoomId or "", files=files,
                          reason=self.watch.final_reason, message=self.watch.message(),
                          request_id=self.inv.request_id)

    def _tidy(self) -> None:
        try:
            if self.directory is not None:
                self.directory.rmdir()  # only when empty: failed uploads stay
        except OSError:
            pass

    def _callback(self, result: dict[str, Any]) -> None:
        url = self.params.Callback
        if not url:
            return
        started = time.monotonic()
        deadline = self.inv.deadline - RETURN_RESERVE_S
        if self.events is not None and self.events.outbox is not None:  # the run's one sender
            ticket = self.events.outbox.put(url, result, essential=True)
            ok = bool(ticket is not None and ticket.wait(max(0.0, deadline - time.monotonic())))
        else:
            from .callback import post_result

            ok = post_result(url, result, deadline=deadline, log=self.log)
        if ok:
            self.log.info("callback delivered", seconds=round(time.monotonic() - started, 3),
                          stop_to_callback_s=round(time.monotonic() - (self.watch.stopped_at or started), 3))
        else:
            self.log.error("callback not delivered; the result is still returned")


def record(params: RecordParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """The record_stream work: run one recording under SIGTERM and the time limit."""
    stop = StopSignal(deadline=inv.deadline)
    who = Who(params.SdkAppId, params.RoomId if params.RoomId is not None else params.StrRoomId, params.UserId)
    with stop:
        return run_with_events(params, inv, log, function="record_stream", who=who,
                               store=lambda: state_bucket_keys(log),
                               work=lambda events: Recorder(params, inv, log, stop, events=events).run())
