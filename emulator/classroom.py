"""The seeds' AI class on the local cloud, for whoever drives it (the demo, tests/recognize, bench/aiclass):

    teacher push ──(lesson playlist: question, filler)──▶ room ◀── student (espeak-ng speech, 20 ms frames)
         ▲                                                 │  └──▶ viewer (an audience member: the gray
         │ push_control switch (controlToken)              │        level of every picture it gets)
    decision endpoint ◀── sentence callback ── recognize_stream (the student's speech)

- `Lesson`: four clips made with `media.make_clip`, each one flat gray level and one tone, so any
  picture tells which segment it is: the question, the filler played while the student thinks,
  the right-answer feedback and the try-again feedback.
- `Student`: an anchor whose microphone sends espeak-ng's speech (`speech(text)`), silence between.
- `DecisionEndpoint`: an HTTP receiver on 127.0.0.1 (`callbacks.CallbackReceiver`) that recognize_stream
  POSTs sentences to; on its own thread it picks the feedback by keyword (`decide`) and calls
  push_control `switch` with the push's controlToken, then `enqueue`s the filler (the lesson goes on).
- `Viewer`: an audience member decoding the teacher's pictures; it notes when each level arrived.
- `AiClass`: the whole loop in one room through the gateway; `answer(text)` is one question-answer
  round, timed (end of the student's speech → the sentence callback → the first feedback picture).
"""
from __future__ import annotations

import array
import functools
import math
import queue
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import av
import requests

from emulator import media
from emulator.callbacks import CallbackReceiver, Received
from emulator.trtc import usersig
from shared.media.frames import AudioFrame, PixelFrame
from shared.room import NO_MEDIA, EnterParams, Role, RoomRef
from shared.room.base import RemoteVideo, VideoFormat
from shared.room.local import LocalRoom
from shared.worker import Worker

FRAME_BYTES = 48 * 20 * 2  # 20 ms of 48 kHz mono s16, what a room carries
VOICED_RMS = 300.0  # a 20 ms frame louder than this is speech (espeak-ng's pauses are near 0)
LEVEL_TOLERANCE = 12  # a picture's mean luma is its clip's level within this (H.264 keeps flat gray to ±2)
SPEECH_DIR = Path("/tmp/recognize-speech")
RUN_CHECK_S = 0.5  # how often a wait asks the gateway whether the push and the recognition still run


class ClassError(Exception):
    """Why the class could not go on, in a sentence a person can act on."""


class SpeechUnavailable(ClassError):
    """espeak-ng is not installed (./dev test installs it)."""


# --- the lesson ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    name: str
    path: Path
    level: int  # the luma of every picture
    tone_hz: int


@dataclass(frozen=True)
class Lesson:
    """One question and its feedback; `answers` are the words the question expects (the hotwords)."""

    question: Segment
    filler: Segment
    right: Segment
    try_again: Segment
    right_answer: str = "triangle"
    answers: tuple[str, ...] = ("triangle", "square", "circle")

    @property
    def segments(self) -> tuple[Segment, ...]:
        return (self.question, self.filler, self.right, self.try_again)

    def segment_of(self, level: float) -> Segment | None:
        return next((s for s in self.segments if abs(level - s.level) <= LEVEL_TOLERANCE), None)


def lesson_dir(info: dict[str, Any], name: str = "class") -> Path:
    """Where a cloud's push_stream may read the lesson's clips: its state dir's media/ (LOCAL_SOURCE_DIRS)."""
    from emulator.cloud import MEDIA_DIR

    return Path(info["stateDir"]) / MEDIA_DIR / name


