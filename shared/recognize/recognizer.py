"""One recognition: join a room as an audience member, recognise each anchor's speech live, and
hand each sentence on.

    room.poll() --RemoteAudio (48 kHz)--> Speaker: resampled to 16 kHz mono --> AnchorStream (one
    ASR connection per anchor, shared.asr) --sentence--> Outbox: Callback (template's shape), clip
    to COS  ;  at the end: transcripts (JSON, WebVTT) to COS, the result --> returned and Callback

It stops as record_stream stops (removed, dismissed, MaxIdleTime without anchors, MaxDuration,
SIGTERM, the time limit drawing near), and every stop ends in the same place: each anchor's last
sentence finished, outputs written, and the result (Status "finished") posted last.
"""
from __future__ import annotations

import functools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import av

from shared.asr import AnchorStream, AsrError, Sentence
from shared.contracts.recognize import RecognizeParams
from shared.cos.client import CosBucket, check_access
from shared.cos.errors import UploadError
from shared.events.emitter import RunEvents
from shared.events.idempotency import state_bucket_keys
from shared.events.lifecycle import Who, run_with_events
from shared.outbox import with_id
from shared.room import (
    AudioAvailable,
    EnterParams,
    Event,
    RemoteAudio,
    Role,
    Room,
    Subscription,
    UserEntered,
    UserLeft,
    VideoFormat,
    open_room,
)
from shared.room.watch import RoomWatch
from shared.rules.record import normalize_prefix
from shared.runtime import Invocation, RetryPolicy, RunLogger, StopSignal

from .outbox import Outbox
from .transcript import Line, Transcript, wav

ENTER_TIMEOUT_S = 10.0
STREAM_JOIN_S = 12.0  # an anchor's last sentence: sent, decoded, answered
OUTBOX_JOIN_S = 30.0
RESERVE_S = 3.0  # kept back from the time limit for the outputs and the result's callback
STATUS_RECOGNIZING = "recognizing"
STATUS_FINISHED = "finished"

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-@.]")


