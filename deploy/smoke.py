"""`python -m deploy.smoke` (`./dev smoke`): a deployed stack checks itself, with the clients a user
has (HTTP to the API Gateway, the Cloud API through tencentcloud-sdk-python, COS through
cos-python-sdk-v5, UserSigs from tls-sig-api-v2), against whatever stack its parameters name —
Tencent Cloud after `sls deploy`, or `python -m emulator up` (CI).

    python -m deploy.smoke --gateway URL --scf-api URL --trtc-api URL --secret-id ID --secret-key KEY \\
        --sdk-app-id N --sdk-secret-key KEY --cos-bucket B --cos-region R --cos-endpoint URL \\
        --redis-host H --redis-port P [--redis-password PW] --source URL \\
        --callback-listen HOST:PORT [--callback-url URL] [--steps a,b] [--run-seconds S] ...

The seeds' flows, one step each, in order:

    push_resume     a push with Redis, stopped by TerminateAsyncEvent (GraceShutdown), pushed again:
                    the second push starts where the first stopped (push_control's status)
    record_remove   a recording of a push, stopped by RemoveUser: the callback names the file, which
                    is downloaded from COS and decoded (streams, duration)
    push_control    a push switched to another source by push_control, still in the room after it
    record_recover  a recording killed (TerminateAsyncEvent without GraceShutdown): the project's
                    recovery finishes it — its callback says "recovered" and its file decodes

A table says what held. A step that fails is reported with the request id it was about and the
error, and the steps after it still run; the exit code is 1 when any failed, 2 for bad parameters.
Every endpoint is a parameter: nothing here defaults to an address. `--from-info FILE` reads the
JSON line `python -m emulator up` prints (its cloud.json) for what it names; flags given win.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import unquote, urlsplit

import requests

from shared.worker import Worker, spawn

STEPS = ("push_resume", "record_remove", "push_control", "record_recover")
PUSHER, RECORDER = "smoke-pusher", "smoke-recorder"
SOURCE_SCHEMES = ("http", "https", "rtmp", "rtmps")
POLL_S = 0.25
# How far the second push may start before where the first one was last seen (the first one's own
# last frames after that look are ahead of it, never behind).
RESUME_SLACK_S = 0.5
RECOVER_SEGMENT_S = 2  # record_recover's SegmentDuration


class StepFailed(Exception):
    """A step that did not hold: what went wrong, and the request id it concerns."""

    def __init__(self, message: str, request_id: str | None = None):
        super().__init__(message)
        self.request_id = request_id


# --- parameters ------------------------------------------------------------------------------------

@dataclass
class Params:
    gateway: str
    scf_api: str
    trtc_api: str
    secret_id: str
    secret_key: str
    region: str
    sdk_app_id: int
    sdk_secret_key: str
    cos_bucket: str
    cos_region: str
    cos_endpoint: str
    cos_secret_id: str
    cos_secret_key: str
    redis_host: str
    redis_port: int
    redis_password: str | None
    source: str
    switch_source: str
    callback_listen: tuple[str, int]
    callback_url: str | None
    steps: tuple[str, ...]
    run_seconds: float
    step_timeout: float
    recovery_timeout: float
    cos_path: str


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise argparse.ArgumentTypeError(f"must be a {' or '.join(schemes)} URL with a host (got {text!r})")
        return text.rstrip("/")
    return parse


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be a port 1..65535 (got {text!r})")
    return int(text)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT (PORT 0 for any free one; got {text!r})")
    return host.strip("[]"), int(port)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0 or int(text) >= 1 << 32:
        raise argparse.ArgumentTypeError(f"must be a positive 32-bit integer (got {text!r})")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be seconds in (0, 3600] (got {text!r})")
    return value


def _steps(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in STEPS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of {', '.join(STEPS)} (got {text!r})")
    return chosen


def _bucket(text: str) -> str:
    name, _, appid = text.rpartition("-")
    if not name or not appid.isdigit():
        raise argparse.ArgumentTypeError(f"must be BucketName-APPID, like recordings-1250000000 (got {text!r})")
    return text


# (flag, type, help, key in `up`'s JSON line or a function of it; None: not there)
_FROM_INFO: dict[str, Callable[[dict[str, Any]], Any]] = {
    "gateway": lambda i: i["gateway"],
    "scf_api": lambda i: i.get("cloudApiUrl") or f"http://{i['cloudApiEndpoint']}",
    "trtc_api": lambda i: i.get("cloudApiUrl") or f"http://{i['cloudApiEndpoint']}",
    "secret_id": lambda i: i["secretId"],
    "secret_key": lambda i: i["secretKey"],
    "region": lambda i: i["cos"]["region"],
    "sdk_app_id": lambda i: str(i["sdkAppId"]),
    "sdk_secret_key": lambda i: i["sdkSecretKey"],
    "cos_bucket": lambda i: i["cos"]["bucket"],
    "cos_region": lambda i: i["cos"]["region"],
    "cos_endpoint": lambda i: f"http://{i['cos']['ip']}:{i['cos']['port']}",
    "redis_host": lambda i: i["redis"]["host"],
    "redis_port": lambda i: str(i["redis"]["port"]),
    "redis_password": lambda i: i["redis"].get("password"),
}

# Secrets may come from the environment instead of the command line (which `ps` shows).
_ENV = {"secret_id": "TENCENTCLOUD_SECRET_ID", "secret_key": "TENCENTCLOUD_SECRET_KEY",
        "sdk_secret_key": "SMOKE_SDK_SECRET_KEY", "cos_secret_id": "SMOKE_COS_SECRET_ID",
        "cos_secret_key": "SMOKE_COS_SECRET_KEY", "redis_password": "SMOKE_REDIS_PASSWORD"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deploy.smoke", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--from-info", metavar="FILE", help="the JSON line of `python -m emulator up` (its <state>/cloud.json): "
                                            "fills what it names; flags given win")
    add("--gateway", type=_url(("http", "https")), help="the API Gateway's URL (POST {gateway}/push_stream)")
    add("--scf-api", type=_url(("http", "https")), help="SCF's Cloud API endpoint, e.g. https://scf.tencentcloudapi.com")
    add("--trtc-api", type=_url(("http", "https")), help="TRTC's Cloud API endpoint, e.g. https://trtc.tencentcloudapi.com")
    add("--secret-id", help="Cloud API SecretId (or TENCENTCLOUD_SECRET_ID)")
    add("--secret-key", help="Cloud API SecretKey (or TENCENTCLOUD_SECRET_KEY)")
    add("--region", help="the functions' region, e.g. ap-guangzhou")
    add("--sdk-app-id", type=_positive_int, help="the TRTC application's SdkAppId")
    add("--sdk-secret-key", help="the TRTC application's key, to sign UserSigs (or SMOKE_SDK_SECRET_KEY)")
    add("--cos-bucket", type=_bucket, help="the bucket recordings go to (BucketName-APPID)")
    add("--cos-region", help="the bucket's region")
    add("--cos-endpoint", type=_url(("http", "https")),
        help="COS's endpoint: https://cos.<region>.myqcloud.com, or http://IP:PORT of a local COS")
    add("--cos-secret-id", help="keys to read the bucket (or SMOKE_COS_SECRET_ID; default: the Cloud API keys)")
    add("--cos-secret-key", help="(or SMOKE_COS_SECRET_KEY; default: the Cloud API keys)")
    add("--redis-host", help="the Redis the functions reach (redisHost)")
    add("--redis-port", type=_port, help="its port (redisPort)")
    add("--redis-password", help="its password, when it has one (or SMOKE_REDIS_PASSWORD)")
    add("--source", type=_url(SOURCE_SCHEMES), help="a sample source the functions can read (videoSrc), "
                                                    "at least run-seconds + 10 s long")
    add("--switch-source", type=_url(SOURCE_SCHEMES), help="what push_control switches to (default: --source)")
    add("--callback-listen", type=_listen, help="HOST:PORT where this tool receives the recordings' callbacks")
    add("--callback-url", type=_url(("http", "https")),
        help="the URL the functions POST callbacks to (default: http://HOST:PORT of --callback-listen); "
             "behind NAT or a tunnel, the public URL that reaches it")
    add("--steps", type=_steps, default=STEPS, help=f"which steps, comma-separated (default: {','.join(STEPS)})")
    add("--run-seconds", type=_seconds, default=8.0, help="how long a push or recording runs before it is stopped")
    add("--step-timeout", type=_seconds, default=60.0, help="how long any one wait may take")
    add("--recovery-timeout", type=_seconds, default=180.0,
        help="how long record_recover waits for the recovery's callback (the timer runs every minute on SCF)")
    add("--cos-path", default="smoke/", help="the COS folder the recordings go to (default smoke/)")
    return p


REQUIRED = ("gateway", "scf_api", "trtc_api", "secret_id", "secret_key", "region", "sdk_app_id", "sdk_secret_key",
            "cos_bucket", "cos_region", "cos_endpoint", "redis_host", "redis_port", "source", "callback_listen")


def parse_args(argv: Sequence[str] | None = None) -> Params:
    """The parameters, or exit 2 with a message naming every one missing or malformed."""
    p = parser()
    args = p.parse_args(argv)
    values = vars(args)
    for name, var in _ENV.items():
        if values.get(name) is None and os.environ.get(var):
            values[name] = os.environ[var]
    if args.from_info:
        try:
            info = json.loads(Path(args.from_info).read_text("utf-8"))
        except (OSError, ValueError) as e:
            p.error(f"argument --from-info: cannot read {args.from_info}: {e}")
        for name, pick in _FROM_INFO.items():
            if values.get(name) is None:
                try:
                    raw = pick(info)
                except (KeyError, TypeError):
                    continue
                action = next(a for a in p._actions if a.dest == name)
                values[name] = raw if raw is None or action.type is None else action.type(raw)  # type: ignore[operator]  # the stub allows a FileType here
    missing = [f"--{n.replace('_', '-')}" for n in REQUIRED if values.get(n) in (None, "")]
    if missing:
        p.error(f"missing parameter{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    return Params(
        gateway=values["gateway"], scf_api=values["scf_api"], trtc_api=values["trtc_api"],
        secret_id=values["secret_id"], secret_key=values["secret_key"], region=values["region"],
        sdk_app_id=values["sdk_app_id"], sdk_secret_key=values["sdk_secret_key"], cos_bucket=values["cos_bucket"],
        cos_region=values["cos_region"], cos_endpoint=values["cos_endpoint"],
        cos_secret_id=values["cos_secret_id"] or values["secret_id"],
        cos_secret_key=values["cos_secret_key"] or values["secret_key"],
        redis_host=values["redis_host"], redis_port=values["redis_port"], redis_password=values["redis_password"],
        source=values["source"], switch_source=values["switch_source"] or values["source"],
        callback_listen=values["callback_listen"], callback_url=values["callback_url"], steps=values["steps"],
        run_seconds=values["run_seconds"], step_timeout=values["step_timeout"],
        recovery_timeout=values["recovery_timeout"], cos_path=values["cos_path"].strip("/") + "/")


# --- the callback receiver -------------------------------------------------------------------------

class Receiver:
    """Records every POST by path, answers 200; `wait(path, timeout)` gives the first JSON body there."""

    def __init__(self, host: str, port: int):
        received: dict[str, list[Any]] = {}
        self.received = received
        cond = self._cond = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    value: Any = json.loads(body)
                except ValueError:
                    value = body.decode("utf-8", "replace")
                with cond:
                    received.setdefault(self.path, []).append(value)
                    cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: Worker | None = None

    @property
    def address(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Receiver":
        self._thread = spawn(lambda: self._server.serve_forever(0.1), "smoke-callbacks")
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def wait(self, path: str, timeout: float, accept: Callable[[Any], bool] = lambda _: True) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for body in self.received.get(path, []):
                    if accept(body):
                        return body
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = self.received.get(path, [])
                    raise StepFailed(f"no callback at {path} within {timeout:.0f} s"
                                     + (f" (got {json.dumps(seen)[:300]})" if seen else ""))
                self._cond.wait(left)


# --- the stack, through a user's clients -----------------------------------------------------------

def _api_profile(url: str, timeout: float) -> Any:
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    parts = urlsplit(url)
    return ClientProfile(httpProfile=HttpProfile(endpoint=parts.netloc, protocol=parts.scheme, reqTimeout=int(timeout)))


def _api_error(e: Exception) -> StepFailed:
    """An SDK error with its code and the Cloud API's RequestId."""
    code = getattr(e, "code", None) or type(e).__name__
    message = getattr(e, "message", None) or str(e)
    request = getattr(e, "requestId", None)
    return StepFailed(f"{code}: {message}" + (f" (Cloud API RequestId {request})" if request else ""))