def make_lesson(directory: Path, *, question_s: float = 2.0, filler_s: float = 30.0, feedback_s: float = 2.0,
                width: int = 320, height: int = 180, fps: int = 25) -> Lesson:
    """The four clips, H.264 baseline (a key frame a second) + AAC mono, alike but for level and tone,
    so a switch between them passes H.264 through."""
    directory.mkdir(parents=True, exist_ok=True)

    def clip(name: str, seconds: float, level: int, tone_hz: int) -> Segment:
        path = media.make_clip(directory / f"{name}.mp4", duration=seconds, width=width, height=height, fps=fps,
                               gop=fps, pictures="flat", level=level, layout="mono", tone_hz=tone_hz)
        return Segment(name, path, level, tone_hz)

    return Lesson(question=clip("question", question_s, 96, 440), filler=clip("filler", filler_s, 136, 330),
                  right=clip("right", feedback_s, 200, 880), try_again=clip("try-again", feedback_s, 40, 220))


def decide(sentence: str, lesson: Lesson) -> Segment | None:
    """The feedback for what the student said: the right answer named in it, or try again when it names
    another of the expected answers. A sentence naming none ("ah", a cough the recogniser heard as a
    word) is not an answer: None, the lesson goes on."""
    words = sentence.lower().replace(",", " ").replace(".", " ").split()
    if lesson.right_answer in words:
        return lesson.right
    return lesson.try_again if any(a in words for a in lesson.answers) else None