class _Resampler:
    """One anchor's room audio (48 kHz s16, 1 or 2 channels) as 16 kHz mono s16le."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        self._layout: tuple[int, int] | None = None

    def convert(self, data: bytes, sample_rate: int, channels: int) -> bytes:
        if self._layout != (sample_rate, channels):  # a new input format: a new resampler
            self._layout = (sample_rate, channels)
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
        frame = av.AudioFrame(format="s16", layout="mono" if channels == 1 else "stereo",
                              samples=len(data) // (2 * channels))
        frame.planes[0].update(data)
        frame.sample_rate = sample_rate
        out = bytearray()
        for f in self._resampler.resample(frame):
            out += bytes(f.planes[0])[:f.samples * 2]
        return bytes(out)


@dataclass
class Speaker:
    """One anchor: its transcript across stays, and the stream of its current stay."""

    user_id: str
    transcript: Transcript
    stream: AnchorStream | None = None
    origin_ms: int = 0  # run ms at which the current stream's ms 0 was sent
    resampler: _Resampler = field(default_factory=_Resampler)
    error: str | None = None
    old_streams: list[AnchorStream] = field(default_factory=list)


class Recognition:
    def __init__(self, params: RecognizeParams, inv: Invocation, log: RunLogger, stop: StopSignal,
                 room_factory: Callable[[], Room] = open_room, events: RunEvents | None = None):
        self.params, self.inv, self.log, self.stop = params, inv, log, stop
        self.room_factory = room_factory
        self.watch = RoomWatch(stop, log, params.MaxIdleTime, params.MaxDuration,
                               activity="recognition", who="recogniser", done="recognised")
        self._speakers: dict[str, Speaker] = {}
        self._present: set[str] = set()
        self._lock = threading.Lock()
        self.events = events  # lifecycle events (EventCallback); its outbox is the run's one sender
        self._outbox = Outbox(params.Callback, log, inv.deadline - RESERVE_S,
                              sender=events.outbox if events is not None else None)
        self._bucket: CosBucket | None = None

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        p = self.params
        self.log.info("recognition starting", room=str(p.room), user_id=p.UserId, engine=p.EngineModelType,
                      hotwords=len(p.HotwordList or ()), v2=p.AsrConfig is not None)
        if p.CosConfig is not None:
            refused = self._open_cos()
            if refused is not None:
                return self._finish_without_room("cos_config", refused)
        room = self.watch.enter(self.room_factory, EnterParams(
            p.SdkAppId, p.room, p.UserId, p.UserSig.get_secret_value(), role=Role.AUDIENCE, timeout=ENTER_TIMEOUT_S,
            video_output=VideoFormat.H264, audio_output_channels=1, receive=self._subscription()))
        if room is None:
            return self._finish_without_room(self.watch.final_reason, self.watch.detail, code=self.watch.enter_code)
        self._outbox.start()
        if self.events is not None:
            self.events.emit("started", {"EngineModelType": p.EngineModelType})
        # Whatever stopped it (the loop failing too), every anchor's sentence is finished and reported.
        self.watch.run(room, self._on_event, lambda: bool(self._present))
        return self._finish()

    def _subscription(self) -> Subscription:
        """Audio only, and only of the anchors recognised (TargetUserIds, when given): what the
        room would otherwise send (pictures, the teacher's voice) costs CPU to receive and decode."""
        targets = self.params.TargetUserIds
        return Subscription(video=False, audio_from=frozenset(targets) if targets else None)

    def _on_event(self, event: Event, now: float) -> bool:
        """One event (never a stop: the recogniser stops only as the watch says)."""
        if isinstance(event, RemoteAudio):
            speaker = self._speaker_for(event.user_id)
            if speaker is not None and speaker.stream is not None and speaker.stream.error is None:
                f = event.frame
                speaker.stream.feed(speaker.resampler.convert(f.data, f.sample_rate, f.channels))
        elif isinstance(event, UserEntered):
            if event.user_id != self.params.UserId:
                self._present.add(event.user_id)
                self.log.info("anchor entered", anchor=event.user_id, recognised=self.params.recognises(event.user_id))
        elif isinstance(event, UserLeft):
            self._present.discard(event.user_id)
            speaker = self._speakers.get(event.user_id)
            if speaker is not None and speaker.stream is not None:
                speaker.stream.close()  # it finishes the sentence being spoken, in its own thread
                speaker.old_streams.append(speaker.stream)
                speaker.stream = None
            self.log.info("anchor left", anchor=event.user_id, reason=event.reason)
        elif isinstance(event, AudioAvailable):
            # A muted anchor sends nothing; its stream sends silence meanwhile (the service wants audio).
            self.log.info("anchor audio", anchor=event.user_id, available=event.available)
        return False

    def _speaker_for(self, user_id: str) -> Speaker | None:
        if not self.params.recognises(user_id):
            return None
        self._present.add(user_id)  # media proves presence even if the entry event was missed
        speaker = self._speakers.get(user_id)
        if speaker is None:
            speaker = self._speakers[user_id] = Speaker(user_id, Transcript(user_id))
        if speaker.stream is None and speaker.error is None:
            start_index = len(speaker.transcript.lines)
            speaker.origin_ms = self._run_ms()
            box: list[AnchorStream] = []
            stream = AnchorStream(user_id, self.params.asr_credentials(), self.params.asr_options(), self.log,
                                  self._on_result_for(speaker, start_index, box), self._on_error)
            box.append(stream)
            speaker.stream = stream
            stream.start()
            self.log.info("recognising anchor", anchor=user_id)
        return speaker

    def _run_ms(self) -> int:
        return int((time.monotonic() - self.watch.entered) * 1000)

    # --- what the streams hear (on their threads) ----------------------------------------------

    def _on_result_for(self, speaker: Speaker, start_index: int,
                       box: list[AnchorStream]) -> Callable[[str, Sentence], None]:
        """What one stream's results do; `box` holds that stream (its clips are cut from it)."""
        origin = speaker.origin_ms

        def on_result(user_id: str, s: Sentence) -> None:
            line = Line(start_index + s.index, origin + s.start_ms, origin + s.end_ms, s.text, s.voice_id)
            if not s.final:
                if self.params.Partial:
                    self._outbox.post(self._body(user_id, STATUS_RECOGNIZING, [line], final=False, voice_id=s.voice_id))
                return
            clip_key = None
            if self._bucket is not None:
                pcm = box[0].clip(s.start_ms, s.end_ms) if box else b""
                clip_key = self._key(user_id, f"sentence-{line.index:04d}.wav")
                line = Line(line.index, line.start_ms, line.end_ms, line.text, line.voice_id,
                            self._bucket.url(clip_key))
                self._outbox.do(functools.partial(self._upload, clip_key, wav(pcm), "audio/wav"))
            with self._lock:
                speaker.transcript.lines.append(line)
            self.log.info("sentence", anchor=user_id, index=line.index, text=line.text,
                          start_ms=line.start_ms, end_ms=line.end_ms)
            self._outbox.post(self._body(user_id, STATUS_RECOGNIZING, [line], voice_id=s.voice_id))

        return on_result

    def _on_error(self, user_id: str, e: AsrError) -> None:
        speaker = self._speakers.get(user_id)
        if speaker is not None:
            speaker.error = e.explain()

    # --- outputs -------------------------------------------------------------------------------

    def _body(self, user_id: str, status: str, lines: list[Line], final: bool = True,
              voice_id: str = "") -> dict[str, Any]:
        """A sentence's callback: the template's keys, then ours (Final, the recognition's VoiceId)."""
        p = self.params
        return {"RequestID": self.inv.request_id, "SdkAppId": p.SdkAppId,
                "RoomId": p.RoomId if p.RoomId is not None else 0, "StrRoomId": p.StrRoomId or "",
                "UserId": user_id, "Status": status, "Result": [line.result() for line in lines],
                "Final": final, "VoiceId": voice_id}

    def _open_cos(self) -> str | None:
        cos = self.params.CosConfig
        assert cos is not None
        sid = cos.SecretId.get_secret_value() if cos.SecretId else None
        skey = cos.SecretKey.get_secret_value() if cos.SecretKey else None
        try:
            check_access(bucket=cos.Bucket, region=cos.Region, key_prefix=normalize_prefix(cos.Path), secret_id=sid, secret_key=skey,
                         deadline=self.inv.deadline - RESERVE_S, log=self.log)
            policy = RetryPolicy(tries=4, backoff=0.5, max_backoff=8.0, deadline=self.inv.deadline - RESERVE_S)
            self._bucket = CosBucket.open(cos.Bucket, cos.Region, sid, skey, policy=policy, log=self.log)
        except UploadError as e:
            return e.detail
        return None

    def _key(self, user_id: str, name: str) -> str:
        p, cos = self.params, self.params.CosConfig
        assert cos is not None
        room = _UNSAFE.sub("_", str(p.room.id))
        prefix = normalize_prefix(cos.Path)
        return f"{prefix}{p.SdkAppId}/{room}/{_UNSAFE.sub('_', user_id)}/{_UNSAFE.sub('_', self.inv.request_id)}/{name}"

    def _upload(self, key: str, data: bytes, content_type: str) -> bool:
        assert self._bucket is not None
        try:
            self._bucket.put_bytes(key, data, content_type)
            return True
        except UploadError as e:
            self.log.error("upload failed", key=key, error=e.detail)
            return False

    # --- the end -------------------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        streams = []
        for speaker in self._speakers.values():
            if speaker.stream is not None:
                speaker.old_streams.append(speaker.stream)
                speaker.stream = None
            streams += speaker.old_streams
        for stream in streams:
            stream.close()
        for stream in streams:
            if not stream.join(STREAM_JOIN_S):
                self.log.warning("an anchor's last sentence was not answered in time", anchor=stream.anchor)
        anchors = [self._anchor_entry(s) for s in self._speakers.values()]
        self._outbox.close()
        if not self._outbox.join(OUTBOX_JOIN_S):
            self.log.warning("sentence callbacks still pending at the end")
        result = self._result(anchors)
        self.log.info("recognition stopped", reason=self.watch.reason, anchors=len(anchors),
                      sentences=sum(len(a["Sentences"]) for a in anchors), status=result["status"])
        self._callback(result)
        return result

    def _anchor_entry(self, speaker: Speaker) -> dict[str, Any]:
        with self._lock:
            lines = list(speaker.transcript.lines)
        entry: dict[str, Any] = {"UserId": speaker.user_id, "Sentences": [line.result() for line in lines],
                                 "Status": 0 if speaker.error and not lines else 1,
                                 "Message": speaker.error or "success"}
        if self._bucket is not None:
            files = {}
            for name, data, kind in (("transcript.json", speaker.transcript.to_json(), "application/json"),
                                     ("transcript.vtt", speaker.transcript.to_webvtt(), "text/vtt")):
                key = self._key(speaker.user_id, name)
                if self._upload(key, data, kind):
                    files[name] = self._bucket.url(key)
            entry["Transcript"] = {"Json": files.get("transcript.json", ""), "WebVtt": files.get("transcript.vtt", "")}
            entry["Clips"] = [line.clip for line in lines if line.clip]
        return entry

    def _result(self, anchors: list[dict[str, Any]], status: str | None = None) -> dict[str, Any]:
        p = self.params
        reason, message = self.watch.final_reason, self.watch.message()
        refused = [a for a in anchors if a["Status"] == 0]
        if status is None:
            # Failed only when nothing could be recognised: every anchor the service refused.
            status = "failed" if refused and len(refused) == len(anchors) else "finished"
            if status == "failed":
                message = f"{message}; speech recognition refused every anchor: {refused[0]['Message']}"
        results = [dict(r, UserId=a["UserId"]) for a in anchors for r in a["Sentences"]]
        return {"RequestID": self.inv.request_id, "SdkAppId": p.SdkAppId,
                "RoomId": p.RoomId if p.RoomId is not None else 0, "StrRoomId": p.StrRoomId or "",
                "UserId": p.UserId, "Status": STATUS_FINISHED, "Result": results, "Anchors": anchors,
                "status": status, "Reason": reason, "Message": message, "RequestId": self.inv.request_id}

    def _finish_without_room(self, reason: str, detail: str, code: int | None = None) -> dict[str, Any]:
        self.watch.end(reason, detail)
        self.log.error("recognition did not start", reason=reason, detail=detail, code=code)
        result = self._result([], status="failed")
        if code is not None:
            result["Code"] = code
        self._callback(result)
        return result

    def _callback(self, result: dict[str, Any]) -> None:
        if not self.params.Callback:
            return
        # The id the POST carries, kept in the result returned too (and in the run's end event).
        result["CallbackId"] = with_id(result)["CallbackId"]
        if not self._outbox.post_result(result, self.inv.deadline - 1.0):
            self.log.error("result callback not delivered; the result is still returned")


def recognize(params: RecognizeParams, inv: Invocation, log: RunLogger) -> dict[str, Any]:
    """The recognize_stream work: one recognition under SIGTERM and the time limit."""
    stop = StopSignal(deadline=inv.deadline)
    who = Who(params.SdkAppId, params.RoomId if params.RoomId is not None else params.StrRoomId, params.UserId)
    with stop:
        return run_with_events(params, inv, log, function="recognize_stream", who=who,
                               store=lambda: state_bucket_keys(log),
                               work=lambda events: Recognition(params, inv, log, stop, events=events).run())