def _cos_error(e: Exception) -> str:
    """A cos-python-sdk-v5 error as COS names it: code, message, status and COS's request id."""
    from qcloud_cos.cos_exception import CosServiceError

    if not isinstance(e, CosServiceError):
        return f"{type(e).__name__}: {str(e)[:300]}"
    digest = e.get_digest_msg()
    if isinstance(digest, dict):
        return (f"{digest.get('code')}: {digest.get('message')} (HTTP {e.get_status_code()}, "
                f"COS request id {digest.get('requestid')})")
    return f"HTTP {e.get_status_code()} (COS request id {dict(digest or {}).get('x-cos-request-id')})"


class Stack:
    def __init__(self, p: Params):
        from tencentcloud.common import credential
        from tencentcloud.scf.v20180416.scf_client import ScfClient
        from tencentcloud.trtc.v20190722.trtc_client import TrtcClient

        self.p = p
        cred = credential.Credential(p.secret_id, p.secret_key)
        self.scf = ScfClient(cred, p.region, _api_profile(p.scf_api, 30))
        self.trtc = TrtcClient(cred, p.region, _api_profile(p.trtc_api, 30))

    # --- UserSigs, COS ---

    def usersig(self, user: str) -> str:
        import TLSSigAPIv2  # type: ignore[import-untyped]  # tls-sig-api-v2 ships no type information

        return str(TLSSigAPIv2.TLSSigAPIv2(self.p.sdk_app_id, self.p.sdk_secret_key).gen_sig(user, 86400))

    def cos(self) -> Any:
        from qcloud_cos import CosConfig, CosS3Client

        parts = urlsplit(self.p.cos_endpoint)
        common = {"Region": self.p.cos_region, "Scheme": parts.scheme, "SecretId": self.p.cos_secret_id,
                  "SecretKey": self.p.cos_secret_key}
        try:
            ipaddress.ip_address(parts.hostname or "")
            config = CosConfig(IP=parts.hostname, Port=parts.port, **common)
        except ValueError:
            config = CosConfig(Endpoint=parts.netloc, **common)
        return CosS3Client(config, retry=1)

    # --- the gateway ---

    def start(self, function: str, body: dict[str, Any]) -> str:
        """POST an asynchronous function; its x-scf-reqid."""
        try:
            r = requests.post(f"{self.p.gateway}/{function}", json=body, timeout=30)
        except requests.RequestException as e:
            raise StepFailed(f"POST /{function} failed: {e}") from None
        reqid = r.headers.get("x-scf-reqid")
        if r.status_code != 200 or not reqid:
            raise StepFailed(f"POST /{function} answered {r.status_code}: {r.text[:300]}", reqid)
        return reqid

    def control(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            r = requests.post(f"{self.p.gateway}/push_control", json=body, timeout=30)
        except requests.RequestException as e:
            raise StepFailed(f"POST /push_control failed: {e}", body.get("requestId")) from None
        try:
            answer = r.json()
        except ValueError:
            answer = {"text": r.text[:300]}
        return r.status_code, answer if isinstance(answer, dict) else {"answer": answer}

    # --- SCF / TRTC ---

    def status(self, reqid: str) -> str:
        from tencentcloud.scf.v20180416 import models

        req = models.GetAsyncEventStatusRequest()
        req.InvokeRequestId = reqid
        try:
            return str(self.scf.GetAsyncEventStatus(req).Result.Status)
        except Exception as e:
            raise _api_error(e) from None

    def terminate(self, function: str, reqid: str, grace: bool) -> None:
        from tencentcloud.scf.v20180416 import models

        req = models.TerminateAsyncEventRequest()
        req.FunctionName, req.InvokeRequestId, req.GraceShutdown = function, reqid, grace
        try:
            self.scf.TerminateAsyncEvent(req)
        except Exception as e:
            raise _api_error(e) from None

    def remove_user(self, room: int, user: str) -> None:
        from tencentcloud.trtc.v20190722 import models

        req = models.RemoveUserRequest()
        req.SdkAppId, req.RoomId, req.UserIds = self.p.sdk_app_id, room, [user]
        try:
            self.trtc.RemoveUser(req)
        except Exception as e:
            raise _api_error(e) from None


# --- what a step checks with ---------------------------------------------------------------------------

def until(what: str, timeout: float, check: Callable[[], Any], request_id: str | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StepFailed(f"{what}: not within {timeout:.0f} s", request_id)
        time.sleep(POLL_S)


@dataclass
class Decoded:
    streams: list[str]
    duration_s: float
    frames: int

    def __str__(self) -> str:
        return f"{' + '.join(self.streams)}, {self.duration_s:.1f} s"


def decode(path: Path) -> Decoded:
    """Every frame of a downloaded recording decoded with PyAV: its streams and how long it plays
    (the longer of its audio, by samples, and its video, first to last picture)."""
    import av

    with av.open(str(path)) as c:
        streams = []
        for s in c.streams:
            ctx: Any = s.codec_context
            if s.type == "video":
                streams.append(f"{ctx.name} {ctx.width}x{ctx.height}")
            elif s.type == "audio":
                streams.append(f"{ctx.name} {ctx.sample_rate} Hz")
        frames = 0
        audio_s = video_s = 0.0
        if c.streams.audio:
            for sound in c.decode(audio=0):
                frames += 1
                audio_s += sound.samples / (sound.sample_rate or 1)
    with av.open(str(path)) as c:
        if c.streams.video:
            times = []
            for picture in c.decode(video=0):
                frames += 1
                times.append(picture.time or 0.0)
            video_s = max(times) - min(times) if times else 0.0
    return Decoded(streams, max(audio_s, video_s), frames)


@dataclass
class Outcome:
    step: str
    held: bool
    request_id: str | None
    detail: str
    seconds: float


@dataclass
class Smoke:
    p: Params
    stack: Stack
    receiver: Receiver
    callback_base: str
    rooms: list[int] = field(default_factory=list)
    started: list[tuple[str, str]] = field(default_factory=list)  # (function, request id) to stop at the end
    current: str | None = None  # the request id the step is about (reported when it fails)

    # --- helpers ---

    def room(self) -> int:
        room = secrets.randbelow(900_000_000) + 100_000_000
        self.rooms.append(room)
        return room

    def push(self, room: int, redis: bool, token: str | None = None, source: str | None = None) -> str:
        p = self.p
        body: dict[str, Any] = {"videoSrc": source or p.source, "sdkAppId": p.sdk_app_id, "roomId": room,
                                "userId": PUSHER, "userSig": self.stack.usersig(PUSHER)}
        if redis:
            body |= self.redis_fields()
            body["redis"] = True
        if token:
            body["controlToken"] = token
        reqid = self.stack.start("push_stream", body)
        self.started.append(("push_stream", reqid))
        self.current = reqid
        return reqid

    def record(self, room: int, path: str, **extra: Any) -> str:
        p = self.p
        body = {"SdkAppId": p.sdk_app_id, "RoomId": room, "UserId": RECORDER, "UserSig": self.stack.usersig(RECORDER),
                "CosConfig": {"Region": p.cos_region, "Bucket": p.cos_bucket, "Path": p.cos_path},
                "Callback": f"{self.callback_base}{path}", "Mode": "02", **extra}
        reqid = self.stack.start("record_stream", body)
        self.started.append(("record_stream", reqid))
        self.current = reqid
        return reqid

    def redis_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"redisHost": self.p.redis_host, "redisPort": self.p.redis_port}
        if self.p.redis_password:
            fields["redisPassword"] = self.p.redis_password
        return fields

    def control(self, reqid: str, token: str, action: str, **extra: Any) -> tuple[int, dict[str, Any]]:
        return self.stack.control({"requestId": reqid, "action": action, "controlToken": token,
                                   **self.redis_fields(), **extra})

    def playing(self, reqid: str, token: str) -> dict[str, Any]:
        """push_control's state of a running push, once it answers for it (404 until it registered)."""
        def ask() -> dict[str, Any] | None:
            self.running(reqid, "push")
            status, answer = self.control(reqid, token, "status")
            if status == 200:
                return dict(answer.get("state") or {})
            if status != 404:
                raise StepFailed(f"push_control status answered {status}: {json.dumps(answer)[:300]}", reqid)
            return None
        return until("push_control to answer for the push", self.p.step_timeout, ask, reqid)

    def running(self, reqid: str, what: str) -> None:
        status = self.stack.status(reqid)
        if status != "RUNNING":
            raise StepFailed(f"the {what} ended early ({status})", reqid)

    def run_for(self, seconds: float, *runs: tuple[str, str]) -> None:
        """Let the runs go on for `seconds`, checking that each is still running."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for reqid, what in runs:
                self.running(reqid, what)
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

    def ended(self, reqid: str, what: str) -> str:
        return until(f"the {what} to end", self.p.step_timeout,
                     lambda: (lambda s: s if s != "RUNNING" else None)(self.stack.status(reqid)), reqid)

    def stop(self, function: str, reqid: str) -> None:
        """Stop a run that still runs (one that ended meanwhile is not an error)."""
        if self.stack.status(reqid) != "RUNNING":
            return
        try:
            self.stack.terminate(function, reqid, grace=True)
        except StepFailed:
            if self.stack.status(reqid) == "RUNNING":
                raise

    def recorded(self, body: Any, reqid: str) -> str:
        """The callback's file for the pusher, downloaded from COS and decoded."""
        files = [f for f in (body.get("Files") or []) if f.get("UserId") == PUSHER] if isinstance(body, dict) else []
        if not files or any(f.get("Status") != 1 for f in files):
            raise StepFailed(f"the callback names no uploaded file of {PUSHER}: {json.dumps(body)[:400]}", reqid)
        url = files[0]["RecordFile"]
        key = unquote(urlsplit(url).path.lstrip("/"))
        with tempfile.TemporaryDirectory(prefix="smoke-") as tmp:
            local = Path(tmp) / Path(key).name
            try:  # GET, not download_file's HEAD first: an error then comes with COS's code and request id
                self.stack.cos().get_object(Bucket=self.p.cos_bucket, Key=key)["Body"].get_stream_to_file(str(local))
            except Exception as e:
                raise StepFailed(f"downloading {key} from COS failed: {_cos_error(e)}", reqid) from None
            try:
                found = decode(local)
            except Exception as e:
                raise StepFailed(f"{key} does not decode: {e}", reqid) from None
        if found.duration_s < 1.0 or not found.frames:
            raise StepFailed(f"{key} holds {found}, less than a second of media", reqid)
        return f"{key}: {found}"

    # --- the steps ---

    def push_resume(self) -> str:
        room, token = self.room(), secrets.token_urlsafe(16)
        first = self.push(room, redis=True, token=token)
        until("the push to be past 2 s", self.p.step_timeout + self.p.run_seconds,
              lambda: float(self.playing(first, token).get("position") or 0) >= max(2.0, self.p.run_seconds), first)
        seen = float(self.playing(first, token).get("position") or 0)
        self.stack.terminate("push_stream", first, grace=True)
        status = self.ended(first, "push")
        if status != "ABORTED":
            raise StepFailed(f"TerminateAsyncEvent left the push {status}, not ABORTED", first)
        token2 = secrets.token_urlsafe(16)
        second = self.push(room, redis=True, token=token2)
        began = float(self.playing(second, token2).get("position") or 0)
        self.stop("push_stream", second)
        if began < seen - RESUME_SLACK_S:
            raise StepFailed(f"the second push started at {began:.1f} s, before the first one's {seen:.1f} s", second)
        return f"stopped past {seen:.1f} s; the second push ({second}) went on from {began:.1f} s"

    def record_remove(self) -> str:
        room = self.room()
        pusher = self.push(room, redis=False)
        recorder = self.record(room, "/record_remove")
        self.run_for(self.p.run_seconds, (pusher, "push"), (recorder, "recording"))
        self.stack.remove_user(room, RECORDER)
        body = self.receiver.wait("/record_remove", self.p.step_timeout)
        self.stop("push_stream", pusher)
        if not isinstance(body, dict) or body.get("Reason") != "removed":
            raise StepFailed(f"the callback's Reason is not removed: {json.dumps(body)[:300]}", recorder)
        return self.recorded(body, recorder)

    def push_control(self) -> str:
        room, token = self.room(), secrets.token_urlsafe(16)
        reqid = self.push(room, redis=True, token=token)
        self.playing(reqid, token)
        status, answer = self.control(reqid, token, "switch", videoSrc=self.p.switch_source, seekSecond=1)
        if status != 200 or not answer.get("applied"):
            raise StepFailed(f"switch answered {status}: {json.dumps(answer)[:300]}", reqid)
        state = self.playing(reqid, token)
        self.stop("push_stream", reqid)
        if state.get("videoSrc") != self.p.switch_source:
            raise StepFailed(f"after the switch the push plays {state.get('videoSrc')!r}", reqid)
        return f"switched to {self.p.switch_source}; still in the room ({state.get('status')})"

    def record_recover(self) -> str:
        room = self.room()
        pusher = self.push(room, redis=False)
        recorder = self.record(room, "/record_recover", SegmentDuration=RECOVER_SEGMENT_S)
        # Long enough for segments to reach COS: a dead run loses up to SegmentDuration + 2 s.
        self.run_for(self.p.run_seconds + 2 * RECOVER_SEGMENT_S, (pusher, "push"), (recorder, "recording"))
        self.stack.terminate("record_stream", recorder, grace=False)
        status = self.ended(recorder, "recording")
        body = self.receiver.wait("/record_recover", self.p.recovery_timeout)
        self.stop("push_stream", pusher)
        if not isinstance(body, dict) or body.get("Reason") != "recovered":
            raise StepFailed(f"the callback's Reason is not recovered: {json.dumps(body)[:300]}", recorder)
        return f"killed ({status}), recovered: {self.recorded(body, recorder)}"

    # --- running them ---

    def run(self, name: str) -> Outcome:
        self.current = None
        t0 = time.monotonic()
        try:
            detail = getattr(self, name)()
            held = True
        except StepFailed as e:
            held, detail = False, str(e)
            self.current = e.request_id or self.current
        except Exception as e:  # a client's own error: reported as the step's, never a traceback
            held, detail = False, f"{type(e).__name__}: {e}"
        finally:
            self.cleanup()
        return Outcome(name, held, self.current, detail, time.monotonic() - t0)

    def cleanup(self) -> None:
        """Stop whatever the step left running (best effort: the step's outcome is already known)."""
        for function, reqid in self.started:
            try:
                self.stop(function, reqid)
            except Exception:
                pass
        self.started.clear()


def table(outcomes: list[Outcome]) -> str:
    rows = [("step", "held", "request id", "s", "detail")]
    rows += [(o.step, "yes" if o.held else "NO", o.request_id or "-", f"{o.seconds:.0f}", o.detail) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = parse_args(argv)
    try:
        receiver = Receiver(*p.callback_listen).start()
    except OSError as e:
        print(f"error: argument --callback-listen: cannot listen on {p.callback_listen[0]}:{p.callback_listen[1]}: {e}",
              file=sys.stderr)
        return 2
    smoke = Smoke(p, Stack(p), receiver, (p.callback_url or receiver.address).rstrip("/"))
    outcomes = []
    try:
        for name in p.steps:
            print(f"{name} ...", flush=True)
            outcomes.append(smoke.run(name))
            last = outcomes[-1]
            print(f"{name}: {'held' if last.held else 'FAILED'} ({last.seconds:.0f} s) {last.detail}", flush=True)
    finally:
        receiver.stop()
    print()
    print(table(outcomes), flush=True)
    return 0 if all(o.held for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
