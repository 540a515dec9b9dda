"""What recognize_stream runs heard: each run's recognised sentences, for the captions under each
anchor (Rooms, Watch) and the transcript on the run's page. Plain data, no HTTP.

The source is the run's own log: recognize_stream writes one `"msg": "sentence"` line per final
sentence (`anchor`, `index`, `text`, `start_ms`, `end_ms`), and the run's event names its room. Why
not the ASR service, which also hears every sentence: it knows a session's voice_id and app, not
whose voice it is nor in which room (the client sends a random voice_id and the recogniser's own
UserSig), so it would need the production client changed. Why not the sentence callbacks: they
exist only when the caller gave a Callback, and go to the caller. The log needs no change to the
function, and is read here incrementally, once per run (one `LogTail` each).

While an anchor speaks, the words heard so far come from the ASR service after all: the run's log
names each anchor's voice_id ("speech recognition connected"), and the service's session with that
voice_id has the sentence's unstable text (`Session.hearing`), whatever the run's `Partial`.

Once a run has ended, its result is the transcript of record (it is what the caller got, with the
COS transcript files and clips); the log lines stand in for it while the run is going.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable
from urllib.parse import quote

from emulator.asr.models import AsrBackend
from emulator.cos.models import CosState
from emulator.scf.models import Run, Scf
from shared.cos.urls import parse_cos_url
from shared.room.base import RoomRef

from .views import LogTail, result_body

FUNCTION = "recognize_stream"
SENTENCE_MSG = "sentence"
CONNECTED_MSG = "speech recognition connected"
# A run that ended this long ago still captions its room (the last words stay up a moment).
RECENT_S = 30.0
CAPTIONS_PER_ANCHOR = 3
FOLLOWED_MAX = 64  # runs whose reading is kept (a finished one's log is then never read twice)
# The contract: a clip's key names its sentence's index ("sentence-0003.wav").
_CLIP_INDEX = re.compile(r"sentence-(\d+)\.[A-Za-z0-9]+$")

RoomKey = tuple[int, str]  # (sdkAppId, "i:123" / "s:abc")


@dataclass(frozen=True)
class Sentence:
    request_id: str
    user_id: str
    index: int
    start_ms: int
    end_ms: int
    text: str
    at: str = ""  # when it was recognised (the log line's UTC time), "" from a result

    def to_dict(self) -> dict[str, Any]:
        return {"requestId": self.request_id, "userId": self.user_id, "index": self.index,
                "startMs": self.start_ms, "endMs": self.end_ms, "text": self.text, "at": self.at}


def run_room(event: Any) -> RoomKey | None:
    """The room a recognize_stream event names (RoomId wins over StrRoomId, as the function reads it)."""
    params = event
    if isinstance(event, dict) and isinstance(event.get("body"), str):
        body = event["body"]
        try:
            if event.get("isBase64Encoded"):
                body = base64.b64decode(body).decode("utf-8")
            params = json.loads(body)
        except ValueError:
            return None
    if not isinstance(params, dict):
        return None
    try:
        app = int(str(params.get("SdkAppId")))
        room = params.get("RoomId")
        if room is not None and str(room) != "":
            return app, RoomRef(int(str(room))).key
        return app, RoomRef(str(params["StrRoomId"])).key
    except (KeyError, ValueError, TypeError):
        return None


def _record(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def parse_sentence(request_id: str, line: str) -> Sentence | None:
    """A log line's sentence, or None for any other line."""
    record = _record(line)
    if record is None or record.get("msg") != SENTENCE_MSG:
        return None
    try:
        return Sentence(request_id, str(record["anchor"]), int(record["index"]), int(record["start_ms"]),
                        int(record["end_ms"]), str(record.get("text") or ""), str(record.get("time") or ""))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class _Followed:
    """One run's sentences, as far as its log has been read."""

    run: Run
    room: RoomKey | None
    tail: LogTail
    sentences: list[Sentence] = field(default_factory=list)
    voices: dict[str, str] = field(default_factory=dict)  # anchor -> its current ASR voice_id
    complete: bool = False

    def update(self) -> None:
        if self.complete:
            return
        done = self.run.done.is_set()  # read before the file: nothing is written after done
        lines = self.tail.rest() if done else self.tail.read()
        for line in lines:
            s = parse_sentence(self.run.request_id, line)
            if s is not None:
                self.sentences.append(s)
                continue
            record = _record(line)
            if record is not None and record.get("msg") == CONNECTED_MSG and record.get("voice_id"):
                self.voices[str(record.get("anchor"))] = str(record["voice_id"])
        self.complete = done