# --- the student -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def speech(text: str) -> bytes:
    """espeak-ng saying `text`, as 48 kHz mono s16 (what a room carries)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechUnavailable("espeak-ng is not installed (./dev test installs it; or apt-get install espeak-ng)")
    SPEECH_DIR.mkdir(exist_ok=True)
    wav = SPEECH_DIR / ("_".join(text.split()) + ".wav")
    subprocess.run([exe, "-v", "en-us", "-s", "140", "-w", str(wav), text], check=True, timeout=30)
    pcm = bytearray()
    with av.open(str(wav)) as c:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in c.decode(audio=0):
            for f in resampler.resample(frame):
                pcm += bytes(f.planes[0])[:f.samples * 2]
        for f in resampler.resample(None):
            pcm += bytes(f.planes[0])[:f.samples * 2]
    return bytes(pcm)


def _rms(pcm: bytes) -> float:
    samples = array.array("h", pcm)
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


class Student(Worker):
    """An anchor in the room whose microphone sends 20 ms frames in real time: speech when told
    to say something, silence otherwise, nothing while muted."""

    def __init__(self, room_address: str, sdk_app_id: int, room: RoomRef, user_id: str, user_sig: str):
        super().__init__(f"student-{user_id}")
        host, _, port = room_address.rpartition(":")
        self.user_id = user_id
        self.room = LocalRoom(host, int(port))
        self.room.enter(EnterParams(sdk_app_id, room, user_id, user_sig, role=Role.ANCHOR, receive=NO_MEDIA))
        self.room.start_audio(1)
        self._queue = bytearray()
        self._lock = threading.Lock()
        self.muted = False
        self.said_until = 0.0  # monotonic time the last frame of speech was sent
        self.voiced_until = 0.0  # ... and the last one that was not silent: where the student stopped speaking

    def say(self, text: str) -> None:
        pcm = speech(text)
        with self._lock:
            self._queue += pcm

    @property
    def speaking(self) -> bool:
        return bool(self._queue)

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.closing.is_set():
            with self._lock:
                spoken = bool(self._queue)
                data = bytes(self._queue[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
                del self._queue[:FRAME_BYTES]
            if not self.muted:
                try:
                    self.room.send_audio(AudioFrame(data, n * 20))
                except Exception:
                    return
            if spoken:
                self.said_until = time.monotonic()
                if _rms(data) >= VOICED_RMS:
                    self.voiced_until = self.said_until
            n += 1
            self.pause(max(0.0, start + n * 0.02 - time.monotonic()))

    def leave(self) -> None:
        self.close()
        self.join(2)
        self.room.exit()


# --- the viewer ------------------------------------------------------------------------------------

@dataclass
class Seen:
    at: float  # monotonic time the picture arrived
    level: float  # its mean luma


class Viewer(Worker):
    """An audience member decoding `user_id`'s pictures; `seen` lists each one's arrival and level."""

    def __init__(self, room_address: str, sdk_app_id: int, room: RoomRef, user_id: str, user_sig: str, me: str):
        super().__init__(f"viewer-{me}")
        host, _, port = room_address.rpartition(":")
        self.user_id = user_id
        self.room = LocalRoom(host, int(port))
        self.room.enter(EnterParams(sdk_app_id, room, me, user_sig, role=Role.AUDIENCE,
                                    video_output=VideoFormat.YUV420P, audio_output_channels=1))
        self.seen: list[Seen] = []

    def run(self) -> None:
        while not self.closing.is_set():
            event = self.room.poll(0.05)
            if isinstance(event, RemoteVideo) and event.user_id == self.user_id and isinstance(event.frame, PixelFrame):
                self.seen.append(Seen(time.monotonic(), _center_luma(event.frame)))

    def first(self, level: int, after: float) -> float | None:
        """When the first picture of `level` arrived after the monotonic time `after` (None: not yet)."""
        return next((s.at for s in list(self.seen) if s.at > after and abs(s.level - level) <= LEVEL_TOLERANCE), None)

    def leave(self) -> None:
        self.close()
        self.join(2)
        self.room.exit()


def _center_luma(frame: PixelFrame) -> float:
    """The mean luma of the picture's middle row (flat pictures: the clip's level; cheap at any size)."""
    row = frame.height // 2 * frame.width
    y = frame.data[row:row + frame.width]
    return sum(y) / max(1, len(y))


# --- the decision endpoint -------------------------------------------------------------------------

@dataclass
class Decision:
    sentence: str
    speaker: str
    arrived_at: float  # monotonic: the sentence callback reached the endpoint
    feedback: Segment
    status: int = 0  # push_control's answer to the switch
    answered_at: float = 0.0  # monotonic: push_control answered
    answer: dict[str, Any] = field(default_factory=dict)


class DecisionEndpoint(Worker):
    """recognize_stream's Callback: each final sentence of `student` picks a feedback segment, which
    push_control `switch`es the teacher's push to (with its controlToken); the filler is queued after it."""

    def __init__(self, gateway: str, lesson: Lesson, push: dict[str, Any], student: str):
        super().__init__("decision-endpoint")
        self.gateway = gateway
        self.lesson = lesson
        self.push = push  # how push_control names and proves the push: requestId + controlToken
        self.student = student
        self.decisions: list[Decision] = []
        self.errors: list[str] = []
        self.ignored: list[str] = []  # sentences that named none of the expected answers
        self._inbox: queue.Queue[Received] = queue.Queue()
        self._http = requests.Session()
        self.receiver = CallbackReceiver(path="/class-answer", on_post=self._inbox.put)

    @property
    def url(self) -> str:
        return self.receiver.url

    def start(self) -> "DecisionEndpoint":
        self.receiver.start()
        super().start()
        return self

    def control(self, action: str, **fields: Any) -> requests.Response:
        return self._http.post(f"{self.gateway}/push_control", json={**self.push, "action": action, **fields},
                               timeout=10)

    def run(self) -> None:
        while not self.closing.is_set():
            try:
                got = self._inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                body = got.json
            except ValueError:
                continue
            if not isinstance(body, dict) or body.get("Status") != "recognizing" or body.get("Final") is False \
                    or body.get("UserId") != self.student:
                continue
            sentence = " ".join(str(r.get("Voice") or "") for r in body.get("Result") or [])
            feedback = decide(sentence, self.lesson)
            if feedback is None:
                self.ignored.append(sentence)
                continue
            decision = Decision(sentence, self.student, got.arrived_at, feedback)
            try:
                r = self.control("switch", videoSrc=str(decision.feedback.path), seekSecond=0)
                decision.status, decision.answered_at = r.status_code, time.monotonic()
                decision.answer = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
                if r.status_code == 200:  # the lesson goes on after the feedback
                    self.control("enqueue", videoSrc=str(self.lesson.filler.path))
                else:
                    self.errors.append(f"push_control switch answered {r.status_code}: {r.text[:200]}")
            except requests.RequestException as e:
                self.errors.append(f"push_control failed: {e}")
            self.decisions.append(decision)

    def stop(self) -> None:
        self.close()
        self.join(5)
        self.receiver.stop()
        self._http.close()


