"""Where one recording's files go: COS (each segment as it closes, each file's outputs at its end, in
a pool of finalize workers), the recovery state (recovery.Manifest in RECORD_STATE_BUCKET), and
issue 21's derived outputs (slices, snapshots, trimmed copies).

    Recorder --on_open / tap_for (writer's hooks)--> FileOutput, FileRecord, the file's tap
    Recorder --file_done(f)--> state.close_file ; pool: FileOutput.finalize --> Files entries
    Recorder._finish --claim / collect / report--> the result's Files and Slices, the callback once

The recorder decides when a file starts and ends and why the run stops; this module decides what
becomes of the files, and tells the run's events (shared.events) as it happens: file_started,
segment_uploaded (EventVerbose), file_done and upload_failed.
"""
from __future__ import annotations

import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from shared.contracts.record import RecordParams
from shared.cos.client import CosBucket, check_access
from shared.cos.errors import UploadError
from shared.cos.urls import cos_url
from shared.events.emitter import RunEvents
from shared.rules.record import OutputKeys, normalize_prefix, object_key
from shared.runtime import Invocation, RetryPolicy, RunLogger

from .derived import DerivedOutputs
from .result import file_entry
from .segments import SegmentInfo
from .state import FileRecord, Manifest, RunState, store_from_env
from .uploader import FileOutput, SegmentUploader
from .writer import RecordedFile

FINALIZE_WORKERS = 8  # files finalised at once (each waits for its segments, then assembles in COS)
# Seconds kept back from the time limit for the callback once uploads are done.
CALLBACK_RESERVE_S = 3.0
# Seconds kept back from the time limit after the callback, to return the result.
RETURN_RESERVE_S = 1.0


@dataclass
class _Output:
    """Where one recording file goes: its outputs in COS and its entry in the recovery state."""

    out: FileOutput
    record: FileRecord