class Captions:
    """Reads recognize_stream runs' sentences; what the Rooms and Watch pages caption with."""

    def __init__(self, scf: Scf, buckets: Iterable[CosState] = (), asr: AsrBackend | None = None):
        self.scf, self.asr = scf, asr
        self._buckets = {b.bucket for b in buckets}
        self._lock = threading.Lock()
        self._followed: OrderedDict[str, _Followed] = OrderedDict()

    def _follow(self, run: Run) -> _Followed:
        """The run's sentences, read on from where the last look stopped (caller holds the lock)."""
        f = self._followed.get(run.request_id)
        if f is None:
            f = self._followed[run.request_id] = _Followed(run, run_room(run.redacted_event), LogTail(run.log_path))
            # Forget the runs looked at least recently, finished ones only (a running one would be read again).
            for rid in [rid for rid, old in self._followed.items() if old.complete][:-FOLLOWED_MAX]:
                del self._followed[rid]
        self._followed.move_to_end(run.request_id)
        f.update()
        return f

    def _live_runs(self) -> list[Run]:
        now = datetime.now()  # the SCF model's times are the emulator's local time
        return [r for r in self.scf.runs(FUNCTION)
                if not r.done.is_set() or (r.ended_at is not None and (now - r.ended_at).total_seconds() <= RECENT_S)]

    # --- captions (Rooms, Watch) -----------------------------------------------------------------

    def for_room(self, room: RoomKey, per_anchor: int = CAPTIONS_PER_ANCHOR) -> dict[str, list[dict[str, Any]]]:
        """Each anchor's last sentences in the room, oldest first, from the runs recognising it now
        (or a moment ago); then, while it speaks, what is heard of the sentence so far
        (`"partial": true`)."""
        by_anchor: dict[str, list[Sentence]] = {}
        hearing: dict[str, str] = {}
        with self._lock:
            for run in self._live_runs():
                f = self._follow(run)
                if f.room != room:
                    continue
                for s in f.sentences:
                    by_anchor.setdefault(s.user_id, []).append(s)
                if self.asr is not None and not f.complete:
                    for anchor, voice_id in f.voices.items():
                        session = self.asr.session(voice_id)
                        heard = session.hearing if session is not None else None
                        if heard is not None:
                            hearing[anchor] = heard
        out: dict[str, list[dict[str, Any]]] = {}
        for user in set(by_anchor) | set(hearing):
            said = sorted(by_anchor.get(user, []), key=lambda s: (s.at, s.index))
            out[user] = [dict(s.to_dict(), partial=False) for s in said[-per_anchor:]]
            if user in hearing:
                out[user].append({"userId": user, "text": hearing[user], "partial": True})
        return out

    def for_anchor(self, room: RoomKey, user_id: str) -> list[dict[str, Any]]:
        return self.for_room(room).get(user_id, [])

    # --- a run's transcript (the run page) -------------------------------------------------------

    def transcript(self, run: Run) -> dict[str, Any]:
        """The run's sentences (speaker, index, times, text, clip) and its COS transcript files:
        from the result once the run has ended with one, else from its log so far."""
        if run.function.name != FUNCTION:
            return {"recognize": False, "sentences": [], "files": []}
        body = result_body(run.result) if run.done.is_set() else None
        if isinstance(body, dict) and isinstance(body.get("Anchors"), list):
            return {"recognize": True, "running": False, "source": "result", **self._from_result(run, body)}
        with self._lock:
            sentences = list(self._follow(run).sentences)
        return {"recognize": True, "running": not run.done.is_set(), "source": "log",
                "sentences": [dict(s.to_dict(), clip=None) for s in sentences], "files": []}

    def _from_result(self, run: Run, body: dict[str, Any]) -> dict[str, Any]:
        sentences: list[dict[str, Any]] = []
        files: list[dict[str, Any]] = []
        for anchor in body["Anchors"]:
            if not isinstance(anchor, dict):
                continue
            user = str(anchor.get("UserId", ""))
            clips: dict[int, str] = {}
            for url in anchor.get("Clips") or []:
                m = _CLIP_INDEX.search(str(url))
                if m:
                    clips[int(m.group(1))] = self.link(str(url))
            for r in anchor.get("Sentences") or []:
                if isinstance(r, dict):
                    index = int(r.get("Index", 0))
                    sentences.append({"requestId": run.request_id, "userId": user, "index": index,
                                      "startMs": r.get("StartTime"), "endMs": r.get("EndTime"),
                                      "text": r.get("Voice", ""), "at": "", "clip": clips.get(index)})
            transcript = anchor.get("Transcript")
            if isinstance(transcript, dict):
                for kind, key in (("JSON", "Json"), ("WebVTT", "WebVtt")):
                    if transcript.get(key):
                        files.append({"userId": user, "kind": kind, "url": self.link(str(transcript[key]))})
            if anchor.get("Status") == 0:
                files.append({"userId": user, "kind": "error", "url": None, "message": anchor.get("Message")})
        sentences.sort(key=lambda s: (s["startMs"] if isinstance(s["startMs"], int) else 0, s["userId"]))
        return {"sentences": sentences, "files": files}

    def link(self, url: str) -> str:
        """A COS URL of the local cloud as the console serves it (/api/cos/...); others as they are."""
        try:
            bucket, _region, key = parse_cos_url(url)
        except ValueError:
            return url
        if bucket not in self._buckets:
            return url
        return f"/api/cos/{quote(bucket)}/{quote(key, safe='/')}"