# --- the class -------------------------------------------------------------------------------------

@dataclass
class Answer:
    said: str
    heard: str
    feedback: str  # the segment the decision picked
    seen: str  # the segment the viewer saw after the answer
    speech_end: float  # monotonic: the student's last voiced frame left
    callback_ms: float  # speech end → the sentence reached the decision endpoint
    switched_ms: float  # speech end → push_control answered the switch
    feedback_ms: float  # speech end → the viewer's first picture of the feedback


class AiClass:
    """A room with a teacher push (the lesson), a student, recognize_stream, the decision endpoint and
    a viewer, all through the gateway of the local cloud whose JSON line is `info`."""

    TEACHER, STUDENT, RECOGNIZER, VIEWER = "teacher", "student", "recognizer", "viewer"

    def __init__(self, info: dict[str, Any], lesson: Lesson, *, room: int | None = None, vad_silence_ms: int = 500,
                 log: Callable[[str], None] = lambda _: None):
        self.info = info
        self.lesson = lesson
        self.vad_silence_ms = vad_silence_ms
        self.log = log
        self.gateway: str = info["gateway"]
        self.app: int = info["sdkAppId"]
        self.room = RoomRef(room if room is not None else 600_000 + uuid.uuid4().int % 100_000)
        self.control_token = uuid.uuid4().hex  # chosen at push start, the only proof push_control gets
        self.push_id = ""
        self.recognize_id = ""
        self.student: Student | None = None
        self.viewer: Viewer | None = None
        self.endpoint: DecisionEndpoint | None = None
        self._log_read_at = 0.0

    def sig(self, user_id: str) -> str:
        return usersig(user_id, self.app, self.info["sdkSecretKey"])

    def _post(self, function: str, params: dict[str, Any]) -> str:
        r = requests.post(f"{self.gateway}/{function}", json=params, timeout=10)
        if r.status_code != 200 or "x-scf-reqid" not in r.headers:
            raise ClassError(f"POST /{function} answered {r.status_code}: {r.text[:300]}")
        return r.headers["x-scf-reqid"]

    def run_record(self, request_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.gateway}/_runs/{request_id}", timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def _until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + RUN_CHECK_S
        while True:
            value = predicate()
            if value:
                return value
            now = time.monotonic()
            if now >= next_check:  # a run that ended says why at once, rather than after the timeout
                next_check = now + RUN_CHECK_S
                for rid, name in ((self.push_id, "the teacher's push"), (self.recognize_id, "recognize_stream")):
                    run = self.run_record(rid) if rid else None
                    if run is not None and run["status"] != "RUNNING":
                        raise ClassError(f"{name} ({rid}) ended while waiting for {what}: "
                                         f"{str(run.get('result'))[:300]}")
            if now > deadline:
                raise ClassError(f"no {what} within {timeout:.0f} s")
            time.sleep(0.01)

    def start(self) -> "AiClass":
        """Teacher push, viewer, student, decision endpoint, recognize_stream; returns once the viewer
        sees the question and the student's speech reaches the recogniser."""
        addr, room = self.info["roomAddress"], self.room
        self.viewer = Viewer(addr, self.app, room, self.TEACHER, self.sig(self.VIEWER), self.VIEWER)
        self.viewer.start()
        started = time.monotonic()
        self.push_id = self._post("push_stream", {
            "videoSrc": [str(self.lesson.question.path), str(self.lesson.filler.path)], "sdkAppId": self.app,
            "roomId": room.id, "userId": self.TEACHER, "userSig": self.sig(self.TEACHER),
            "controlToken": self.control_token, "maxDuration": 600})
        self.log(f"POST /push_stream: the lesson playlist (question, filler) -> {self.push_id}")
        self.endpoint = DecisionEndpoint(self.gateway, self.lesson,
                                         {"requestId": self.push_id, "controlToken": self.control_token},
                                         self.STUDENT).start()
        self.student = Student(addr, self.app, room, self.STUDENT, self.sig(self.STUDENT))
        self.student.start()
        self.recognize_id = self._post("recognize_stream", {
            "SdkAppId": self.app, "RoomId": room.id, "UserId": self.RECOGNIZER, "UserSig": self.sig(self.RECOGNIZER),
            "Callback": self.endpoint.url, "EngineModelType": "16k_en", "HotwordList": list(self.lesson.answers),
            "VadSilenceTime": self.vad_silence_ms, "TargetUserIds": [self.STUDENT], "MaxIdleTime": 2,
            "MaxDuration": 900})
        self.log(f"POST /recognize_stream (student {self.STUDENT}, hotwords {', '.join(self.lesson.answers)}, "
                 f"VadSilenceTime {self.vad_silence_ms} ms, Callback {self.endpoint.url}) -> {self.recognize_id}")
        viewer = self.viewer
        self._until(lambda: viewer.first(self.lesson.question.level, started), 30, "question picture at the viewer")
        self.log("the viewer sees the question")
        self._until(lambda: self._recognizing(), 30, "recognition of the student")
        return self

    def _recognizing(self) -> bool:
        """recognize_stream says its connection for the student is open (its log line; read 5 times a second)."""
        if time.monotonic() < self._log_read_at + 0.2:
            return False
        self._log_read_at = time.monotonic()
        text = requests.get(f"{self.gateway}/_runs/{self.recognize_id}/log", timeout=10).text
        return "speech recognition connected" in text

    def answer(self, text: str, timeout: float = 30.0) -> Answer:
        """The student says `text`; the feedback the decision picked must reach the viewer."""
        assert self.student is not None and self.viewer is not None and self.endpoint is not None
        student, viewer, endpoint = self.student, self.viewer, self.endpoint
        before = len(endpoint.decisions)
        student.say(text)
        self._until(lambda: not student.speaking, timeout, "end of the student's speech")
        end = student.voiced_until
        decision: Decision = self._until(lambda: endpoint.decisions[before] if len(endpoint.decisions) > before
                                         else None, timeout, f"decision on the sentence {text!r}")
        if decision.status != 200:
            raise ClassError(f"the decision's switch failed: {'; '.join(endpoint.errors) or decision.answer}")
        seen_at: float = self._until(lambda: viewer.first(decision.feedback.level, end), timeout,
                                     f"{decision.feedback.name} picture at the viewer")
        first_after = next(s for s in list(viewer.seen) if s.at >= seen_at)
        seen = self.lesson.segment_of(first_after.level)
        return Answer(text, decision.sentence, decision.feedback.name, seen.name if seen else "?", end,
                      (decision.arrived_at - end) * 1000, (decision.answered_at - end) * 1000, (seen_at - end) * 1000)

    def back_to_filler(self, timeout: float = 15.0) -> None:
        """Wait until the feedback has played and the lesson is on the filler again."""
        assert self.viewer is not None
        viewer, now = self.viewer, time.monotonic()
        self._until(lambda: viewer.first(self.lesson.filler.level, now), timeout, "the filler after the feedback")

    def recognizer_pid(self) -> int | None:
        pid = self.run_record(self.recognize_id).get("pid") if self.recognize_id else None
        return int(pid) if pid else None

    def close(self, timeout: float = 20.0) -> dict[str, Any]:
        """Stop the push, everyone leaves; recognize_stream ends idle. Its result (may be {})."""
        if self.endpoint is not None and self.push_id:
            try:
                self.endpoint.control("stop")
            except requests.RequestException:
                pass
        for who in (self.student, self.viewer):
            if who is not None:
                who.leave()
        result: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        for rid in (self.push_id, self.recognize_id):  # both end by themselves: stopped, and idle
            while rid and time.monotonic() < deadline and self.run_record(rid)["status"] == "RUNNING":
                time.sleep(0.1)
        if self.recognize_id:
            result = self.run_record(self.recognize_id).get("result") or {}
        if self.endpoint is not None:
            self.endpoint.stop()
        return result
