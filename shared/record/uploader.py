"""Segments to COS while the recording goes on, and each file's outputs assembled from them.

    Segmenter --on_segment--> FileOutput --job--> SegmentUploader (worker threads, retries)
                                  ^                      |
                                  +------ landed --------+   (local file deleted, playlist updated)
    at the end: finalize(): playlist with ENDLIST, final MP4/MP3 = COS multipart upload of the segments

Keys, from the file's final key (what storage.object_key gives today, e.g. "trtc/1_2_alice_...Z.mp4"):
  final     trtc/1_2_alice_...Z.mp4          (OutputFormat "mp4" / "hls+mp4")
  playlist  trtc/1_2_alice_...Z.m3u8         (OutputFormat "hls" / "hls+mp4")
  segments  trtc/1_2_alice_...Z/init.mp4, .../00001.m4s (or .../00001.mp3)

The final object is a multipart upload whose parts are the segments in order, without re-encoding:
a segment of at least 1 MB (COS's smallest part) is copied inside COS (UploadPartCopy: no bytes
through the function), smaller ones are read back and sent in groups of at least 1 MB, and part 1
carries the file's header (the MP3 Info frame; for MP4 the init segment). Why not concatenate
locally: the segments are deleted from the local disk once uploaded (that is what keeps the disk
flat), and recovery has no local disk at all; the same assembly from COS serves both.
Why not keep them locally until the end: a 2-hour Mode 02 file is about 1 GB.
"""
from __future__ import annotations

import math
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from shared.cos.client import MIN_PART_SIZE, CosBucket
from shared.cos.errors import UploadError
from shared.rules.record import INIT_INDEX, OutputKeys
from shared.runtime import RunLogger, get_logger

from . import hls, mp3
from .segments import SegmentInfo, Track, fragment_times, join, local_segments, parse_init

