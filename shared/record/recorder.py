"""One recording: join a room as an audience member, write each anchor to its own files, and on any
stop finalise, upload and report them.

    room.poll() --RemoteAudio/RemoteVideo--> AnchorRecording (one per anchor's stay) --> segments
    segments --> COS as they close (uploader.SegmentUploader) ; a file's end --> its outputs made in COS
    (uploader.FileOutput.finalize, in the background) --> result --> Callback (once: recovery.RunState)

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
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from shared.contracts.record import RecordParams
from shared.cos.client import CosBucket, check_access
from shared.cos.errors import AlreadyExists, UploadError
from shared.cos.urls import cos_url
from shared.events.emitter import RunEvents
from shared.events.idempotency import BucketKeys
from shared.events.lifecycle import Who, run_with_events
from shared.failures import Failure, Kind
from shared.record.derived import DerivedOutputs
from shared.record.result import STATUS_FAILED, file_entry, run_result
from shared.record.segments import SegmentInfo
from shared.record.state import FileRecord, Manifest, RunState, store_from_env
from shared.record.uploader import FileOutput, SegmentUploader
from shared.record.writer import AnchorRecording, RecordedFile, WriteError
from shared.room import (
    AudioAvailable,
    EnterParams,
    H264Frame,
    RemoteAudio,
    RemoteVideo,
    Role,
    Room,
    RoomClosed,
    RoomError,
    UserEntered,
    UserLeft,
    VideoFormat,
    open_room,
)
from shared.rules.record import OutputKeys, normalize_prefix, object_key
from shared.runtime import Invocation, RetryPolicy, RunLogger, StopSignal
from shared.settings import settings

MIN_FREE_ENV = "RECORD_MIN_FREE_MB"
ENTER_TIMEOUT_S = 10.0
POLL_S = 0.1
MAX_EVENTS_PER_BATCH = 500
CHECK_EVERY_S = 1.0  # idle, MaxDuration and free disk are looked at this often
# An anchor whose file failed is recorded again, into a new file, after this pause (not at once:
# media that fails every time would otherwise open a file a frame).
BROKEN_PAUSE_S = 3.0
FINALIZE_WORKERS = 8  # files finalised at once (each waits for its segments, then assembles in COS)
# Seconds kept back from the time limit for the callback once uploads are done.
CALLBACK_RESERVE_S = 3.0

# Seconds kept back from the time limit after the callback, to return the result.
RETURN_RESERVE_S = 1.0

_STOP_MESSAGES = {
    "removed": "the recorder was removed from the room",
    "replaced": "another client entered the room with the recorder's UserId",
    "dismissed": "the room was dismissed",
    "ended_by_server": "the TRTC server ended the recorder's stay in the room (a dismissal, or an end it did not name)",
    "idle": "no anchor in the room for MaxIdleTime",
    "max_duration": "MaxDuration reached",
    "terminated": "the function was terminated (SIGTERM)",
    "time_limit": "the function's time limit drew near",
    "disk_full": "the disk is full",
    "room_error": "the connection to the room failed",
    "enter_failed": "could not enter the room",
    "cos_config": "CosConfig cannot be used",
    "exited": "the recorder left the room",
    "internal_error": "the recorder failed",
}


def record_directory(request_id: str, env: dict[str, str] | None = None) -> Path:
    """This run's own folder: under CFS_PATH when set (a mounted CFS), else /tmp."""
    base = settings(env).cfs_path or Path("/tmp")
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
    reported: int = 0  # how many of its finished files have gone to the uploader


