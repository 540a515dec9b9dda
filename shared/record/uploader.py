"""Segments to COS while the recording goes on, and each file's outputs made from them at its end.

    Segmenter --on_segment--> FileOutput --job--> SegmentUploader (worker threads, retries)
                                  ^                      |
                                  +------ landed --------+   (local file deleted, playlist updated)
    at the end: FileOutput.finalize() -> assembly.finalize(): playlist with ENDLIST, final MP4/MP3

Keys, from the file's final key (shared.rules.record: object_key and OutputKeys):
  final     trtc/1_2_alice_...Z.mp4          (OutputFormat "mp4" / "hls+mp4")
  playlist  trtc/1_2_alice_...Z.m3u8         (OutputFormat "hls" / "hls+mp4")
  segments  trtc/1_2_alice_...Z/init.mp4, .../00001.m4s (or .../00001.mp3)

Why not keep the segments locally until the end: a 2-hour Mode 02 file is about 1 GB; uploaded
segments leave the disk, which keeps it flat (assembly.py says how the final file is made in COS).
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from shared.cos.client import CosBucket
from shared.cos.errors import UploadError
from shared.rules.record import INIT_INDEX, OutputKeys
from shared.runtime import RunLogger, get_logger
from shared.worker import Worker

from . import hls, mp3
from .assembly import CONTENT_TYPES, Failed, finalize
from .segments import SegmentInfo, join, local_segments

UPLOAD_WORKERS = 2
# Unbounded: a job is a file path, and submit() runs on the recording loop, which must never wait
# (a full queue during an outage would cost frames). The disk bounds the backlog (RECORD_MIN_FREE_MB).
QUEUE_SIZE = 0
OUTAGE_WAIT_MAX_S = 8.0  # while COS is down, a segment is tried again this often at most


# --- the background uploader ---------------------------------------------------------------------


@dataclass
class UploadJob:
    path: Path
    key: str
    content_type: str
    done: Callable[["UploadJob", UploadError | None], None]  # called on a worker thread
    size: int = 0


class SegmentUploader:
    """Uploads closed segments in the background, in order per worker, and deletes each local file
    once it is in COS.

    Each PUT is retried by the bucket's RetryPolicy; when that gives up on a retryable error (COS
    down, the network gone) the segment is not dropped: it waits (up to OUTAGE_WAIT_MAX_S between
    tries) and goes again, for as long as the uploader runs. Meanwhile segments pile up on the
    local disk; the recorder's free-disk check (RECORD_MIN_FREE_MB) is what bounds that. A
    non-retryable error (AccessDenied, ...) fails the segment for good: it is kept and reported.
    The threads are shared.worker Workers (_UploadWorker): close() asks them to stop, join() waits.
    """

    def __init__(self, bucket: CosBucket, *, workers: int = UPLOAD_WORKERS, queue_size: int = QUEUE_SIZE,
                 log: RunLogger | None = None):
        self.bucket = bucket
        self.log = log or get_logger()
        self.jobs: queue.Queue[UploadJob | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._pending = 0
        self._pending_bytes = 0
        self._idle = threading.Condition(self._lock)
        self.outage = False  # true while COS answers nothing but retryable errors
        self.last_error: str | None = None  # what COS last answered a segment that has to wait
        self._workers = [_UploadWorker(self, f"segment-upload-{i}") for i in range(max(1, workers))]
        for w in self._workers:
            w.start()

    @property
    def pending(self) -> tuple[int, int]:
        """(segments, bytes) not yet in COS."""
        with self._lock:
            return self._pending, self._pending_bytes

    def submit(self, job: UploadJob) -> None:
        try:
            job.size = job.path.stat().st_size
        except OSError:
            job.size = 0
        with self._lock:
            self._pending += 1
            self._pending_bytes += job.size
        self.jobs.put(job)

    def drain(self, deadline: float | None = None) -> bool:
        """Wait until every submitted segment is uploaded or failed; False if `deadline` came first."""
        with self._idle:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(0.2 if left is None else min(0.2, left))
        return True

    def close(self, deadline: float | None = None) -> None:
        """Drain until `deadline`, then stop; a segment still waiting fails (kept locally, reported)."""
        self.drain(deadline)
        for w in self._workers:
            w.close()
            self.jobs.put(None)  # wakes a worker blocked on an empty queue
        for w in self._workers:
            w.join(timeout=5)

    def settle(self, job: UploadJob, error: UploadError | None) -> None:
        """A job is done (uploaded, or failed for good): its owner is told, the count goes down."""
        if error is None:
            try:
                job.path.unlink()
            except OSError:
                pass
        try:
            job.done(job, error)
        except Exception as e:  # a bookkeeping bug must not stop the uploads
            self.log.error("segment bookkeeping failed", key=job.key, error=f"{type(e).__name__}: {e}")
        with self._idle:
            self._pending -= 1
            self._pending_bytes -= job.size
            self._idle.notify_all()

    def upload(self, job: UploadJob, worker: Worker) -> UploadError | None:
        """PUT one segment; through an outage, again and again until it lands or `worker` closes."""
        wait_s = self.bucket.policy.backoff
        while True:
            try:
                self.bucket.put_file(job.key, job.path, job.content_type)
                if self.outage:
                    self.outage = False
                    self.log.info("cos reachable again", key=job.key)
                return None
            except UploadError as e:
                if not e.retryable or worker.closing.is_set():
                    self.log.error("segment upload failed; it is kept", key=job.key, path=str(job.path),
                                   error=e.message)
                    return e
                self.last_error = e.message
                if not self.outage:
                    self.outage = True
                    self.log.warning("cos unreachable; segments wait on the local disk", key=job.key,
                                     error=e.message)
                if worker.pause(wait_s):
                    return e
                wait_s = min(OUTAGE_WAIT_MAX_S, wait_s * 2)
            except Exception as e:  # never lose a segment over an unexpected error
                return UploadError(f"upload failed: {type(e).__name__}: {e}", "InternalError")


class _UploadWorker(Worker):
    """One upload thread: takes jobs off the uploader's queue until closed (a None job wakes it)."""

    def __init__(self, uploader: SegmentUploader, name: str):
        super().__init__(name)
        self.uploader = uploader

    def run(self) -> None:
        while True:
            job = self.uploader.jobs.get()
            if job is None:
                return
            self.uploader.settle(job, self.uploader.upload(job, self))


