"""A recording file's outputs, made from its segments in COS: the live end and recovery alike.

    finalize(bucket, keys, fmt, ...)   the playlist with ENDLIST (HLS), the final MP4/MP3 (mp4
                                       formats), the segments nobody asked for removed; Files[] entries
    assemble(bucket, key, pieces)      one object from segment objects (and local segment files),
                                       in order, as a COS multipart upload

The final object is a multipart upload whose parts are the segments in order, without re-encoding:
a segment of at least 1 MB (COS's smallest part) is copied inside COS (UploadPartCopy: no bytes
through the function), smaller ones are read back and sent in groups of at least 1 MB, and part 1
carries the file's header (the MP3 Info frame; for MP4 the init segment). Why not concatenate
locally: the segments are deleted from the local disk once uploaded (that is what keeps the disk
flat), and recovery has no local disk at all; the same assembly from COS serves both.
"""
from __future__ import annotations

import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.cos.client import MIN_PART_SIZE, CosBucket
from shared.cos.errors import UploadError
from shared.rules.record import INIT_INDEX, OutputKeys
from shared.runtime import RunLogger

from . import hls, mp3
from .segments import Track, fragment_times, parse_init

CONTENT_TYPES = {"mp4": "video/mp4", "mp3": "audio/mpeg", "m4s": "video/iso.segment", "m3u8": hls.CONTENT_TYPE}
MAX_PARTS = 10_000
ASSEMBLY_WORKERS = 4
_SEGMENT = re.compile(r"^(?:init\.mp4|(\d{5,})\.(m4s|mp3))$")

Segment = tuple[int, str, int]  # (index, key, size) of a segment object
Failed = dict[int, tuple[Path, str]]  # index -> (local path, why) of segments that never reached COS


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
        frames = (size - mp3.HLS_TAG_BYTES) // _mp3_frame_bytes(channels)
        return frames * mp3.SAMPLES_PER_FRAME * 1000 / mp3.SAMPLE_RATE
    times = fragment_times(bucket.get_bytes(key, 0, min(size, 256 * 1024) - 1), tracks or {})
    return (times.get("vide") or times.get("soun") or (0.0, 0.0))[1]


def _mp3_frame_bytes(channels: int) -> int:
    return 144 * mp3.BITRATE_PER_CHANNEL_KBPS * channels * 1000 // mp3.SAMPLE_RATE


@dataclass
class _InCos:
    """What of one file is in COS (and at hand locally) when its outputs are made."""

    found: list[Segment]  # every segment object, init first
    media: list[Segment]  # the media segments
    init: tuple[str, int] | None  # the init segment's key and size (fMP4)
    at_hand: dict[int, Piece]  # local segments not in COS that go into the final file

    @property
    def numbers(self) -> list[int]:
        return sorted({m[0] for m in self.media} | {i for i in self.at_hand if i != INIT_INDEX})

    def gaps(self) -> list[int]:
        numbers = self.numbers
        return [i for i in range(1, (numbers[-1] if numbers else 0) + 1) if i not in numbers]

    def playable(self, keys: OutputKeys) -> bool:
        """Media to assemble, and (fMP4) the init segment that makes it play."""
        return bool(self.numbers) and (keys.ext == "mp3" or self.init is not None or INIT_INDEX in self.at_hand)


def _in_cos(bucket: CosBucket, keys: OutputKeys, fmt: str, local: list[tuple[int, Path, int]] | None) -> _InCos:
    found = segments_in(bucket.list(keys.segment_prefix), keys)
    in_cos = {i for i, _, _ in found}
    at_hand = {i: Piece(keys.segment(i), offset, path.stat().st_size, path)
               for i, path, offset in (local or []) if i not in in_cos and path.exists()} if "mp4" in fmt else {}
    return _InCos(found, [s for s in found if s[0] != INIT_INDEX],
                  next(((k, s) for i, k, s in found if i == INIT_INDEX), None), at_hand)


def finalize(bucket: CosBucket, keys: OutputKeys, fmt: str, *, channels: int = 1, samples: int | None = None,
             durations: dict[str, float] | None = None, failed: Failed | None = None,
             segment_s: float = 10.0, note: str = "", local: list[tuple[int, Path, int]] | None = None,
             with_duration: bool = False, log: RunLogger | None = None) -> list[dict[str, Any]]:
    """Make a file's outputs from its segments in COS (and `local` ones: (index, path, media
    offset) of segments the live run still has on its disk, for the final file only): the playlist
    with ENDLIST (HLS), the final MP4/MP3 (mp4 formats), and remove the segments nobody asked for
    ("mp4"). Idempotent: a final object that is already there is kept (a finisher that died after
    writing it).

    `durations` ({segment key: ms}) is what the live run knows; without it (recovery) they come
    from the playlist already in COS, or from the segments themselves. `samples` (the PCM
    samples given to the MP3 encoder) trims the final MP3's last frame; `note` is added to each
    Message (recovery says so); `with_duration` adds each entry's `Duration` (seconds of media:
    recovery has no other way to know it). Entries for Files[]; a failed segment makes every
    entry Status 0 with its LocalPath, while what reached COS is still assembled.
    """
    log = log or bucket.log
    failed = failed or {}
    problem = "; ".join(f"segment {i} could not be uploaded ({why}): it is kept at {path}"
                        for i, (path, why) in sorted(failed.items()))
    main_key = keys.playlist if fmt == "hls" else keys.final
    try:
        have = _in_cos(bucket, keys, fmt, local)
    except UploadError as e:
        return [_entry(main_key, bucket, 0, f"{problem}; {e.message}" if problem else e.message, failed, note, False)]
    gaps = have.gaps()
    if gaps and not failed:
        problem = f"segments {', '.join(map(str, gaps[:10]))} never reached COS"
    if not have.playable(keys):
        return _nothing_to_assemble(bucket, keys, fmt, problem, failed, note)
    durations = dict(durations or {})
    # Why the segments' lengths could not be read (then the playlist cannot be written).
    unknown = _fill_durations(bucket, keys, have, durations, channels) \
        if ("hls" in fmt and have.media) or with_duration else None
    entries: list[dict[str, Any]] = []
    if "hls" in fmt and have.media:
        entries.append(_entry(keys.playlist, bucket, 0, unknown, failed, note, False) if unknown else
                       _final_playlist(bucket, keys, have, durations, segment_s, problem, failed, note))
    if "mp4" in fmt:
        entries.append(_final_file(bucket, keys, fmt, have, channels, samples, problem, failed, note, log))
    return [_with_duration(e, have, durations) for e in entries] if with_duration else entries


