"""One anchor's transcript: its sentences, as the callback names them, as JSON, and as WebVTT;
and a sentence's audio as a WAV clip."""
from __future__ import annotations

import io
import json
import wave
from dataclasses import dataclass, field
from typing import Any

from shared.asr import wire

MESSAGE_OK = "success"


@dataclass(frozen=True)
class Line:
    """A recognised sentence. Times are ms since the run entered the room."""

    index: int
    start_ms: int
    end_ms: int
    text: str
    voice_id: str
    clip: str = ""  # the clip's COS URL, once uploaded

    def result(self) -> dict[str, Any]:
        """The template's `Result` entry."""
        return {"Voice": self.text, "Index": self.index, "StartTime": self.start_ms, "EndTime": self.end_ms,
                "Message": MESSAGE_OK}


@dataclass
class Transcript:
    user_id: str
    lines: list[Line] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"UserId": self.user_id, "Sentences": [dict(l.result(), VoiceId=l.voice_id, Clip=l.clip)
                                                                 for l in self.lines]},
                          ensure_ascii=False, indent=1).encode()

    def to_webvtt(self) -> bytes:
        out = ["WEBVTT", ""]
        for line in self.lines:
            out += [str(line.index + 1), f"{_vtt_time(line.start_ms)} --> {_vtt_time(max(line.end_ms, line.start_ms + 1))}",
                    f"<v {self.user_id}>{line.text}", ""]
        return "\n".join(out).encode()


def _vtt_time(ms: int) -> str:
    h, rest = divmod(max(0, ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def wav(pcm: bytes) -> bytes:
    """16 kHz mono s16le as a WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(wire.SAMPLE_RATE)
        w.writeframes(pcm)
    return buf.getvalue()
