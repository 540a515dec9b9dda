"""record_stream's rules: what the parameter model checks and the recording code obeys, in one place
below both (shared.contracts.record and shared.record.* import this; it imports neither).

- Mode:            MODE_MP3 "00", MODE_MP4_VIDEO "01", MODE_MP4_AV "02"
- SegmentDuration: DEFAULT_SEGMENT_S, MIN_SEGMENT_S..MAX_SEGMENT_S, `check_segment_duration`
- OutputFormat:    OUTPUT_FORMATS, TRTC's numbers, `output_format(value)`
- CosConfig.Path:  `path_problem` (the one rule), `normalize_prefix`
- object keys:     `object_key` (a file's final key) and `OutputKeys` (every key derived from it:
                   playlist, segment prefix, segments; `segment_name` names a segment file)

Why here and not in shared/record/: the contracts import these, and shared/record imports the
contracts; a rules module inside shared/record would draw that package circle again.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

# --- Mode and SegmentDuration ----------------------------------------------------------------------

MODE_MP3: Final = "00"
MODE_MP4_VIDEO: Final = "01"
MODE_MP4_AV: Final = "02"

DEFAULT_SEGMENT_S = 10
MIN_SEGMENT_S, MAX_SEGMENT_S = 2, 60
INIT_INDEX = 0  # an fMP4 file's init segment (no media); media segments count from 1


def check_segment_duration(value: float) -> float:
    if not MIN_SEGMENT_S <= value <= MAX_SEGMENT_S:
        raise ValueError(f"SegmentDuration must be {MIN_SEGMENT_S}..{MAX_SEGMENT_S} seconds, not {value}")
    return float(value)


def segment_name(index: int, ext: str) -> str:
    """The file (and object) name of a segment: "init.mp4", "00001.m4s", "00002.mp3"."""
    return "init.mp4" if index == INIT_INDEX else f"{index:05d}.{ext}"


# --- OutputFormat ---------------------------------------------------------------------------------

OUTPUT_FORMATS = ("mp4", "hls", "hls+mp4")
# TRTC's RecordParams.OutputFormat numbers.
TRTC_OUTPUT_FORMATS = {0: "hls", 1: "hls+mp4", 3: "mp4"}
OUTPUT_FORMAT_RULE = 'must be "mp4", "hls", "hls+mp4" or TRTC\'s 0, 1, 3'


def output_format(value: Any) -> str:
    """OutputFormat as one of OUTPUT_FORMATS ("mp4" when absent); ValueError naming the field."""
    if value is None or value == "":
        return "mp4"
    if isinstance(value, bool):
        raise ValueError(f"OutputFormat {OUTPUT_FORMAT_RULE}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
        if number in TRTC_OUTPUT_FORMATS:
            return TRTC_OUTPUT_FORMATS[number]
    elif isinstance(value, str) and value.strip().lower() in OUTPUT_FORMATS:
        return value.strip().lower()
    raise ValueError(f"OutputFormat {OUTPUT_FORMAT_RULE}, not {value!r}")


# --- CosConfig.Path and object keys ---------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_COMPONENT = 64  # characters of an id kept in a key


def _component(value: object, allow_underscore: bool = True) -> str:
    """A key component from an id: safe characters kept; anything else replaced, with a short
    hash of the original appended so two ids that differ only there still get different keys."""
    text = str(value)
    pattern = _SAFE if allow_underscore else re.compile(r"[^A-Za-z0-9.-]")
    cleaned = pattern.sub("-", text)
    if cleaned != text or not cleaned or cleaned in (".", "..") or len(cleaned) > _MAX_COMPONENT:
        # Long ids are cut (the full id is in the result's UserId): a key stays readable and far
        # below COS's 850 bytes, and every tool that maps keys to file names copes with it.
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
        cleaned = f"{cleaned[:_MAX_COMPONENT]}-{digest}"
    return cleaned


def _timestamp(start_time: float | datetime) -> str:
    if isinstance(start_time, datetime):
        dt = start_time if start_time.tzinfo else start_time.replace(tzinfo=timezone.utc)
    else:
        dt = datetime.fromtimestamp(float(start_time), tz=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y%m%dT%H%M%S") + f"{dt.microsecond // 1000:03d}Z"


# Room left in COS's 850-byte key for the file name object_key appends (about 150 bytes at most).
MAX_PREFIX_BYTES = 600
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def path_problem(path_prefix: str | None) -> str | None:
    """What is wrong with CosConfig.Path as a key prefix, or None. The one rule for Path:
    record_stream's parameter model asks this too, so a Path refused here is refused before the
    recording starts, not at its upload."""
    text = path_prefix or ""
    if "\\" in text:
        return "must be a folder in the bucket such as /trtc, with '/' between folders (no backslash)"
    if _CONTROL.search(text):
        return "must not contain control characters (NUL, newline, ...)"
    if len(text.encode("utf-8")) > MAX_PREFIX_BYTES:
        return f"must be at most {MAX_PREFIX_BYTES} bytes (COS keys are at most 850)"
    if any(p in (".", "..") for p in text.split("/")):
        return "must not contain '.' or '..' segments"
    return None


def normalize_prefix(path_prefix: str | None) -> str:
    """CosConfig.Path as a key prefix: "" for the bucket root, else "a/b/" (no leading slash,
    no empty segments); ValueError when `path_problem` finds something wrong."""
    problem = path_problem(path_prefix)
    if problem:
        raise ValueError(f"CosConfig.Path {path_prefix!r} {problem}")
    return "".join(p + "/" for p in (path_prefix or "").split("/") if p)


def object_key(
    path_prefix: str | None,
    sdk_app_id: int | str,
    room: int | str,
    user_id: str,
    start_time: float | datetime,
    ext: str,
    part: int | str | None = None,
) -> str:
    """"{Path}/{SdkAppId}_{room}_{UserId}_{YYYYmmddTHHMMSSmmmZ}[_{part}].{ext}".

    Sorted by name, one user's files in one room come in time order (UTC, milliseconds); `part`
    (an int is zero-padded to 3 digits) numbers the files of a split recording. A string room
    has "_" replaced so that the key still splits back into its fields from the left.
    """
    ext = str(ext).lstrip(".").lower()
    if not ext or _SAFE.search(ext):
        raise ValueError(f"file extension {ext!r} is not a plain extension like 'mp4'")
    name = f"{_component(sdk_app_id)}_{_component(room, allow_underscore=False)}_{_component(user_id)}_{_timestamp(start_time)}"
    if part is not None:
        name += f"_{part:03d}" if isinstance(part, int) else f"_{_component(part)}"
    return f"{normalize_prefix(path_prefix)}{name}.{ext}"



@dataclass(frozen=True)
class OutputKeys:
    """Where one recording file's objects go, all derived from its final key."""

    final: str

    @property
    def stem(self) -> str:
        return self.final.rsplit(".", 1)[0]

    @property
    def ext(self) -> str:
        return self.final.rsplit(".", 1)[1]

    @property
    def playlist(self) -> str:
        return self.stem + ".m3u8"

    @property
    def segment_prefix(self) -> str:
        return self.stem + "/"

    def segment(self, index: int) -> str:
        return self.segment_prefix + segment_name(index, "mp3" if self.ext == "mp3" else "m4s")