@dataclass
class _Output:
    """Where one recording file goes: its outputs in COS and its entry in the recovery state."""

    out: FileOutput
    record: FileRecord


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
    reason: str | None = None
    reason_detail: str = ""
    stopped_at: float | None = None
    _stays: dict[str, _Stay] = field(default_factory=dict)
    _present: set[str] = field(default_factory=set)
    _muted: set[str] = field(default_factory=set)
    # Anchors whose file failed (an error that is not the disk's): not recorded until then (monotonic).
    _broken: dict[str, float] = field(default_factory=dict)
    _uploads: list[Future] = field(default_factory=list)
    _pool: ThreadPoolExecutor | None = None
    _uploader: SegmentUploader | None = None
    _state: RunState | None = None
    _outputs: dict[Path, _Output] = field(default_factory=dict)  # by the file's local path
    _stay_count: int = 0  # names the local files: "anchor001_...", never the userId (remote input)
    _derived: DerivedOutputs | None = None  # issue 21: slices, snapshots, trimmed copies

    def __post_init__(self) -> None:
        if self.directory is None:
            self.directory = record_directory(self.inv.request_id)
        self._max_file_ms = None if self.params.max_file_seconds is None else int(self.params.max_file_seconds * 1000)

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

        refused = self._check_cos()
        if refused is not None:
            return self._finish_without_room("cos_config", refused)
        self._start_outputs()

        try:
            room = self.room_factory()
            room.enter(EnterParams(p.SdkAppId, p.room, p.UserId, p.UserSig.get_secret_value(), role=Role.AUDIENCE,
                                   timeout=ENTER_TIMEOUT_S, video_output=VideoFormat.H264,
                                   audio_output_channels=p.AudioChannels, receive_media=True))
        except RoomError as e:
            return self._finish_without_room("enter_failed", e.message, code=e.code)
        except Exception as e:  # a misconfigured backend: say so in the result, not as a traceback
            return self._finish_without_room("enter_failed", f"{type(e).__name__}: {e}")
        self.log.info("recording", room=str(p.room), seconds_to_enter=round(time.monotonic() - started, 3))
        self._event("started", {"Mode": p.Mode, "OutputFormat": p.OutputFormat,
                                "SecondsToEnter": round(time.monotonic() - started, 3)})

        self._pool = ThreadPoolExecutor(max_workers=FINALIZE_WORKERS, thread_name_prefix="finalize")
        try:
            self._loop(room, time.monotonic())
        except Exception as e:  # still finalise, upload and report whatever was recorded
            self.log.error("recording loop failed", exc_info=True, error=f"{type(e).__name__}: {e}")
            self._stop("internal_error", f"{type(e).__name__}: {e}")
        finally:
            if room.closed is None:
                room.exit()
        return self._finish()

    def _loop(self, room: Room, entered: float) -> None:
        idle_since: float | None = entered
        next_check = 0.0
        while True:
            event = room.poll(POLL_S)
            budget = MAX_EVENTS_PER_BATCH  # the checks below must run even when media never pauses
            while event is not None:
                now = time.monotonic()
                if isinstance(event, RoomClosed):
                    self._stop(event.result_reason,
                               f"{event.message} (TRTC {event.code})" if event.code else event.message)
                    return
                try:
                    self._on_event(room, event, now)
                except WriteError as e:
                    if e.no_space:
                        self._stop("disk_full", str(e))
                        return
                    self._give_up_on(getattr(event, "user_id", ""), now, str(e))
                except Exception as e:  # one anchor's bad media must not cost the others their files
                    self._give_up_on(getattr(event, "user_id", ""), now, f"{type(e).__name__}: {e}")
                budget -= 1
                if self.stop.reason or budget <= 0:  # a stop between events ends the batch too
                    break
                event = room.poll(0)
            now = time.monotonic()
            if self._present:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            if self.stop.reason:
                self._stop(self.stop.reason, "")
                return
            if now >= next_check:
                next_check = now + CHECK_EVERY_S
                if self._tick(now) or self._limit_reached(now, idle_since, entered):
                    return

    def _limit_reached(self, now: float, idle_since: float | None, entered: float) -> bool:
        """MaxIdleTime, MaxDuration, the free disk: True (and the stop recorded) when one is reached."""
        p = self.params
        if idle_since is not None and now - idle_since >= p.MaxIdleTime:
            self._stop("idle", f"no anchor for {p.MaxIdleTime} s")
            return True
        if p.MaxDuration is not None and now - entered >= p.MaxDuration:
            self._stop("max_duration", f"{p.MaxDuration} s recorded")
            return True
        assert self.directory is not None
        try:
            free = free_bytes(self.directory)
        except OSError:
            free = 0
        if free < min_free_bytes():
            self._stop("disk_full", f"{free // (1 << 20)} MB left in {self.directory}, "
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
                    self._stop("disk_full", str(e))
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
        recording = AnchorRecording(user_id, self.params.Mode, self.directory, max_file_ms=self._max_file_ms,
                                    request_key_frame=ask_key_frame, label=f"anchor{self._stay_count:03d}",
                                    channels=self.params.AudioChannels, segment_s=self.params.SegmentDuration,
                                    on_open=self._on_open, tap_for=self._tap_for(user_id))
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
            output = self._outputs.get(f.path)
            if output is not None and self._state is not None:
                self._state.close_file(output.record, f.samples if f.ext == "mp3" else None)
            assert self._pool is not None
            self._uploads.append(self._pool.submit(self._finalize_file, f))

    # --- where the files go ---------------------------------------------------------------------

    def _start_outputs(self) -> None:
        """The segment uploader on CosConfig's bucket, and the recovery state (RECORD_STATE_BUCKET,
        with the execution role's credentials: CosConfig's keys are never stored)."""
        p, cos = self.params, self.params.CosConfig
        policy = RetryPolicy(tries=4, backoff=0.5, max_backoff=8.0, deadline=self.inv.deadline - CALLBACK_RESERVE_S)
        bucket = CosBucket.open(cos.Bucket, cos.Region,
                                cos.SecretId.get_secret_value() if cos.SecretId else None,
                                cos.SecretKey.get_secret_value() if cos.SecretKey else None, policy=policy, log=self.log)
        self._uploader = SegmentUploader(bucket, log=self.log)
        if DerivedOutputs.wanted(p):
            self._derived = DerivedOutputs(p, bucket, self.inv.request_id, self.log,
                                           lambda: self.inv.deadline - RETURN_RESERVE_S,
                                           outbox=self.events.outbox if self.events is not None else None)
        try:
            store = store_from_env(self.log, default_region=cos.Region)
        except UploadError as e:
            self.log.warning("no recovery state: the execution role has no credentials", error=e.message)
            return
        if store is None:
            self.log.warning("no recovery state (RECORD_STATE_BUCKET is not set): a run that dies is not finished")
            return
        state_id = self.inv.request_id
        try:
            if store.load(state_id) is not None or store.reported(state_id):
                # SCF retrying an event whose run died: that run's state stays for its recovery.
                state_id = f"{state_id}.{uuid.uuid4().hex[:8]}"
        except (UploadError, ValueError) as e:  # unreadable now; the heartbeat writes it when it can
            self.log.warning("recovery state not read", error=getattr(e, "message", str(e)))
        manifest = Manifest.for_run(p, state_id, p.OutputFormat, p.SegmentDuration)
        self._state = RunState(store, manifest, self.log).start()
        if self.events is not None:  # the events not yet delivered are kept for the recovery
            self.events.on_change = self._state.events_changed
            self._state.events_changed(*self.events.pending())

    def _on_open(self, user_id: str, part: int, start_time: float, path: Path) -> Callable[[SegmentInfo], None]:
        """A file opens (writer's hook): its COS keys (the same key a whole-file upload had) and its
        place in the recovery state; the returned function takes each segment as it closes."""
        p, cos = self.params, self.params.CosConfig
        assert self._uploader is not None
        key = object_key(cos.Path, p.SdkAppId, p.room.id, user_id, start_time, path.suffix.lstrip("."),
                         part=part if self._max_file_ms else None)
        prefix = path.stem + "."
        out = FileOutput(self._uploader, OutputKeys(key), p.OutputFormat, channels=p.AudioChannels,
                         segment_s=p.SegmentDuration, local_dir=path.parent, local_prefix=prefix,
                         on_landed=self._on_landed if self.events is not None and self.events.verbose else None)
        record = FileRecord(user_id, part, start_time, key, p.AudioChannels, str(path.parent), prefix)
        if self._state is not None:
            self._state.add_file(record)
        self._outputs[path] = _Output(out, record)
        self._event("file_started", {"AnchorId": user_id, "Part": part, "StartTime": int(start_time * 1000),
                                     "RecordFile": cos_url(cos.Bucket, cos.Region, key)})
        return out.on_segment

    def _on_landed(self, out: FileOutput, landed: Any) -> None:
        """A segment reached COS (an upload thread): segment_uploaded, when EventVerbose asked for it."""
        self._event("segment_uploaded", {"Key": landed.key, "Index": landed.index, "Bytes": landed.bytes,
                                         "DurationMs": landed.duration_ms, "LagS": landed.lag_s})

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.emit(name, payload)

    def _tap_for(self, user_id: str) -> Callable[[Path, Callable[[], None]], Any] | None:
        """Issue 21's hook: each file's tap (slices, snapshots, trimmed copy), keyed as the file."""
        derived = self._derived
        if derived is None:
            return None

        def tap(path: Path, ask_key_frame: Callable[[], None]) -> Any:
            output = self._outputs.get(path)
            return None if output is None else derived.tap(user_id, output.out.keys.final, path, ask_key_frame)
        return tap

    def _finalize_file(self, f: RecordedFile) -> list[dict[str, Any]]:
        """Make one file's outputs (in the pool); its entries in Files."""
        base = {"UserId": f.user_id, "Duration": round(f.duration_s, 3), "StartTime": int(f.start_time * 1000)}
        output = self._outputs.get(f.path)
        if output is None:  # the file never opened (its directory could not be written)
            return [self._entry(base, {"RecordFile": "", "Status": 0, "Message": f.error or "not recorded",
                                       "LocalPath": str(f.path)})]
        try:
            made = output.out.finalize(f.samples if f.ext == "mp3" else None,
                                       deadline=self.inv.deadline - CALLBACK_RESERVE_S, error=f.error,
                                       disk_full=f.no_space)
        except Exception as e:  # never lose the report of a file over an unexpected error
            self.log.error("finalising a file failed; its segments are kept", path=str(f.path),
                           error=f"{type(e).__name__}: {e}")
            made = [{"RecordFile": "", "Status": 0, "Message": f"upload failed: {type(e).__name__}: {e}",
                     "LocalPath": str(f.path.parent)}]
        for entry in made:
            self._event("file_done", {"File": self._entry(base, entry)})
            if entry["Status"] != 1:
                self._event("upload_failed", {"File": self._entry(base, entry)})
                self.log.error("a file was not uploaded whole; what is left is kept", message=entry["Message"],
                               local_path=entry.get("LocalPath"))
        if self._derived is not None:  # issue 21: RemoveSilence's trimmed copy, its own entry
            made = made + self._derived.trimmed(f.path, made)
        return [self._entry(base, entry) for entry in made]

    @staticmethod
    def _entry(base: dict[str, Any], made: dict[str, Any]) -> dict[str, Any]:
        return file_entry(base["UserId"], base["Duration"], base["StartTime"], made)

    def _stop(self, reason: str, detail: str) -> None:
        if self.reason is None:
            self.reason, self.reason_detail = reason, detail
            self.stopped_at = time.monotonic()
            self.log.info("recording stopping", reason=reason, detail=detail)

    def _check_cos(self) -> str | None:
        """Try CosConfig's credentials on the bucket before entering the room: a wrong key fails
        the run now, not when the first file is uploaded. None when the recording may go on (COS
        that is only unreachable for now is logged by check_access; the uploads retry)."""
        cos = self.params.CosConfig
        try:
            check_access(bucket=cos.Bucket, region=cos.Region, key_prefix=normalize_prefix(cos.Path),
                         secret_id=cos.SecretId.get_secret_value() if cos.SecretId else None,
                         secret_key=cos.SecretKey.get_secret_value() if cos.SecretKey else None,
                         deadline=self.inv.deadline - CALLBACK_RESERVE_S, log=self.log)
        except UploadError as e:
            return e.detail
        return None

    # --- the end --------------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        now = time.monotonic()
        for user_id in list(self._stays):
            try:
                self._end_stay(user_id, now)
            except Exception as e:  # one anchor's file must not cost the others theirs
                self.log.error("finalising a file failed", anchor=user_id, error=f"{type(e).__name__}: {e}")
        finalised = time.monotonic()
        if not self._claim():
            return self._taken_over()
        files: list[dict[str, Any]] = []
        for future in self._uploads:
            files.extend(future.result())
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._uploader is not None:
            self._uploader.close(self.inv.deadline - CALLBACK_RESERVE_S)
        slices = self._derived.finish(self.inv.deadline - CALLBACK_RESERVE_S) if self._derived else None
        self._tidy()
        uploaded = time.monotonic()
        result = self._result(files)
        if slices is not None:
            result["Slices"] = slices
        self.log.info("recording stopped", reason=self.reason, files=len(files),
                      uploaded=sum(1 for f in files if f["Status"] == 1),
                      finalise_s=round(finalised - (self.stopped_at or now), 3),
                      upload_s=round(uploaded - finalised, 3))
        self._report(result)
        return result

    def _claim(self) -> bool:
        """True when this run may finish its files; False when a recovery already took it over."""
        if self._state is None:
            return True
        try:
            return self._state.claim()
        except UploadError as e:  # the state is unreachable: finishing ourselves loses nothing
            self.log.error("recovery state unreachable; finishing anyway", error=e.message)
            return True

    def _taken_over(self) -> dict[str, Any]:
        """A recovery claimed this run (it thought it dead): it assembles and reports; we stop."""
        self.log.warning("a recovery took this run over; it finishes the files and sends the callback")
        if self.events is not None:  # the recovery's `recovered` is the run's last event
            self.events.silence("taken over by the recovery")
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._uploader is not None:
            self._uploader.close(time.monotonic())
        if self._state is not None:
            self._state.stop()
        result = self._result([])
        result["Message"] = "this run was finished by the recovery of record_stream, which sent the callback"
        return result

    def _report(self, result: dict[str, Any]) -> None:
        """The callback, once per recording (a recovery never sends a second one); the result is
        kept in the state bucket too, for a receiver that never takes it."""
        if self._state is None:
            self._callback(result)
        elif not self._state.report(lambda: self._callback(result), result):
            self.log.warning("this run was reported already (by a recovery); no second callback")

    def _finish_without_room(self, reason: str, detail: str, code: int | None = None) -> dict[str, Any]:
        self._stop(reason, detail)
        self.log.error("recording did not start", reason=reason, detail=detail, code=code)
        if self._uploader is not None:
            self._uploader.close(time.monotonic())
        if self._derived is not None:  # nothing was sliced: its workers stop
            self._derived.finish(time.monotonic())
        self._tidy()
        result = self._result([])
        result["status"] = STATUS_FAILED  # the run ends FAILED (a recording that never started)
        if code is not None:
            result["Code"] = code
        self._report(result)
        return result

    def _result(self, files: list[dict[str, Any]]) -> dict[str, Any]:
        p = self.params
        reason = self.reason or "exited"
        message = _STOP_MESSAGES.get(reason, reason)
        if self.reason_detail:
            message = f"{message}: {self.reason_detail}"
        return run_result(sdk_app_id=p.SdkAppId, room_id=p.RoomId if p.RoomId is not None else 0,
                          user_id=p.UserId, str_room_id=p.StrRoomId or "", files=files, reason=reason,
                          message=message, request_id=self.inv.request_id)

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
                          stop_to_callback_s=round(time.monotonic() - (self.stopped_at or started), 3))
        else:
            self.log.error("callback not delivered; the result is still returned")


def record(params: RecordParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """The record_stream work: run one recording under SIGTERM and the time limit."""
    stop = StopSignal(deadline=inv.deadline)
    who = Who(params.SdkAppId, params.RoomId if params.RoomId is not None else params.StrRoomId, params.UserId)
    with stop:
        return run_with_events(params, inv, log, function="record_stream", who=who,
                               store=lambda: _idempotency_store(log),
                               work=lambda events: Recorder(params, inv, log, stop, events=events).run())


def _idempotency_store(log: RunLogger) -> BucketKeys:
    """IdempotencyKey's store: the state bucket, created-once objects (the model requires the bucket)."""
    store = store_from_env(log)
    if store is None:
        raise Failure("IdempotencyKey needs the deployment's RECORD_STATE_BUCKET; it is not set",
                      "configuration_error", Kind.INTERNAL)
    return BucketKeys(store.bucket, store.prefix, AlreadyExists)