CONTENT_TYPES = {"mp4": "video/mp4", "mp3": "audio/mpeg", "m4s": "video/iso.segment", "m3u8": hls.CONTENT_TYPE}
MAX_PARTS = 10_000
UPLOAD_WORKERS = 2
# Unbounded: a job is a file path, and submit() runs on the recording loop, which must never wait
# (a full queue during an outage would cost frames). The disk bounds the backlog (RECORD_MIN_FREE_MB).
QUEUE_SIZE = 0
OUTAGE_WAIT_MAX_S = 8.0  # while COS is down, a segment is tried again this often at most
ASSEMBLY_WORKERS = 4
_SEGMENT = re.compile(r"^(?:init\.mp4|(\d{5,})\.(m4s|mp3))$")


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
    """

    def __init__(self, bucket: CosBucket, *, workers: int = UPLOAD_WORKERS, queue_size: int = QUEUE_SIZE,
                 log: RunLogger | None = None):
        self.bucket = bucket
        self.log = log or get_logger()
        self._queue: queue.Queue[UploadJob | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending = 0
        self._pending_bytes = 0
        self._idle = threading.Condition(self._lock)
        self.outage = False  # true while COS answers nothing but retryable errors
        self.last_error: str | None = None  # what COS last answered a segment that has to wait
        self._threads = [threading.Thread(target=self._work, name=f"segment-upload-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

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
        self._queue.put(job)

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
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=5)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            error = self._upload(job)
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

    def _upload(self, job: UploadJob) -> UploadError | None:
        wait_s = self.bucket.policy.backoff
        while True:
            try:
                self.bucket.put_file(job.key, job.path, job.content_type)
                if self.outage:
                    self.outage = False
                    self.log.info("cos reachable again", key=job.key)
                return None
            except UploadError as e:
                if not e.retryable or self._stop.is_set():
                    self.log.error("segment upload failed; it is kept", key=job.key, path=str(job.path),
                                   error=e.message)
                    return e
                self.last_error = e.message
                if not self.outage:
                    self.outage = True
                    self.log.warning("cos unreachable; segments wait on the local disk", key=job.key,
                                     error=e.message)
                if self._stop.wait(wait_s):
                    return e
                wait_s = min(OUTAGE_WAIT_MAX_S, wait_s * 2)
            except Exception as e:  # never lose a segment over an unexpected error
                return UploadError(f"upload failed: {type(e).__name__}: {e}", "InternalError")


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
    failed: dict[int, tuple[Path, str]] = field(default_factory=dict)  # index -> (local path, why)
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
                 error: str | None = None) -> list[dict[str, Any]]:
        """After the Segmenter closed (or failed to: `error`): wait for this file's segments, then
        make the outputs. Entries for Files[] (RecordFile, Status, Message, and LocalPath for what
        is kept). Blocks on COS: call it from an upload thread, not the recording loop.

        Nothing is dropped: a segment COS refused, one still waiting for COS at `deadline`, or
        one the failed close left behind stays on the local disk and is named in LocalPath; when
        nothing of the file reached COS it is all joined there into one file that plays."""
        with self._settled:  # this file's segments only: other anchors keep recording meanwhile
            while self._pending and (deadline is None or time.monotonic() < deadline):
                self._settled.wait(0.2)
        with self._lock:
            landed = dict(self.landed)
            failed = dict(self.failed)
            tail = dict(self.tail)
            seen = dict(self.seen)
        waited = "still waiting for COS when the recording ended" + (
            f" ({self.uploader.last_error})" if self.uploader.last_error else "")
        for index, info in seen.items():
            if index not in landed and index not in failed and index not in tail:
                failed[index] = (info.path, waited)
        if error is not None and self.local_dir is not None:
            for index, path in local_segments(self.local_dir, self.local_prefix):
                if index not in seen:  # written when the close failed: taken as far as it goes
                    failed[index] = (path, error)
        local = [(i, info.path, info.media_offset) for i, info in sorted(tail.items())]
        durations = {self.keys.segment(i): s.duration_ms for i, s in landed.items()}
        durations.update({self.keys.segment(i): s.duration_ms for i, s in tail.items()})
        entries = finalize(self.uploader.bucket, self.keys, self.fmt, channels=self.channels, samples=samples,
                           durations=durations, failed=failed, segment_s=self.segment_s, local=local,
                           log=self.uploader.log)
        if error is not None:
            for entry in entries:
                entry["Status"] = 0
                entry["Message"] = error if entry["Message"] == "success" else f"{error}; {entry['Message']}"
        if any(e["RecordFile"] == self.uploader.bucket.url(self.keys.final) for e in entries):
            for _, path, _ in local:  # in the final file now
                path.unlink(missing_ok=True)
            local = []
        if all(e["Status"] == 1 for e in entries):
            return entries
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


# --- the outputs, from what is in COS (the live end and recovery alike) -----------------------------


@dataclass(frozen=True)
class Piece:
    """A span of a segment object (or of a local segment file, `path`) that goes into the final file."""

    key: str
    offset: int  # bytes skipped at its start (an MP3 segment's ID3 tag)
    size: int  # the object's size
    path: Path | None = None  # read from the local disk, not COS

    @property
    def length(self) -> int:
        return self.size - self.offset


def segments_in(listing: list[tuple[str, int]], keys: OutputKeys) -> list[tuple[int, str, int]]:
    """(index, key, size) of this file's segment objects, init first, then in order."""
    out = []
    for key, size in listing:
        if not key.startswith(keys.segment_prefix):
            continue
        m = _SEGMENT.match(key[len(keys.segment_prefix):])
        if m:
            out.append((INIT_INDEX if m.group(1) is None else int(m.group(1)), key, size))
    return sorted(out)


def assemble(bucket: CosBucket, key: str, pieces: list[Piece], header: bytes = b"",
             content_type: str | None = None, log: RunLogger | None = None) -> int:
    """Write `header` + the pieces, in order, to `key` as one multipart upload; its size.

    Parts are at least `target` bytes (1 MB, more when there are so many segments that 10,000
    parts would not do) except the last. A piece that is a whole part by itself is copied inside
    COS; smaller ones are read and sent together. Part 1 always carries the header.
    """
    log = log or bucket.log
    total = len(header) + sum(p.length for p in pieces)
    target = max(MIN_PART_SIZE, math.ceil(total / (MAX_PARTS - 1)))
    plan: list[tuple[str, Any]] = []  # ("copy", piece) or ("send", [pieces])
    group: list[Piece] = []
    group_bytes = len(header)
    for piece in pieces:
        if piece.path is None and not group and group_bytes == 0 and piece.length >= target:
            plan.append(("copy", piece))
            continue
        group.append(piece)
        group_bytes += piece.length
        if group_bytes >= target:
            plan.append(("send", group))
            group, group_bytes = [], 0
    if group or group_bytes or not plan:
        plan.append(("send", group))
    if len(plan) == 1 and plan[0][0] == "send":
        # One small file: a plain PUT (a multipart upload of one part is the same, with more calls).
        data = header + b"".join(_read(bucket, p) for p in plan[0][1])
        bucket.put_bytes(key, data, content_type)
        return len(data)
    upload_id = bucket.start_multipart(key, content_type)
    try:
        def run(number: int, step: tuple[str, Any]) -> dict[str, Any]:
            kind, what = step
            if kind == "copy":
                last = what.size - 1
                etag = bucket.copy_part(key, upload_id, number, what.key,
                                        what.offset if what.offset else None, last if what.offset else None)
            else:
                data = (header if number == 1 else b"") + b"".join(_read(bucket, p) for p in what)
                etag = bucket.put_part(key, upload_id, number, data)
            return {"PartNumber": number, "ETag": etag}

        with ThreadPoolExecutor(max_workers=ASSEMBLY_WORKERS, thread_name_prefix="assemble") as pool:
            parts = list(pool.map(lambda a: run(*a), enumerate(plan, start=1)))
        bucket.complete(key, upload_id, parts, total)
    except Exception:
        bucket.abort(key, upload_id)
        raise
    log.info("assembled from segments", key=key, bytes=total, parts=len(plan),
             copied=sum(1 for k, _ in plan if k == "copy"))
    return total


