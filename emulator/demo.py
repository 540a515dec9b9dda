"""`python -m emulator demo`: the whole story on the local cloud, with the clients a user would use.

1. bring the cloud up (or use one already running: --use-running STATE_DIR)
2. make a 9 s test clip (640x360 test pattern + tone, H.264 + AAC) with PyAV
3. POST /push_stream (redis=true) and POST /record_stream (Mode "02", Callback to a receiver here)
4. show both runs' progress from their logs for a few seconds
5. stop the push with ScfClient.TerminateAsyncEvent(GraceShutdown=True) and the recording with
   TrtcClient.RemoveUser; receive the callback; download the MP4 from COS; check that it decodes
6. push the same clip again: it resumes from the checkpoint the first push left in Redis
7. print where everything is
8. the AI class (emulator/classroom.py): a lesson playlist is pushed, a student answers aloud,
   recognize_stream posts the sentence to a decision endpoint here, which switches the push
   (push_control, with its controlToken) to the right-answer or the try-again segment; a viewer in
   the room sees it. A wrong answer, then the right one. (`--class`: the class alone.)
9. stop the cloud if the demo started it

Exit code 0 on success; 1 with the reason (and the failing run's log tail) otherwise.
"""
from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import av
import requests

from emulator import classroom, media
from emulator.callbacks import CallbackReceiver
from emulator.clients import cos_client, scf_client, trtc_client
from emulator.cloud import CloudConfig, LocalCloud, read_info
from emulator.trtc import usersig
from shared.worker import spawn

CLIP_SECONDS = 9.0
CLIP_SIZE = (640, 360)
CLIP_FPS = 25
RUN_BEFORE_STOP_S = 5.0
PUSHER, RECORDER = "demo-pusher", "demo-recorder"
DEADLINE_S = 110.0  # the demo gives up, loudly, rather than run on
CLASS_ANSWERS = (("i think it is a square", "try-again"), ("it is a triangle", "right"))


class DemoError(Exception):
    """Why the demo failed, in a sentence a person can act on."""


# --- output ----------------------------------------------------------------------------------------

class Out:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, text: str = "") -> None:
        stamp = f"[{time.monotonic() - self.t0:5.1f}s] " if text else ""
        print(f"{stamp}{text}", flush=True)

    def check_deadline(self) -> None:
        if time.monotonic() - self.t0 > DEADLINE_S:
            raise DemoError(f"the demo ran past its {DEADLINE_S:.0f} s budget")


# --- the clip ----------------------------------------------------------------------------------------

def make_clip(path: Path) -> Path:
    """FFmpeg's testsrc2 pattern (with a running counter) and a tone, H.264 + AAC stereo in MP4."""
    w, h = CLIP_SIZE
    return media.make_clip(path, duration=CLIP_SECONDS, width=w, height=h, fps=CLIP_FPS, gop=CLIP_FPS)


def describe_media(path: Path) -> media.Probe:
    """Codecs, duration and the frames that actually decode (every frame is decoded)."""
    try:
        return media.probe(path)
    except av.error.FFmpegError as e:
        raise DemoError(f"{path} does not decode: {e}") from None


# --- the story -------------------------------------------------------------------------------------