# --- one recording file's outputs ------------------------------------------------------------------


@dataclass
class Landed:
    index: int
    key: str
    bytes: int
    duration_ms: float
    media_offset: int = 0
    frames: int = 0
    lag_s: float = 0.0  # from the segment's close to its arrival in COS


@dataclass
class FileOutput:
    """One recording file (one anchor stay, or one part of it): its segments go up as they close,
    its playlist follows them (HLS), and `finalize` makes what OutputFormat asks for.

    Give `on_segment` to the file's Segmenter. `on_landed(self, landed)` runs on an upload
    thread after each segment reached COS. `local_dir` / `local_prefix` say where the
    segmenter writes this file's segments: what cannot reach COS is kept, and reported, there.
    """

    uploader: SegmentUploader
    keys: OutputKeys
    fmt: str = "mp4"
    channels: int = 1
    segment_s: float = 10.0
    on_landed: Callable[["FileOutput", Landed], None] | None = None
    landed: dict[int, Landed] = field(default_factory=dict)
    failed: Failed = field(default_factory=dict)  # index -> (local path, why)
    local_dir: Path | None = None
    local_prefix: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._pending = 0  # this file's segments not yet landed or failed
        self._playlist_lock = threading.Lock()
        self.seen: dict[int, SegmentInfo] = {}
        # "mp4": the segments the file's close produced stay local and go straight into the final
        # file (uploading them only to read them back would cost the stop two round trips).
        self.tail: dict[int, SegmentInfo] = {}

    @property
    def is_mp3(self) -> bool:
        return self.keys.ext == "mp3"

    def on_segment(self, info: SegmentInfo) -> None:
        key = self.keys.segment(info.index)
        ext = "mp4" if info.is_init else key.rsplit(".", 1)[1]
        closed_at = time.monotonic()
        with self._lock:
            self.seen[info.index] = info
            if info.tail and self.fmt == "mp4":
                self.tail[info.index] = info
                return
            self._pending += 1

        def done(job: UploadJob, error: UploadError | None) -> None:
            try:
                if error is not None:
                    with self._lock:
                        self.failed[info.index] = (info.path, error.message)
                    return
                landed = Landed(info.index, key, info.bytes, info.duration_ms, info.media_offset, info.frames,
                                round(time.monotonic() - closed_at, 3))
                with self._lock:
                    self.landed[info.index] = landed
                self.uploader.log.debug("segment uploaded", key=key, bytes=info.bytes, lag_s=landed.lag_s)
                if "hls" in self.fmt:
                    try:
                        self._put_playlist(ended=False)
                    except UploadError as e:  # the next segment's update (or the end) writes it again
                        self.uploader.log.warning("playlist not updated", key=self.keys.playlist, error=e.message)
                if self.on_landed is not None:
                    self.on_landed(self, landed)
            finally:
                with self._settled:
                    self._pending -= 1
                    self._settled.notify_all()

        self.uploader.submit(UploadJob(info.path, key, CONTENT_TYPES[ext], done))

    def _entries(self) -> tuple[list[hls.PlaylistEntry], str | None]:
        """The playlist: the segments that landed, up to the first one that has not."""
        with self._lock:
            landed = dict(self.landed)
        entries, index = [], 1
        while index in landed:
            entries.append(hls.PlaylistEntry(hls.relative_uri(self.keys.playlist, landed[index].key),
                                             landed[index].duration_ms / 1000.0))
            index += 1
        init = None
        if not self.is_mp3:
            init = hls.relative_uri(self.keys.playlist, self.keys.segment(INIT_INDEX)) if INIT_INDEX in landed else None
            if init is None:
                entries = []  # no segment plays before its init segment is there
        return entries, init

    def _put_playlist(self, ended: bool) -> None:
        with self._playlist_lock:  # one writer at a time, so a newer playlist is never overwritten
            entries, init = self._entries()
            if not entries and not ended:
                return
            text = hls.playlist(entries, ended=ended, init_uri=init, at_least=math.ceil(self.segment_s))
            self.uploader.bucket.put_bytes(self.keys.playlist, text.encode(), hls.CONTENT_TYPE)

    def finalize(self, samples: int | None = None, deadline: float | None = None,
                 error: str | None = None, disk_full: bool = False) -> list[dict[str, Any]]:
        """After the Segmenter closed (or failed to: `error`): wait for this file's segments, then
        make the outputs. Entries for Files[] (RecordFile, Status, Message, and LocalPath for what
        is kept). Blocks on COS: call it from an upload thread, not the recording loop.

        Nothing is dropped: a segment COS refused, one still waiting for COS at `deadline`, or
        one the failed close left behind stays on the local disk and is named in LocalPath; when
        nothing of the file reached COS it is all joined there into one file that plays.
        `disk_full`: the close failed for want of space. The segment it could not write ends the
        file (a partial fMP4 fragment does not play and goes; a partial MP3 segment is whole
        frames and goes into the final file) and what came before is the file, as recorded."""
        self._settle(deadline)
        with self._lock:
            landed, failed, tail, seen = dict(self.landed), dict(self.failed), dict(self.tail), dict(self.seen)
        self._still_waiting(landed, failed, tail, seen)
        local = [(i, info.path, info.media_offset) for i, info in sorted(tail.items())]
        if error is not None:
            self._left_by_close(seen, failed, local, error, disk_full)
        durations = {self.keys.segment(i): s.duration_ms for i, s in landed.items()}
        durations.update({self.keys.segment(i): s.duration_ms for i, s in tail.items()})
        entries = finalize(self.uploader.bucket, self.keys, self.fmt, channels=self.channels,
                           samples=None if disk_full else samples, durations=durations, failed=failed,
                           segment_s=self.segment_s, local=local, log=self.uploader.log)
        if error is not None and not (disk_full and any(e["Status"] == 1 for e in entries)):
            for entry in entries:
                entry["Status"] = 0
                entry["Message"] = error if entry["Message"] == "success" else f"{error}; {entry['Message']}"
        if any(e["RecordFile"] == self.uploader.bucket.url(self.keys.final) for e in entries):
            for _, path, _ in local:  # in the final file now
                path.unlink(missing_ok=True)
            local = []
        if all(e["Status"] == 1 for e in entries):
            return entries
        return self._keep(entries, landed, failed, local, error, samples)

    def _settle(self, deadline: float | None) -> None:
        with self._settled:  # this file's segments only: other anchors keep recording meanwhile
            while self._pending and (deadline is None or time.monotonic() < deadline):
                self._settled.wait(0.2)

    def _still_waiting(self, landed: dict[int, Landed], failed: Failed, tail: dict[int, SegmentInfo],
                       seen: dict[int, SegmentInfo]) -> None:
        """Segments neither landed nor failed (COS still down at the deadline) count as failed."""
        waited = "still waiting for COS when the recording ended" + (
            f" ({self.uploader.last_error})" if self.uploader.last_error else "")
        for index, info in seen.items():
            if index not in landed and index not in failed and index not in tail:
                failed[index] = (info.path, waited)

    def _left_by_close(self, seen: dict[int, SegmentInfo], failed: Failed, local: list[tuple[int, Path, int]],
                       error: str, disk_full: bool) -> None:
        """Segment files the failed close left behind (never handed over): where each goes."""
        if self.local_dir is None:
            return
        for index, path in local_segments(self.local_dir, self.local_prefix):
            if index in seen:
                continue
            if not disk_full:
                failed[index] = (path, error)  # taken as far as it goes, kept and reported
            elif not self.is_mp3:
                path.unlink(missing_ok=True)  # a fragment cut short: the file ends before it
            elif "mp4" in self.fmt and path.stat().st_size > mp3.HLS_TAG_BYTES:
                local.append((index, path, mp3.HLS_TAG_BYTES))  # whole frames up to the full disk
            else:
                failed[index] = (path, error)

    def _keep(self, entries: list[dict[str, Any]], landed: dict[int, Landed], failed: Failed,
              local: list[tuple[int, Path, int]], error: str | None, samples: int | None) -> list[dict[str, Any]]:
        """A file not made whole: what is left locally is kept and named in LocalPath."""
        # One reason for a file kept whole, not one per segment: they are all joined into it.
        first = failed[min(failed)][1] if failed else None
        for index, path, _ in local:  # not in a final file: kept, like a segment COS refused
            if path.exists():
                failed.setdefault(index, (path, "the final file could not be made"))
        with self._lock:
            self.failed.update(failed)
        if not landed and self.local_dir is not None and not any(e["RecordFile"] for e in entries):
            return [self._kept_locally(error or first or (entries[0]["Message"] if entries else "upload failed"),
                                       samples)]
        kept = sorted(str(p) for p, _ in failed.values())
        for entry in entries:
            if entry["Status"] == 0 and kept:
                entry["LocalPath"] = kept[0] if len(kept) == 1 else os.path.commonpath(kept)
        return entries

    def _kept_locally(self, why: str, samples: int | None) -> dict[str, Any]:
        """Nothing of this file is in COS: its segments, joined into one local file that plays."""
        entry: dict[str, Any] = {"RecordFile": "", "Status": 0, "Message": why}
        if self.local_dir is None:
            return entry
        parts = local_segments(self.local_dir, self.local_prefix)
        paths = [p for _, p in parts]
        if not paths:
            return entry
        if len(paths) == 1 and self.is_mp3:
            entry["LocalPath"] = str(paths[0])  # an MP3 segment plays as it is
            return entry
        joined = self.local_dir / f"{self.local_prefix.rstrip('.')}.{self.keys.ext}"
        try:
            join(paths, joined, channels=self.channels, samples=samples)
        except OSError as e:  # the disk is full: the segments stay as they are
            joined.unlink(missing_ok=True)
            self.uploader.log.warning("could not join the kept segments", path=str(joined), error=str(e))
            entry["LocalPath"] = str(paths[0]) if len(paths) == 1 else str(self.local_dir)
            return entry
        for p in paths:
            p.unlink(missing_ok=True)
        entry["LocalPath"] = str(joined)
        return entry