def _with_duration(entry: dict[str, Any], have: _InCos, durations: dict[str, float]) -> dict[str, Any]:
    """The entry with `Duration`: seconds of media in the file's segments."""
    return {**entry, "Duration": round(sum(durations.get(k, 0.0) for _, k, _ in have.media) / 1000.0, 3)}


def _nothing_to_assemble(bucket: CosBucket, keys: OutputKeys, fmt: str, problem: str, failed: Failed,
                         note: str) -> list[dict[str, Any]]:
    """Either nothing was recorded, or a finisher before us already made the outputs and removed
    the segments ("mp4"): then those outputs are the file."""
    done = [k for k in ((keys.playlist,) if "hls" in fmt else ()) + ((keys.final,) if "mp4" in fmt else ())
            if _exists(bucket, k)]
    if done:
        return [_entry(k, bucket, 1, "", failed, note) for k in done]
    return [_entry(keys.playlist if fmt == "hls" else keys.final, bucket, 0,
                   problem or "nothing was recorded into this file", failed, note, False)]


def _fill_durations(bucket: CosBucket, keys: OutputKeys, have: _InCos, durations: dict[str, float],
                    channels: int) -> str | None:
    """Each media segment's length in ms, for those `durations` lacks: from the playlist already in
    COS, else from the segment itself (an MP3 one by its size, an fMP4 one by its moof). None, or
    what COS answered when they could not be read."""
    missing = [m for m in have.media if m[1] not in durations]
    if not missing:
        return None
    try:
        old = bucket.head(keys.playlist) and read_playlist(bucket.get_bytes(keys.playlist).decode())
        tracks: dict[int, Track] | None = None
        for _i, k, s in missing:
            uri = hls.relative_uri(keys.playlist, k)
            if old and uri in old:
                durations[k] = old[uri] * 1000
                continue
            if tracks is None and have.init is not None:
                tracks = parse_init(bucket.get_bytes(have.init[0]))
            durations[k] = _segment_duration_ms(bucket, keys, k, s, channels, tracks)
    except UploadError as e:
        return e.message
    return None


def _final_playlist(bucket: CosBucket, keys: OutputKeys, have: _InCos, durations: dict[str, float],
                    segment_s: float, problem: str, failed: Failed, note: str) -> dict[str, Any]:
    try:
        text = hls.playlist([hls.PlaylistEntry(hls.relative_uri(keys.playlist, k), durations[k] / 1000.0)
                             for _, k, _ in have.media], ended=True,
                            init_uri=hls.relative_uri(keys.playlist, have.init[0]) if have.init else None,
                            at_least=math.ceil(segment_s))
        bucket.put_bytes(keys.playlist, text.encode(), hls.CONTENT_TYPE)
    except UploadError as e:
        return _entry(keys.playlist, bucket, 0, e.message, failed, note, False)
    return _entry(keys.playlist, bucket, 0 if problem else 1, problem, failed, note)


def _final_file(bucket: CosBucket, keys: OutputKeys, fmt: str, have: _InCos, channels: int, samples: int | None,
                problem: str, failed: Failed, note: str, log: RunLogger) -> dict[str, Any]:
    try:
        if bucket.head(keys.final) is None:
            offset = mp3.HLS_TAG_BYTES if keys.ext == "mp3" else 0
            by_index = {**{i: Piece(k, offset, s) for i, k, s in have.media}, **have.at_hand}
            if have.init is not None:
                by_index[INIT_INDEX] = Piece(have.init[0], 0, have.init[1])
            pieces = [by_index[i] for i in sorted(by_index)]
            header = b""
            if keys.ext == "mp3":
                audio = sum(p.length for p in pieces)
                header = mp3.final_header(audio // _mp3_frame_bytes(channels), audio, channels, samples)
            assemble(bucket, keys.final, pieces, header, CONTENT_TYPES[keys.ext], log)
        if fmt == "mp4" and not problem:
            bucket.delete([k for _, k, _ in have.found])  # asked for the MP4 only
    except UploadError as e:
        log.error("the final file could not be assembled; its segments stay in COS", key=keys.final,
                  error=e.message)
        return _entry(keys.final, bucket, 0, f"{e.message} (its segments are under {keys.segment_prefix})",
                      failed, note, False)
    return _entry(keys.final, bucket, 0 if problem else 1, problem, failed, note)


def _exists(bucket: CosBucket, key: str) -> bool:
    try:
        return bucket.head(key) is not None
    except UploadError:
        return False


def _entry(key: str, bucket: CosBucket, status: int, problem: str, failed: Failed,
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