class Demo:
    def __init__(self, info: dict[str, Any], out: Out, owns_cloud: bool = True):
        self.info = info
        self.owns_cloud = owns_cloud
        self.out = out
        self.gateway = info["gateway"]
        self.scf = scf_client(info, region=info["cos"]["region"])
        self.trtc = trtc_client(info, region=info["cos"]["region"])
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.dir = Path(info["stateDir"]) / "demo" / stamp
        self.room_id = random.randint(100_000, 999_999)
        self.cos_prefix = f"demo/{stamp}/"

    # --- helpers ---

    def post(self, function: str, params: dict[str, Any]) -> str:
        try:
            r = requests.post(f"{self.gateway}/{function}", json=params, timeout=10)
        except requests.RequestException as e:
            raise DemoError(f"POST {self.gateway}/{function} failed: {e}") from None
        if r.status_code != 200 or "x-scf-reqid" not in r.headers:
            raise DemoError(f"POST /{function} answered {r.status_code}: {r.text[:300]}")
        return r.headers["x-scf-reqid"]

    def run(self, reqid: str) -> dict[str, Any]:
        r = requests.get(f"{self.gateway}/_runs/{reqid}", timeout=10)
        r.raise_for_status()
        return r.json()

    def log_lines(self, reqid: str) -> list[dict[str, Any]]:
        text = requests.get(f"{self.gateway}/_runs/{reqid}/log", timeout=10).text
        lines = []
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    pass
        return lines

    def log_tail(self, reqid: str, n: int = 12) -> str:
        text = requests.get(f"{self.gateway}/_runs/{reqid}/log", timeout=10).text
        return "\n".join("    " + line for line in text.splitlines()[-n:])

    def checkpoint(self, clip: Path) -> dict[str, str]:
        """The push's record in Redis, as push_stream keeps it (shared.push.checkpoint)."""
        import redis

        from shared.push.checkpoint import checkpoint_key
        from shared.room.base import RoomRef

        r = redis.Redis(host=self.info["redis"]["host"], port=self.info["redis"]["port"],
                        password=self.info["redis"].get("password"), socket_timeout=5, decode_responses=True)
        try:
            # decode_responses=True: keys and values are str (redis' stubs cannot say so)
            return cast("dict[str, str]", r.hgetall(checkpoint_key(self.info["sdkAppId"], RoomRef(self.room_id), str(clip))))
        finally:
            r.close()

    def recorded_bytes(self) -> int:
        files = Path(self.info["stateDir"]) / "files"
        return sum(p.stat().st_size for p in files.rglob("*") if p.is_file()) if files.is_dir() else 0

    def status(self, reqid: str) -> str:
        from tencentcloud.scf.v20180416 import models

        req = models.GetAsyncEventStatusRequest()
        req.InvokeRequestId = reqid
        return self.scf.GetAsyncEventStatus(req).Result.Status

    def wait_ended(self, reqid: str, what: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.out.check_deadline()
            if self.status(reqid) != "RUNNING":
                return self.run(reqid)
            time.sleep(0.2)
        raise DemoError(f"{what} ({reqid}) did not end within {timeout:.0f} s; its log ends with:\n"
                        f"{self.log_tail(reqid)}")

    def ensure_running(self, reqid: str, what: str) -> None:
        run = self.run(reqid)
        if run["status"] != "RUNNING":
            raise DemoError(f"{what} ({reqid}) ended early as {run['status']}: "
                            f"{json.dumps(run.get('result') or run.get('error'))[:400]}\n{self.log_tail(reqid)}")

    def wait_for_log(self, reqid: str, what: str, predicate: Callable[[dict[str, Any]], bool],
                     timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines(reqid):
                if predicate(line):
                    return line
            self.ensure_running(reqid, what)
            time.sleep(0.2)
        raise DemoError(f"{what} ({reqid}) did not get going within {timeout:.0f} s:\n{self.log_tail(reqid)}")

    # --- the steps ---

    def push_params(self, clip: Path) -> dict[str, Any]:
        return {"videoSrc": str(clip), "sdkAppId": self.info["sdkAppId"], "roomId": self.room_id,
                "userId": PUSHER, "userSig": usersig(PUSHER, self.info["sdkAppId"], self.info["sdkSecretKey"]),
                "redis": True, "redisHost": self.info["redis"]["host"], "redisPort": self.info["redis"]["port"]}

    def main(self, only_class: bool = False) -> None:
        self._intro()
        if not only_class:
            self._push_and_record()
        self.ai_class()

    def _intro(self) -> None:
        say = self.out.say
        info = self.info
        say(f"local cloud: gateway {info['gateway']}, Cloud API {info['cloudApiEndpoint']}, "
            f"COS {info['cos']['ip']}:{info['cos']['port']} ({info['cos']['bucket']}), "
            f"Redis {info['redis']['host']}:{info['redis']['port']}, rooms {info['roomAddress']}")
        if info.get("console"):
            say(f"console: {info['console']} (open it to see the runs, the room and the recording as the demo goes)")
        missing = {"push_stream", "record_stream", "recognize_stream", "push_control"} - set(info.get("functions", []))
        if missing:
            raise DemoError(f"the cloud does not serve {', '.join(sorted(missing))} "
                            "(functions/<name>/index.py is missing)")

    def _push_and_record(self) -> None:
        say = self.out.say
        clip = make_clip(self.dir / "clip.mp4")
        clip_info = describe_media(clip)
        say(f"made the test clip {clip}: {_streams(clip_info)}, {clip_info.duration_s:.1f} s")

        receiver = CallbackReceiver(path="/recording-done").start()
        try:
            self._story(clip, clip_info, receiver)
        finally:
            receiver.stop()

    # Complexity (~25) stays: a linear script of the demo's steps; each `if` is one optional step or check.
    def _story(self, clip: Path, clip_info: media.Probe, receiver: CallbackReceiver) -> None:
        say = self.out.say
        info = self.info
        push_id = self.post("push_stream", self.push_params(clip))
        say(f"POST /push_stream -> Async run task submitted, x-scf-reqid {push_id} (room {self.room_id}, redis on)")
        record_params = {
            "SdkAppId": info["sdkAppId"], "RoomId": self.room_id, "UserId": RECORDER,
            "UserSig": usersig(RECORDER, info["sdkAppId"], info["sdkSecretKey"]),
            "CosConfig": {"Region": info["cos"]["region"], "Bucket": info["cos"]["bucket"], "Path": self.cos_prefix},
            "Callback": receiver.url, "Mode": "02",
        }
        record_id = self.post("record_stream", record_params)
        say(f"POST /record_stream -> Async run task submitted, x-scf-reqid {record_id} (Mode 02, callback {receiver.url})")

        self.wait_for_log(push_id, "the push", lambda line: line.get("msg") in ("entered the room", "progress"), 30)
        self.wait_for_log(record_id, "the recording", lambda line: line.get("msg") == "recording anchor", 30)
        say("both are in the room: the push sends the clip, the recorder records the pusher")

        started = time.monotonic()
        while time.monotonic() - started < RUN_BEFORE_STOP_S:
            self.out.check_deadline()
            time.sleep(1.0)
            self.ensure_running(push_id, "the push")
            self.ensure_running(record_id, "the recording")
            # The push's checkpoint in Redis (written every second) and the recorder's growing file.
            cp = self.checkpoint(clip)
            say(f"  push at {float(cp.get('position') or 0):4.1f} s of {clip_info.duration_s:.1f} s "
                f"(Redis {cp.get('status') or 'no record yet'}) | recording: {self.recorded_bytes() // 1024} KB on disk")

        # Stop the push gracefully: SIGTERM, it writes its last checkpoint and leaves the room.
        from tencentcloud.scf.v20180416 import models as scf_models
        from tencentcloud.trtc.v20190722 import models as trtc_models

        req = scf_models.TerminateAsyncEventRequest()
        req.FunctionName, req.InvokeRequestId, req.GraceShutdown = "push_stream", push_id, True
        self.scf.TerminateAsyncEvent(req)
        say("ScfClient.TerminateAsyncEvent(push_stream, GraceShutdown=True) sent")
        push_run = self.wait_ended(push_id, "the push", 20)
        push_result = _body(push_run.get("result"))
        if push_run["status"] != "ABORTED" or push_result.get("status") != "terminated":
            raise DemoError(f"the push ended as {push_run['status']} with {json.dumps(push_result)[:300]}")
        stopped_at = float(push_result.get("position") or 0)
        say(f"push ended: {push_run['status']} (terminated), stopped at {stopped_at:.2f} s, "
            f"checkpoint {push_result.get('checkpoint')}")

        req2 = trtc_models.RemoveUserRequest()
        req2.SdkAppId, req2.RoomId, req2.UserIds = info["sdkAppId"], self.room_id, [RECORDER]
        self.trtc.RemoveUser(req2)
        say(f"TrtcClient.RemoveUser(room {self.room_id}, [{RECORDER}]) sent; waiting for the callback")
        try:
            callback = receiver.wait_for(1, timeout=40)[0].json
        except TimeoutError:
            raise DemoError(f"no callback within 40 s; the recording's log ends with:\n{self.log_tail(record_id)}") from None
        record_run = self.wait_ended(record_id, "the recording", 20)
        say(f"callback received: {json.dumps(_short(callback))}")

        files = [f for f in callback.get("Files", []) if f.get("UserId") == PUSHER]
        if not files or any(f.get("Status") != 1 for f in files):
            raise DemoError(f"the recording did not report an uploaded file for {PUSHER}: {json.dumps(callback)[:500]}")
        recordings = []
        cos = cos_client(info, retry=1)
        for f in files:
            from shared.cos.urls import parse_cos_url

            bucket, _, key = parse_cos_url(f["RecordFile"])
            local = self.dir / Path(key).name
            cos.download_file(Bucket=bucket, Key=key, DestFilePath=str(local))
            probed = describe_media(local)
            codecs = {s["type"]: s["codec"] for s in probed.streams}
            if codecs.get("video") != "h264" or codecs.get("audio") != "aac" or probed.duration_s < 1.0:
                raise DemoError(f"{local} is not the expected H.264 + AAC recording: {probed}")
            if not probed.video_frames or not probed.audio_frames:
                raise DemoError(f"{local} has no decodable frames: {probed}")
            recordings.append((f, key, local, probed))

        # The second push of the same clip resumes where the first one stopped.
        push2_id = self.post("push_stream", self.push_params(clip))
        say(f"POST /push_stream again (same clip, same room) -> x-scf-reqid {push2_id}")
        found = self.wait_for_log(push2_id, "the second push",
                                  lambda line: line.get("msg") in ("checkpoint found", "entered the room"), 30)
        if found.get("msg") != "checkpoint found":
            raise DemoError(f"the second push found no checkpoint in Redis:\n{self.log_tail(push2_id)}")
        say(f"second push found the checkpoint {found.get('key')} at {float(found.get('position', 0)):.2f} s "
            f"(left by {found.get('previousRequestId')})")
        push2_run = self.wait_ended(push2_id, "the second push", CLIP_SECONDS + 20)
        push2 = _body(push2_run.get("result"))
        resumed = push2.get("resumedFrom")
        if push2_run["status"] != "FINISHED" or resumed is None:
            raise DemoError(f"the second push ended as {push2_run['status']} without resuming: {json.dumps(push2)[:300]}")
        if abs(float(resumed) - stopped_at) > 1.5:
            raise DemoError(f"the second push resumed from {resumed} s, not where the first stopped ({stopped_at} s)")
        left = "cleared" if not self.checkpoint(clip) else "still there"
        say(f"second push resumed from {float(resumed):.2f} s and ran to the end ({push2.get('reason')}); "
            f"its Redis record is {left}")

        self._summary(clip, clip_info, push_id, push_result, record_id, record_run, recordings, push2_id, push2)

    def ai_class(self) -> None:
        """The AI class in this cloud: a wrong answer, then the right one, each seen by the viewer."""
        say = self.out.say
        say("")
        say("=== the AI class: question, the student answers aloud, feedback chosen from what was heard ===")
        try:
            lesson = classroom.make_lesson(self.dir / "class", filler_s=15.0)
        except av.error.FFmpegError as e:
            raise DemoError(f"the lesson's clips could not be made: {e}") from None
        say(f"made the lesson's clips in {self.dir / 'class'}: " + ", ".join(
            f"{s.name} (gray {s.level}, {s.tone_hz} Hz)" for s in lesson.segments))
        room = classroom.AiClass(self.info, lesson, log=say)
        try:
            room.start()
            say(f"the student '{room.STUDENT}' is in room {room.room.id}; the question's expected answers: "
                f"{', '.join(lesson.answers)} (right: {lesson.right_answer})")
            for i, (text, expected) in enumerate(CLASS_ANSWERS):
                self.out.check_deadline()
                if i:
                    room.back_to_filler()
                say(f"the student says: \"{text}\"")
                got = room.answer(text)
                say(f"  recognize_stream heard \"{got.heard}\" {got.callback_ms:.0f} ms after the student stopped; "
                    f"the decision switched the push to '{got.feedback}' (push_control answered at "
                    f"{got.switched_ms:.0f} ms); the viewer saw '{got.seen}' at {got.feedback_ms:.0f} ms")
                if got.feedback != expected or got.seen != expected:
                    raise DemoError(f"the answer {text!r} (heard {got.heard!r}) led to {got.feedback!r}, the viewer saw "
                                    f"{got.seen!r}; expected {expected!r}")
        except classroom.SpeechUnavailable as e:
            raise DemoError(str(e)) from None
        except classroom.ClassError as e:
            raise DemoError(f"the class: {e}") from None
        finally:
            result = _body(room.close())
        say(f"class over: the push stopped (push_control stop), recognize_stream ended ({result.get('Reason')}) "
            f"with {len(result.get('Result') or [])} sentence(s)")

    def _summary(self, clip: Path, clip_info: media.Probe, push_id: str, push: dict[str, Any], record_id: str,
                 record_run: dict[str, Any], recordings: list[tuple[dict[str, Any], str, Path, media.Probe]],
                 push2_id: str, push2: dict[str, Any]) -> None:
        runs_dir = Path(self.info["runsDir"])
        lines = [
            "",
            "=== demo summary ===",
            f"clip        {clip}",
            f"            {_streams(clip_info)}, {clip_info.duration_s:.2f} s",
            f"push #1     {push_id}: terminated at {push.get('position', 0):.2f} s, "
            f"{(push.get('framesSent') or {}).get('video', 0)} video / {(push.get('framesSent') or {}).get('audio', 0)} "
            f"audio frames sent",
            f"recording   {record_id}: {record_run['status']}, {_body(record_run.get('result')).get('Message', '')}",
        ]
        for f, key, local, probed in recordings:
            lines += [
                f"  file      {f['RecordFile']}",
                f"            COS bucket {self.info['cos']['bucket']}, key {key}",
                f"            downloaded to {local}",
                f"            {_streams(probed)}, {probed.duration_s:.2f} s, decoded "
                f"{probed.video_frames} video + {probed.audio_frames} audio frames",
            ]
        lines += [
            f"push #2     {push2_id}: resumed from {float(push2['resumedFrom']):.2f} s, finished at "
            f"{push2.get('position', 0):.2f} s ({push2.get('reason')})",
            f"run logs    {runs_dir}/<request id>/log"
            + ("" if self.owns_cloud else f"  (also GET {self.gateway}/_runs/<request id>/log)"),
            f"state dir   {self.info['stateDir']}"
            + ("  (kept after the demo; remove it when done)" if self.owns_cloud else ""),
        ]
        print("\n".join(lines), flush=True)


def _body(result: Any) -> dict[str, Any]:
    """A function's result, out of the API Gateway response it returned for a gateway event."""
    if isinstance(result, dict) and "statusCode" in result and isinstance(result.get("body"), str):
        try:
            body = json.loads(result["body"])
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    return result if isinstance(result, dict) else {}


def _streams(probed: media.Probe) -> str:
    parts = []
    for s in probed.streams:
        if s["type"] == "video":
            parts.append(f"{s['codec']} {s['width']}x{s['height']}")
        else:
            parts.append(f"{s['codec']} {s['rate']} Hz {s['channels']} ch")
    return " + ".join(parts)


def _short(callback: dict[str, Any]) -> dict[str, Any]:
    return {k: callback.get(k) for k in ("SdkAppId", "RoomId", "UserId", "Reason")} | {
        "Files": [{k: f.get(k) for k in ("UserId", "Status", "Duration")} for f in callback.get("Files", [])]}


@contextlib.contextmanager
def _cloud(use_running: str | None, state_dir: Path | None, out: Out, runtime: str = "code",
           image_dir: Path | None = None) -> Iterator[dict[str, Any]]:
    if use_running:
        try:
            info = read_info(use_running)
        except FileNotFoundError as e:
            raise DemoError(str(e)) from None
        yield info
        return
    directory = state_dir or Path(tempfile.mkdtemp(prefix="trtc-demo-"))
    out.say(f"starting the local cloud (state in {directory})")
    try:
        config = CloudConfig(state_dir=directory, shutdown_grace_s=5.0, runtime=runtime)
        if image_dir is not None:
            config.image_dir = image_dir
        cloud = LocalCloud(config).start()
    except Exception as e:
        raise DemoError(f"the local cloud did not start: {e}") from None
    if cloud.asr is not None:
        # The recogniser's model loads while the first story runs, not inside the class's first answer.
        spawn(cloud.asr.backend.pool.warm, "asr-warm")
    try:
        yield cloud.info()
    finally:
        out.say("stopping the local cloud")
        cloud.stop()


def run_demo(use_running: str | None = None, state_dir: Path | None = None, runtime: str = "code",
             image_dir: Path | None = None, only_class: bool = False) -> int:
    out = Out()
    # The cloud's own INFO lines would drown the story; its warnings and errors still show.
    for name in ("emulator", "qcloud_cos", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with _cloud(use_running, state_dir, out, runtime, image_dir) as info:
            Demo(info, out, owns_cloud=not use_running).main(only_class=only_class)
    except DemoError as e:
        print(f"\ndemo FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ndemo interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a client error (SDK, HTTP) is a failure with its message, not a traceback
        print(f"\ndemo FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    print("demo OK", flush=True)
    return 0