def _read(bucket: CosBucket, piece: Piece) -> bytes:
    if piece.path is not None:
        with open(piece.path, "rb") as f:
            f.seek(piece.offset)
            return f.read()
    return bucket.get_bytes(piece.key, piece.offset if piece.offset else None, None)


def read_playlist(text: str) -> dict[str, float]:
    """{uri: seconds} of a playlist's segments."""
    out: dict[str, float] = {}
    duration: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            out[line] = duration
            duration = None
    return out


def _segment_duration_ms(bucket: CosBucket, keys: OutputKeys, key: str, size: int, channels: int,
                         tracks: dict[int, Track] | None) -> float:
    if keys.ext == "mp3":
        frame = 144 * mp3.BITRATE_PER_CHANNEL_KBPS * channels * 1000 // mp3.SAMPLE_RATE
        return (size - mp3.HLS_TAG_BYTES) // frame * mp3.SAMPLES_PER_FRAME * 1000 / mp3.SAMPLE_RATE
    times = fragment_times(bucket.get_bytes(key, 0, min(size, 256 * 1024) - 1), tracks or {})
    return (times.get("vide") or times.get("soun") or (0.0, 0.0))[1]


def finalize(bucket: CosBucket, keys: OutputKeys, fmt: str, *, channels: int = 1, samples: int | None = None,
             durations: dict[str, float] | None = None, failed: dict[int, tuple[Path, str]] | None = None,
             segment_s: float = 10.0, note: str = "", local: list[tuple[int, Path, int]] | None = None,
             log: RunLogger | None = None) -> list[dict[str, Any]]:
    """Make a file's outputs from its segments in COS (and `local` ones: (index, path, media
    offset) of segments the live run still has on its disk, for the final file only): the playlist with ENDLIST (HLS), the final
    MP4/MP3 (mp4 formats), and remove the segments nobody asked for ("mp4"). Idempotent: a final
    object that is already there is kept (a finisher that died after writing it).

    `durations` ({segment key: ms}) is what the live run knows; without it (recovery) they come
    from the playlist already in COS, or from the segments themselves. `samples` (the PCM
    samples given to the MP3 encoder) trims the final MP3's last frame; `note` is added to each
    Message (recovery says so). Entries for Files[]; a failed segment makes every entry Status 0
    with its LocalPath, while what reached COS is still assembled.
    """
    log = log or bucket.log
    failed = failed or {}
    durations = dict(durations or {})
    entries: list[dict[str, Any]] = []
    problem = ""
    if failed:
        problem = "; ".join(f"segment {i} could not be uploaded ({why}): it is kept at {path}"
                            for i, (path, why) in sorted(failed.items()))
    try:
        found = segments_in(bucket.list(keys.segment_prefix), keys)
    except UploadError as e:
        why = f"{problem}; {e.message}" if problem else e.message
        return [_entry(keys.playlist if fmt == "hls" else keys.final, bucket, 0, why, failed, note, False)]
    media = [(i, k, s) for i, k, s in found if i != INIT_INDEX]
    init = next(((k, s) for i, k, s in found if i == INIT_INDEX), None)
    in_cos = {i for i, _, _ in found}
    at_hand = {i: Piece(keys.segment(i), offset, path.stat().st_size, path)
               for i, path, offset in (local or []) if i not in in_cos and path.exists()}
    if "mp4" not in fmt:
        at_hand = {}
    numbers = sorted({m[0] for m in media} | {i for i in at_hand if i != INIT_INDEX})
    gaps = [i for i in range(1, (numbers[-1] if numbers else 0) + 1) if i not in numbers]
    if gaps and not failed:
        problem = f"segments {', '.join(map(str, gaps[:10]))} never reached COS"
    if not numbers or (not keys.ext == "mp3" and init is None and INIT_INDEX not in at_hand):
        # Nothing to assemble: either nothing was recorded, or a finisher before us already made
        # the outputs and removed the segments ("mp4").
        done = [k for k in ((keys.playlist,) if "hls" in fmt else ()) + ((keys.final,) if "mp4" in fmt else ())
                if _exists(bucket, k)]
        if done:
            return [_entry(k, bucket, 1, "", failed, note) for k in done]
        why = problem or "nothing was recorded into this file"
        return [_entry(keys.playlist if fmt == "hls" else keys.final, bucket, 0, why, failed, note, False)]

    if "hls" in fmt and media:
        try:
            tracks = None
            missing = [m for m in media if m[1] not in durations]
            if missing:
                old = bucket.head(keys.playlist) and read_playlist(bucket.get_bytes(keys.playlist).decode())
                for _i, k, s in missing:
                    uri = hls.relative_uri(keys.playlist, k)
                    if old and uri in old:
                        durations[k] = old[uri] * 1000
                        continue
                    if tracks is None and init is not None:
                        tracks = parse_init(bucket.get_bytes(init[0]))
                    durations[k] = _segment_duration_ms(bucket, keys, k, s, channels, tracks)
            text = hls.playlist([hls.PlaylistEntry(hls.relative_uri(keys.playlist, k), durations[k] / 1000.0)
                                 for _, k, _ in media], ended=True,
                                init_uri=hls.relative_uri(keys.playlist, init[0]) if init else None,
                                at_least=math.ceil(segment_s))
            bucket.put_bytes(keys.playlist, text.encode(), hls.CONTENT_TYPE)
            entries.append(_entry(keys.playlist, bucket, 0 if problem else 1, problem, failed, note))
        except UploadError as e:
            entries.append(_entry(keys.playlist, bucket, 0, e.message, failed, note, False))

    if "mp4" in fmt:
        try:
            head = bucket.head(keys.final)
            if head is None:
                offset = mp3.HLS_TAG_BYTES if keys.ext == "mp3" else 0
                by_index = {**{i: Piece(k, offset, s) for i, k, s in media}, **at_hand}
                if init is not None:
                    by_index[INIT_INDEX] = Piece(init[0], 0, init[1])
                pieces = [by_index[i] for i in sorted(by_index)]
                header = b""
                if keys.ext == "mp3":
                    frame = 144 * mp3.BITRATE_PER_CHANNEL_KBPS * channels * 1000 // mp3.SAMPLE_RATE
                    audio = sum(p.length for p in pieces)
                    header = mp3.final_header(audio // frame, audio, channels, samples)
                assemble(bucket, keys.final, pieces, header, CONTENT_TYPES[keys.ext], log)
            entries.append(_entry(keys.final, bucket, 0 if problem else 1, problem, failed, note))
            if fmt == "mp4" and not problem:
                bucket.delete([k for _, k, _ in found])  # asked for the MP4 only
        except UploadError as e:
            log.error("the final file could not be assembled; its segments stay in COS", key=keys.final,
                      error=e.message)
            entries.append(_entry(keys.final, bucket, 0, f"{e.message} (its segments are under "
                                                         f"{keys.segment_prefix})", failed, note, False))
    return entries


def _exists(bucket: CosBucket, key: str) -> bool:
    try:
        return bucket.head(key) is not None
    except UploadError:
        return False


def _entry(key: str, bucket: CosBucket, status: int, problem: str, failed: dict[int, tuple[Path, str]],
           note: str = "", made: bool = True) -> dict[str, Any]:
    """One Files[] entry: RecordFile is the object's URL whenever it was made (even with a gap)."""
    message = problem or "success"
    if note:
        message = f"{message} ({note})"
    entry: dict[str, Any] = {"RecordFile": bucket.url(key) if made else "", "Status": status, "Message": message}
    if failed:
        paths = sorted(str(p) for p, _ in failed.values())
        entry["LocalPath"] = paths[0] if len(paths) == 1 else os.path.commonpath(paths)
    return entry


__all__ = ["SegmentUploader", "UploadJob", "FileOutput", "Landed", "Piece", "assemble", "finalize", "segments_in",
           "read_playlist"]
