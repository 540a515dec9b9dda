"""The whole local cloud, started and stopped together: TRTC rooms, the Cloud API 3.0 endpoint (TRTC
and SCF actions on one endpoint), API Gateway + SCF, COS, real-time speech recognition (ASR) and a
redis-server, all on 127.0.0.1.

    cloud = LocalCloud(CloudConfig(state_dir=Path(".state"))).start()
    cloud.info()      # the JSON line `python -m emulator up` prints
    cloud.stop()

Everything it keeps lives under `state_dir`:

    cloud.json      the running cloud's info (removed on a clean stop); `demo --use-running` reads it
    redis/          redis-server's dump.rdb and log
    cos/<bucket>/   COS objects, written through on every upload
    runs/<reqid>/   each function run: run.json, log, result.json
    files/          the functions' working files (CFS_PATH: recordings before upload)
    media/          local clips push_stream may read (LOCAL_SOURCE_DIRS, with demo/)

The console (emulator/console/) serves the runs, rooms and recordings in a browser at info()["console"].
"""
from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import entry
from emulator.asr import AsrService
from emulator.cloudapi import CloudApi
from emulator.console import Console
from emulator.cos import CosService
from emulator.redis import RedisServer
from emulator.scf import FunctionConfig, Gateway, Scf, register as register_scf
from emulator.scf.timers import Timers, read_timer_triggers
from emulator.trtc import DEFAULT_SDK_APP_ID, DEFAULT_SDK_SECRET_KEY, RoomService

log = logging.getLogger("emulator.cloud")

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = tuple(entry.FUNCTIONS)  # the deployment's functions, listed once (deploy/entry.py)
# Invoked synchronously by the gateway (their answer is their result), with a short time limit.
SYNC_FUNCTIONS = frozenset({"push_control"})
SYNC_TIME_LIMIT_MS = 10_000
# Fixed, so that README examples, `usersig` and a running `up` agree without reading anything.
DEFAULT_SECRET_ID = "AKIDemulatorLocalCloud00000000000000"
DEFAULT_SECRET_KEY = "emulatorLocalCloudSecretKey000000"
DEFAULT_REGION = "ap-guangzhou"
DEFAULT_BUCKET = "emulator-1250000000"
DEFAULT_STATE_DIR = Path(".state")
INFO_FILE = "cloud.json"
# Opened for the functions so that they may reach sources, callbacks and Redis on loopback.
LOOPBACK_ALLOWLIST = "127.0.0.0/8,::1/128,localhost"
# How the functions run: "code" as SCF's Python runtime does (functions_dir/<name>/index.py), or
# "image" through the deployed image's entry server (image_dir, from `./dev package --image`).
RUNTIMES = ("code", "image")
DEFAULT_IMAGE_DIR = REPO_ROOT / "build" / "image"
# Under the state dir: where local clips may be put for push_stream (LOCAL_SOURCE_DIRS).
MEDIA_DIR = "media"


@dataclass
class CloudConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    host: str = "127.0.0.1"
    gateway_port: int = 0
    cloud_api_port: int = 0
    room_port: int = 0
    cos_port: int = 0
    redis_port: int = 0
    console_port: int = 0
    asr_port: int = 0
    asr_max_concurrency: int = 20  # the speech recognition account's concurrent connections
    secret_id: str = DEFAULT_SECRET_ID
    secret_key: str = DEFAULT_SECRET_KEY
    sdk_app_id: int = DEFAULT_SDK_APP_ID
    sdk_secret_key: str = DEFAULT_SDK_SECRET_KEY
    region: str = DEFAULT_REGION
    bucket: str = DEFAULT_BUCKET
    # Where the functions' code roots are: functions_dir/<name>/index.py.
    functions_dir: Path = REPO_ROOT / "functions"
    functions: tuple[str, ...] = FUNCTIONS
    time_limit_ms: int = 86_400_000
    memory_limit_mb: int = 1024
    max_concurrency: int = 8
    shutdown_grace_s: float = 8.0
    extra_env: dict[str, str] = field(default_factory=dict)
    runtime: str = "code"
    image_dir: Path = DEFAULT_IMAGE_DIR
    # serverless.yml's timer triggers run on their schedule; a tick (seconds) runs them that often.
    timer_tick_s: float | None = None
    serverless_yml: Path = REPO_ROOT / "serverless.yml"


