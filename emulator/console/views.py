"""What the console's pages show, read from the emulator's own models (Scf runs, Rooms, COS state):
plain data, no HTTP.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from emulator.cos.models import CosState
from emulator.scf.models import Run, Scf
from emulator.trtc.models import Rooms

from .media import MediaTap


class CaptionSource(Protocol):
    """What the Rooms page needs of the captions (emulator.console.captions.Captions)."""

    def for_room(self, room: tuple[int, str]) -> dict[str, list[dict[str, Any]]]: ...

# A page opening the log of a long run starts this far from its end.
LOG_TAIL_BYTES = 256 * 1024
PROGRESS_FIELDS = ("position", "duration", "speed", "fps", "bitrateKbps", "lagMs", "framesSent", "checkpoint")


# --- runs ------------------------------------------------------------------------------------------


def result_body(result: Any) -> Any:
    """A function's own result: the JSON body of the API Gateway response it returned, or as is."""
    if isinstance(result, dict) and "statusCode" in result and isinstance(result.get("body"), str):
        try:
            return json.loads(result["body"])
        except ValueError:
            return result
    return result


def outcome(run: Run) -> dict[str, Any]:
    """The result's status and reason (push_stream: status/reason; record_stream: Reason + files)."""
    body = result_body(run.result)
    if not isinstance(body, dict):
        return {"status": None, "reason": None}
    status = body.get("status")
    if status is None and "Files" in body:
        files = body.get("Files") or []
        status = "recorded" if files and all(f.get("Status") == 1 for f in files if isinstance(f, dict)) \
            else ("no files" if not files else "upload failed")
    return {"status": status, "reason": body.get("reason") or body.get("Reason"), "message": body.get("message")}


def run_summary(run: Run) -> dict[str, Any]:
    d = run.to_dict()
    return {"requestId": d["requestId"], "functionName": d["functionName"], "status": d["status"],
            "statusCode": d["statusCode"], "startTime": d["startTime"], "endTime": d["endTime"],
            # While it runs the page counts the time itself: a list that changed every look would be
            # sent to every open page four times a second.
            "durationMs": None if d["status"] == "RUNNING" else d["durationMs"], "terminated": d["terminated"], "source": d["source"],
            "result": outcome(run)}


def runs_list(scf: Scf) -> list[dict[str, Any]]:
    runs = sorted(scf.runs(), key=lambda r: r.started_at, reverse=True)
    return [run_summary(r) for r in runs]


def run_detail(run: Run) -> dict[str, Any]:
    d = run.to_dict()
    return {**run_summary(run), "invokeType": d["invokeType"], "event": d["event"], "resultRaw": d["result"],
            "resultBody": result_body(d["result"]), "error": d["error"], "running": not run.done.is_set()}


def parse_log_line(line: str) -> dict[str, Any]:
    """One log line for the page: the text, and for a push's progress line its figures."""
    item: dict[str, Any] = {"line": line}
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return item
        if isinstance(record, dict):
            item["level"] = record.get("level")
            if record.get("msg") == "progress":
                item["progress"] = {k: record.get(k) for k in PROGRESS_FIELDS}
    return item


@dataclass
class LogTail:
    """Reads a run's log (the file its SCF model names, `Run.log_path`) from where it left off."""

    path: Path
    offset: int = 0
    _partial: bytes = b""
    skipped: bool = False

    def start_near_end(self, keep: int = LOG_TAIL_BYTES) -> None:
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return
        if size > keep:
            self.offset, self.skipped = size - keep, True

    def read(self) -> list[str]:
        """Complete lines written since the last read."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(1 << 20)
        except OSError:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if self.skipped and lines:
            lines.pop(0)  # the first line after a jump into the middle is a fragment
            self.skipped = False
        return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines]

    def rest(self) -> list[str]:
        """What is left once the run has ended, an unterminated last line included."""
        lines = self.read()
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace"))
            self._partial = b""
        return lines


# --- rooms -----------------------------------------------------------------------------------------


def rooms_view(rooms: Rooms, tap: MediaTap, captions: CaptionSource | None = None) -> list[dict[str, Any]]:
    out = []
    present = set()
    for room in sorted(rooms.snapshot(), key=lambda r: (r["sdkAppId"], r["key"])):
        said = captions.for_room((room["sdkAppId"], room["key"])) if captions is not None else {}
        for m in room["members"]:
            m["captions"] = said.get(m["userId"], [])
            key = (room["sdkAppId"], room["key"], m["userId"])
            present.add(key)
            m["publishes"] = [k for k, on in (("audio", m["audio"]), ("video", m["video"])) if on]
            m["figures"] = tap.figures(key) if m["publishes"] else None
        room["members"].sort(key=lambda m: (m["role"] != "anchor", m["userId"]))
        out.append(room)
    tap.forget_except(present)
    return out


def find_member(rooms: Rooms, sdk_app_id: int, room_key: str, user_id: str) -> dict[str, Any] | None:
    for room in rooms.snapshot():
        if room["sdkAppId"] == sdk_app_id and room["key"] == room_key:
            for m in room["members"]:
                if m["userId"] == user_id:
                    return m
    return None


# --- recordings ------------------------------------------------------------------------------------

CONTENT_TYPES = {".mp4": "video/mp4", ".m4a": "audio/mp4", ".mp3": "audio/mpeg", ".wav": "audio/wav", ".m3u8": "application/vnd.apple.mpegurl",
                 ".ts": "video/mp2t", ".m4s": "video/iso.segment", ".json": "application/json", ".txt": "text/plain",
                 ".jpg": "image/jpeg"}
PLAYABLE = {".mp4": "video", ".m4a": "audio", ".mp3": "audio", ".wav": "audio", ".m3u8": "hls", ".jpg": "image"}
# record_stream's outputs beside a file (issue 21): "<file>/images/3.jpg", "<file>/audio/0.wav" (or .mp3), "<file>_trimmed.mp4"
_KINDS = ((re.compile(r"/images/\d+\.jpg$"), "snapshot"), (re.compile(r"/audio/\d+\.(wav|mp3)$"), "slice"),
          (re.compile(r"_trimmed\.(mp3|mp4)$"), "trimmed"))


def output_kind(key: str) -> str | None:
    """Which of record_stream's extra outputs an object is (None: a recording or anything else)."""
    return next((kind for pattern, kind in _KINDS if pattern.search(key)), None)


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream")


def recordings_view(buckets: Iterable[CosState]) -> list[dict[str, Any]]:
    out = []
    for state in buckets:
        objects = [{"key": key, "size": size, "lastModified": modified.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "play": PLAYABLE.get(Path(key).suffix.lower()), "kind": output_kind(key)}
                   for key, size, modified in sorted(state.objects(), key=lambda o: o[2], reverse=True)]
        out.append({"bucket": state.bucket, "region": state.region, "objects": objects})
    return out