class RunOutputs:
    """One run's files on their way out; started before the room is entered, ended by `collect`
    (or `never_started`, `taken_over`)."""

    def __init__(self, params: RecordParams, inv: Invocation, log: RunLogger, events: RunEvents | None = None):
        self.params, self.inv, self.log = params, inv, log
        self.events = events  # the run's lifecycle events (file_started, segment_uploaded, file_done, ...)
        self.max_file_ms = None if params.max_file_seconds is None else int(params.max_file_seconds * 1000)
        self._uploader: SegmentUploader | None = None
        self._state: RunState | None = None
        self._derived: DerivedOutputs | None = None
        self._outputs: dict[Path, _Output] = {}  # by the file's local path
        self._pool: ThreadPoolExecutor | None = None
        self._uploads: list[Future] = []

    @property
    def upload_deadline(self) -> float:
        return self.inv.deadline - CALLBACK_RESERVE_S

    def check_cos(self) -> str | None:
        """Try CosConfig's credentials on the bucket before entering the room: a wrong key fails
        the run now, not when the first file is uploaded. None when the recording may go on (COS
        that is only unreachable for now is logged by check_access; the uploads retry)."""
        cos = self.params.CosConfig
        try:
            check_access(bucket=cos.Bucket, region=cos.Region, key_prefix=normalize_prefix(cos.Path),
                         secret_id=cos.SecretId.get_secret_value() if cos.SecretId else None,
                         secret_key=cos.SecretKey.get_secret_value() if cos.SecretKey else None,
                         deadline=self.upload_deadline, log=self.log)
        except UploadError as e:
            return e.detail
        return None

    def start(self) -> None:
        """The segment uploader on CosConfig's bucket, and the recovery state (RECORD_STATE_BUCKET,
        with the execution role's credentials: CosConfig's keys are never stored)."""
        p, cos = self.params, self.params.CosConfig
        policy = RetryPolicy(tries=4, backoff=0.5, max_backoff=8.0, deadline=self.upload_deadline)
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

    def open_pool(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=FINALIZE_WORKERS, thread_name_prefix="finalize")

    # --- the writer's hooks, and each file's end -------------------------------------------------

    def on_open(self, user_id: str, part: int, start_time: float, path: Path) -> Callable[[SegmentInfo], None]:
        """A file opens (writer's hook): its COS keys (the same key a whole-file upload had) and its
        place in the recovery state; the returned function takes each segment as it closes."""
        p, cos = self.params, self.params.CosConfig
        assert self._uploader is not None
        key = object_key(cos.Path, p.SdkAppId, p.room.id, user_id, start_time, path.suffix.lstrip("."),
                         part=part if self.max_file_ms else None)
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

    def tap_for(self, user_id: str) -> Callable[[Path, Callable[[], None]], Any] | None:
        """Issue 21's hook: each file's tap (slices, snapshots, trimmed copy), keyed as the file."""
        derived = self._derived
        if derived is None:
            return None

        def tap(path: Path, ask_key_frame: Callable[[], None]) -> Any:
            output = self._outputs.get(path)
            return None if output is None else derived.tap(user_id, output.out.keys.final, path, ask_key_frame,
                                                           output.record)
        return tap

    def file_done(self, f: RecordedFile) -> None:
        """A file ended: closed in the recovery state, and finalised in the pool (never on the loop)."""
        output = self._outputs.get(f.path)
        if output is not None and self._state is not None:
            self._state.close_file(output.record, f.samples if f.ext == "mp3" else None)
        assert self._pool is not None
        self._uploads.append(self._pool.submit(self._finalize_file, f))

    def _finalize_file(self, f: RecordedFile) -> list[dict[str, Any]]:
        """Make one file's outputs (in the pool); its entries in Files."""
        output = self._outputs.get(f.path)
        if output is None:  # the file never opened (its directory could not be written)
            made = [{"RecordFile": "", "Status": 0, "Message": f.error or "not recorded", "LocalPath": str(f.path)}]
            return self._entries(f, made)
        try:
            made = output.out.finalize(f.samples if f.ext == "mp3" else None, deadline=self.upload_deadline,
                                       error=f.error, disk_full=f.no_space)
        except Exception as e:  # never lose the report of a file over an unexpected error
            self.log.error("finalising a file failed; its segments are kept", path=str(f.path),
                           error=f"{type(e).__name__}: {e}")
            made = [{"RecordFile": "", "Status": 0, "Message": f"upload failed: {type(e).__name__}: {e}",
                     "LocalPath": str(f.path.parent)}]
        for entry in made:
            self._event("file_done", {"File": self._entries(f, [entry])[0]})
            if entry["Status"] != 1:
                self._event("upload_failed", {"File": self._entries(f, [entry])[0]})
                self.log.error("a file was not uploaded whole; what is left is kept", message=entry["Message"],
                               local_path=entry.get("LocalPath"))
        if self._derived is not None:  # issue 21: RemoveSilence's trimmed copy, its own entry
            made = made + self._derived.trimmed(f.path, made)
        return self._entries(f, made)

    @staticmethod
    def _entries(f: RecordedFile, made: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [file_entry(f.user_id, round(f.duration_s, 3), int(f.start_time * 1000), entry) for entry in made]

    # --- the end ---------------------------------------------------------------------------------

    def claim(self) -> bool:
        """True when this run may finish its files; False when a recovery already took it over."""
        if self._state is None:
            return True
        try:
            return self._state.claim()
        except UploadError as e:  # the state is unreachable: finishing ourselves loses nothing
            self.log.error("recovery state unreachable; finishing anyway", error=e.message)
            return True

    def collect(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Every file's Files entries once its outputs are made, and the result's Slices (None
        when none were asked for)."""
        files: list[dict[str, Any]] = []
        for future in self._uploads:
            files.extend(future.result())
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._uploader is not None:
            self._uploader.close(self.upload_deadline)
        slices = self._derived.finish(self.upload_deadline) if self._derived else None
        return files, slices

    def never_started(self, now: float) -> None:
        """The room was never entered: the uploader and the derived outputs' workers stop."""
        if self._uploader is not None:
            self._uploader.close(now)
        if self._derived is not None:  # nothing was sliced: its workers stop
            self._derived.finish(now)

    def taken_over(self, now: float) -> None:
        """A recovery claimed this run (it thought it dead) and finishes its files: stop ours."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._uploader is not None:
            self._uploader.close(now)
        if self._state is not None:
            self._state.stop()

    def report(self, result: dict[str, Any], callback: Callable[[], None]) -> None:
        """The callback, once per recording (a recovery never sends a second one); the result is
        kept in the state bucket too, for a receiver that never takes it."""
        if self._state is None:
            callback()
        elif not self._state.report(callback, result):
            self.log.warning("this run was reported already (by a recovery); no second callback")