class LocalCloud:
    def __init__(self, config: CloudConfig | None = None):
        self.config = config or CloudConfig()
        self.state_dir = Path(self.config.state_dir).resolve()
        self.redis: RedisServer | None = None
        self.cloud_api: CloudApi | None = None
        self.rooms: RoomService | None = None
        self.cos: CosService | None = None
        self.scf: Scf | None = None
        self.gateway: Gateway | None = None
        self.console: Console | None = None
        self.timers: Timers | None = None
        self.asr: AsrService | None = None
        # The functions' execution role: temporary credentials that only the local COS accepts.
        self.role = {"TENCENTCLOUD_SECRETID": "AKIDtmp" + secrets.token_hex(12),
                     "TENCENTCLOUD_SECRETKEY": secrets.token_hex(16),
                     "TENCENTCLOUD_SESSIONTOKEN": secrets.token_urlsafe(32)}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "LocalCloud":
        c = self.config
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = RedisServer(self.state_dir / "redis", c.redis_port).start()
            self.cloud_api = CloudApi(c.secret_id, c.secret_key, host=c.host, port=c.cloud_api_port)
            self.rooms = RoomService(c.sdk_app_id, c.sdk_secret_key, host=c.host, port=c.room_port,
                                     cloud_api=self.cloud_api)
            self.cos = CosService(c.host, c.cos_port, c.secret_id, c.secret_key, c.region, c.bucket,
                                  state_dir=str(self.state_dir),
                                  temporary_credentials=[(self.role["TENCENTCLOUD_SECRETID"],
                                                          self.role["TENCENTCLOUD_SECRETKEY"],
                                                          self.role["TENCENTCLOUD_SESSIONTOKEN"])])
            self.cloud_api.start()
            self.rooms.start()
            self.cos.start()
            self.asr = AsrService(c.secret_id, c.secret_key, {c.sdk_app_id: c.sdk_secret_key}, host=c.host,
                                  port=c.asr_port, max_concurrency=c.asr_max_concurrency).start()
            self.scf = Scf(self.state_dir / "runs", self._functions(), max_concurrency=c.max_concurrency,
                           region=c.region)
            self.scf.load_previous()  # runs of an earlier `up` on this state directory stay readable
            register_scf(self.cloud_api, self.scf)
            self.cloud_api.add_temporary_credentials(self.role["TENCENTCLOUD_SECRETID"],
                                                     self.role["TENCENTCLOUD_SECRETKEY"],
                                                     self.role["TENCENTCLOUD_SESSIONTOKEN"])
            self.gateway = Gateway(self.scf, c.host, c.gateway_port).start()
            self.console = Console(scf=self.scf, rooms=self.rooms.rooms, buckets=[self.cos.state],
                                   gateway_url=self.gateway.url, sdk_app_id=c.sdk_app_id,
                                   sdk_secret_key=c.sdk_secret_key,
                                   redis={"host": self.redis.host, "port": self.redis.port},
                                   host=c.host, port=c.console_port, asr=self.asr.backend).start()
            self.timers = Timers(self.scf, read_timer_triggers(c.serverless_yml), c.timer_tick_s).start()
        except BaseException:
            self.stop()
            raise
        self._write_info()
        return self

    def stop(self) -> None:
        """Stop every part, the running functions first (SIGTERM, then a kill after the grace time)."""
        (self.state_dir / INFO_FILE).unlink(missing_ok=True)
        grace = self.config.shutdown_grace_s
        parts: list[Any] = [self.console, self.timers, self.gateway, self.scf, self.rooms, self.cloud_api, self.cos,
                            self.asr, self.redis]
        for part in parts:
            if part is None:
                continue
            step = (lambda p=part: p.shutdown(grace)) if part is self.scf else part.stop
            try:
                step()
            except Exception:  # one part failing to stop must not leave the others running
                log.exception("stopping a part of the local cloud failed")
        self.console = self.timers = self.gateway = self.scf = self.rooms = self.cloud_api = self.cos = self.redis = None
        self.asr = None

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- functions ---------------------------------------------------------------------------

    def function_env(self) -> dict[str, str]:
        assert self.rooms is not None and self.cos is not None and self.redis is not None and self.cloud_api is not None
        assert self.asr is not None
        files = self.state_dir / "files"
        files.mkdir(parents=True, exist_ok=True)
        media = self.state_dir / MEDIA_DIR
        media.mkdir(parents=True, exist_ok=True)
        # Local sources: the state dir's media/ and demo/ (the demo's clips), plus whatever
        # LOCAL_SOURCE_DIRS `up` was started with. Never files/: other runs' recordings are there.
        local_dirs = [str(media), str(self.state_dir / "demo")]
        inherited = (os.environ.get("LOCAL_SOURCE_DIRS") or "").strip()
        local_dirs += [inherited] if inherited else []
        return {
            "ROOM_BACKEND": "local",
            "LOCAL_ROOM_ADDRESS": self.rooms.address,
            "COS_ENDPOINT": self.cos.endpoint_url,
            # record_stream's recovery state, in the local bucket; the timer asks SCF here.
            "RECORD_STATE_BUCKET": self.cos.bucket,
            "RECORD_STATE_REGION": self.cos.region,
            "SCF_API_ENDPOINT": f"http://{self.cloud_api.endpoint}",
            "SOURCE_ALLOWLIST": LOOPBACK_ALLOWLIST,
            "CALLBACK_ALLOWLIST": LOOPBACK_ALLOWLIST,
            "REDIS_ALLOWLIST": LOOPBACK_ALLOWLIST,
            "COS_ALLOWLIST": LOOPBACK_ALLOWLIST,
            # recognize_stream's speech recognition: this cloud's service.
            "ASR_ENDPOINT": self.asr.endpoint,
            "ASR_ALLOWLIST": LOOPBACK_ALLOWLIST,
            "LOCAL_SOURCE_DIRS": ",".join(local_dirs),
            "CFS_PATH": str(files),
            # The functions' default Redis (both push functions and push_control), as a deployment sets it.
            "REDIS_URL": self.redis.url,
            **self.role,
            **self.config.extra_env,
        }

    def _functions(self) -> list[FunctionConfig]:
        c = self.config
        env = self.function_env()
        if c.runtime == "image":
            return self._image_functions(env)
        found = []
        for name in c.functions:
            root = Path(c.functions_dir) / name
            if not (root / "index.py").is_file():
                log.warning("function %s has no %s; it is not served", name, root / "index.py")
                continue
            sync = name in SYNC_FUNCTIONS
            found.append(FunctionConfig(name, root.resolve(), memory_limit_mb=c.memory_limit_mb, environment=env,
                                        time_limit_ms=min(c.time_limit_ms, SYNC_TIME_LIMIT_MS) if sync
                                        else c.time_limit_ms, sync=sync))
        return found

    def _image_functions(self, env: dict[str, str]) -> list[FunctionConfig]:
        """Every function from the image's one code tree, told apart by ENTRY_FUNCTION (as serverless.yml does)."""
        c = self.config
        code = Path(c.image_dir).resolve() / "app" / "code"
        if not (code / "server.py").is_file():
            raise FileNotFoundError(f"--runtime image needs the image's tree at {code} (server.py is missing): "
                                    f"build it with ./dev package --image")
        return [FunctionConfig(name, code, time_limit_ms=c.time_limit_ms, memory_limit_mb=c.memory_limit_mb,
                               environment={**env, "ENTRY_FUNCTION": name}, runner="emulator.scf.image_runner")
                for name in c.functions]

    # --- what clients need -------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        assert self.gateway and self.cloud_api and self.cos and self.redis and self.rooms and self.scf and self.console
        c = self.config
        return {
            "gateway": self.gateway.url,
            "cloudApiEndpoint": self.cloud_api.endpoint,
            # For tccli's --endpoint (or `tccli configure set scf.endpoint ...`): a URL with a scheme
            # is used as given by tencentcloud-sdk-python, so the CLI speaks plain HTTP to it (README).
            "cloudApiUrl": f"http://{self.cloud_api.endpoint}",
            "secretId": c.secret_id,
            "secretKey": c.secret_key,
            "sdkAppId": c.sdk_app_id,
            "sdkSecretKey": c.sdk_secret_key,
            # "proxy": HTTP_PROXY for tools that name the bucket in the host (coscmd: <bucket>.<endpoint>).
            "cos": {"ip": self.cos.ip, "port": self.cos.port, "region": self.cos.region, "bucket": self.cos.bucket,
                    "proxy": self.cos.endpoint_url},
            "asr": self.asr.endpoint if self.asr else None,
            "redis": {"host": self.redis.host, "port": self.redis.port, "password": self.redis.password},
            "roomAddress": self.rooms.address,
            "console": self.console.url,
            "functions": sorted(self.scf.functions),
            "runtime": c.runtime,
            "stateDir": str(self.state_dir),
            "runsDir": str(self.scf.runs_dir),
            "pid": os.getpid(),
        }

    def _write_info(self) -> None:
        path = self.state_dir / INFO_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info(), indent=1), "utf-8")
        tmp.replace(path)


def read_info(state_dir: str | Path) -> dict[str, Any]:
    """The info of a cloud running with this state directory, or FileNotFoundError saying so."""
    path = Path(state_dir) / INFO_FILE
    try:
        info = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no local cloud is running with state directory {state_dir} "
                                f"({path} is missing); start one with `python -m emulator up --state-dir {state_dir}`") from None
    pid = int(info.get("pid") or 0)
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # alive, under another user
    except (ProcessLookupError, OverflowError, ValueError):
        raise FileNotFoundError(f"{path} names process {pid}, which is not running; start the cloud again") from None
    return info
