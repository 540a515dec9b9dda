"""`./dev check-image` (`python -m deploy.rootfs_check`): the image's tree booted on the system it
names, without a container engine. The built context's app/ (`./dev package`) goes into a bare
Debian 12 root (deploy/rootfs.py, cached per machine) as the Dockerfile puts it, and the Dockerfile's
command starts in it as SCF starts the image: uid 10000, the tree read-only, only /tmp writable,
HOME=/tmp, in a network namespace with loopback alone. Then, as SCF does, POST /event-invoke with
the X-Scf-* headers (the execution role's keys among them): a record_stream run into the local COS
(emulator/cos), then a push_stream run into the same local TRTC room (emulator/trtc) from a clip
served on loopback, watched from the room by an audience member, with Redis and a controlToken, and
asked for its status through a push_control server in the root while it plays; the recording ends
5 s after the push (MaxIdleTime) and its file is fetched from COS and decoded.

Printed: what the sandbox is (uid, writable paths, network interfaces, the root's CPython) and the
cold start, process start -> the entry server listening -> the first frame in the room. Exit 0
when the push's frames arrived, it ended `completed` (the clip played to its end) and the
recording decodes and push_control applied the status, 1 otherwise.

    python -m deploy.rootfs_check [--out build/check-image]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from deploy import rootfs

REPO = Path(__file__).resolve().parents[1]
INSIDE = "--inside"
ROOM_ID = 4711
PUSHER, WATCHER, RECORDER = "image-pusher", "image-watcher", "image-recorder"
CLIP_S = 5.0
# The recorder starts first and waits this long for the pusher (whose cold start is measured), and
# as long after the push ends before it stops (reason idle).
MAX_IDLE_S = 5
START_LIMIT_S = 30.0  # SCF: the entry server listens within 30 s
# What the sandbox reports about itself, run by the root's CPython as the server is.
PROBE = """
import json, os, sys
def writable(path):
    try:
        with open(os.path.join(path, ".probe"), "w"):
            pass
        os.remove(os.path.join(path, ".probe"))
        return True
    except OSError:
        return False
nets = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "home": os.environ.get("HOME"),
                  "python": sys.version.split()[0], "executable": os.path.realpath(sys.executable),
                  "writable": [p for p in ("/", "/app", "/app/code", "/etc", "/usr", "/var", "/tmp") if writable(p)],
                  "interfaces": nets}))
"""


def prepare(out: Path) -> tuple[Path, Path]:
    """The cached root and the image's app/ built and compiled for it (network needed the first time)."""
    from deploy.image import build as image_build

    root = rootfs.ensure()
    cache = REPO / "build" / ".test-cache"
    context = image_build.write_context(out / "image", cache=cache)
    app = Path(context.directory) / "app"
    _below_3_11_3(root, app, cache)
    rootfs.compile_app(root, app)
    return root, app


# redis 8 needs async-timeout on CPython < 3.11.3 (redis-py#2633) and pip leaves it out of the image's
# site (the image's CPython is 3.11.14). Debian 12's python3.11 is 3.11.2: the check adds it, as pip
# would for that interpreter, to the check's own copy of the tree.
ASYNC_TIMEOUT = "async-timeout==4.0.3"


def _below_3_11_3(root: Path, app: Path, cache: Path) -> None:
    version = subprocess.run(["chroot", str(root), "/usr/local/bin/python3", "-c",
                              "import sys; print(*sys.version_info[:3])"], capture_output=True, text=True, check=True)
    if tuple(int(v) for v in version.stdout.split()) >= (3, 11, 3) or (app / "site" / "async_timeout").is_dir():
        return
    extra = cache / "debian-python-3.11.2"
    if not (extra / "async_timeout").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--no-compile", "--target", str(extra), ASYNC_TIMEOUT], check=True)
    shutil.copytree(extra / "async_timeout", app / "site" / "async_timeout")


def probe(root: Path, app: Path) -> dict[str, Any]:
    argv = rootfs.server_argv(root, app, {})[:-len(rootfs.IMAGE_COMMAND)] + ["/usr/local/bin/python3", "-I", "-c", PROBE]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise rootfs.RootfsError(f"the sandbox probe failed: {done.stderr.strip()[-800:]}")
    return dict(json.loads(done.stdout))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


class Server:
    """One function's entry server in the root (ENTRY_FUNCTION), and its invocations."""

    def __init__(self, root: Path, app: Path, function: str, env: dict[str, str]):
        self.function = function
        self.port = _free_port()
        self.started = time.monotonic()
        self.proc = rootfs.start_server(root, app, {**env, "ENTRY_FUNCTION": function,
                                                    "ENTRY_LISTEN": f"127.0.0.1:{self.port}"})
        self.log: list[bytes] = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stdout or []), daemon=True).start()

    def wait_listening(self) -> float:
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() - self.started > START_LIMIT_S:
                raise rootfs.RootfsError(f"{self.function}'s entry server did not listen: {self.tail()}")
            time.sleep(0.01)
        return time.monotonic() - self.started

    def invoke(self, event: dict[str, Any], request_id: str, role: dict[str, str]) -> tuple[threading.Thread, dict[str, Any]]:
        """POST /event-invoke as SCF does (context and the role's keys in X-Scf-* headers), on a thread."""
        from emulator.scf.image_runner import headers_for

        context = {"request_id": request_id, "time_limit_in_ms": 60_000, "memory_limit_in_mb": 1024,
                   "function_name": self.function, "namespace": "default", "tencentcloud_region": "ap-guangzhou"}
        answer: dict[str, Any] = {}

        def call() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=90)
            try:
                conn.request("POST", "/event-invoke", body=json.dumps(event), headers=headers_for(context, role))
                response = conn.getresponse()
                answer.update({"status": response.status, "body": json.loads(response.read() or b"null")})
            except (OSError, ValueError) as e:
                answer.update({"error": f"{type(e).__name__}: {e}"})
            finally:
                conn.close()

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        return thread, answer

    def tail(self) -> str:
        return b"".join(self.log).decode(errors="replace")[-2000:]

    def stop(self) -> None:
        rootfs.stop_server(self.proc)


def boot(root: Path, app: Path) -> int:
    """Inside the loopback-only network namespace: the room, COS, the clip; a recording server and a
    push server in the root; the push watched from the room, the recording fetched from COS."""
    from http.server import SimpleHTTPRequestHandler

    from deploy.smoke import decode
    from emulator import media
    from emulator.cos import CosService
    from emulator.httpserver import HttpServer
    from emulator.redis import RedisServer
    from emulator.trtc import RoomService
    from shared.room.base import EnterParams, RemoteVideo, Role, RoomRef
    from shared.room.local import LocalRoom

    report: dict[str, Any] = {"sandbox": probe(root, app)}
    role = {"TENCENTCLOUD_SECRETID": "AKIDcheckImageRole000000000000000000", "TENCENTCLOUD_SECRETKEY": "checkImageRoleKey",
            "TENCENTCLOUD_SESSIONTOKEN": "checkImageRoleToken"}
    rooms = RoomService().start()
    redis = RedisServer(tempfile.mkdtemp(prefix="check-image-redis-")).start()
    cos = CosService(temporary_credentials=[(role["TENCENTCLOUD_SECRETID"], role["TENCENTCLOUD_SECRETKEY"],
                                             role["TENCENTCLOUD_SESSIONTOKEN"])]).start()
    work = Path(tempfile.mkdtemp(prefix="check-image-"))
    media.make_clip(work / "clip.mp4", duration=CLIP_S, width=320, height=240)

    class Clips(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(work), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    files = HttpServer(Clips, name="check-image-media").start()
    watcher = LocalRoom("127.0.0.1", int(rooms.address.rsplit(":", 1)[1]))
    watcher.enter(EnterParams(rooms.sdk_app_id, RoomRef(ROOM_ID), WATCHER, rooms.usersig(WATCHER), role=Role.AUDIENCE))
    env = {"ROOM_BACKEND": "local", "LOCAL_ROOM_ADDRESS": rooms.address, "SOURCE_ALLOWLIST": "127.0.0.0/8",
           "COS_ENDPOINT": cos.endpoint_url, "COS_ALLOWLIST": "127.0.0.0/8", "RECORD_STATE_BUCKET": cos.bucket,
           "RECORD_STATE_REGION": cos.region, "REDIS_URL": redis.url, "REDIS_ALLOWLIST": "127.0.0.0/8"}
    servers: list[Server] = []
    token = secrets.token_urlsafe(16)
    try:
        control = Server(root, app, "push_control", env)  # started ahead: SCF keeps it warm (provisioned)
        servers.append(control)
        recorder = Server(root, app, "record_stream", env)
        servers.append(recorder)
        recorder.wait_listening()
        control.wait_listening()
        record_call, recorded = recorder.invoke(
            {"SdkAppId": rooms.sdk_app_id, "RoomId": ROOM_ID, "UserId": RECORDER, "UserSig": rooms.usersig(RECORDER),
             "CosConfig": {"Region": cos.region, "Bucket": cos.bucket, "Path": "check-image/"}, "Mode": "02",
             "MaxIdleTime": MAX_IDLE_S}, "check-image-record", role)
        deadline = time.monotonic() + 30
        while RECORDER not in rooms.rooms.user_ids(rooms.sdk_app_id, ROOM_ID) and time.monotonic() < deadline:
            time.sleep(0.02)

        pusher = Server(root, app, "push_stream", env)  # the cold start measured: this process's start
        servers.append(pusher)
        report["listening_s"] = round(pusher.wait_listening(), 3)
        push_call, pushed = pusher.invoke({"videoSrc": f"{files.url}/clip.mp4", "sdkAppId": rooms.sdk_app_id,
                                           "roomId": ROOM_ID, "userId": PUSHER, "userSig": rooms.usersig(PUSHER),
                                           "redis": True, "controlToken": token}, "check-image-push", role)
        frames = 0
        control_call: threading.Thread | None = None
        controlled: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while push_call.is_alive() and time.monotonic() < deadline:
            got = watcher.poll(0.02)
            if isinstance(got, RemoteVideo) and got.user_id == PUSHER:
                if frames == 0:
                    report["first_frame_s"] = round(time.monotonic() - pusher.started, 3)
                    control_call, controlled = control.invoke(  # while the push plays: its status
                        {"requestId": "check-image-push", "action": "status", "controlToken": token},
                        "check-image-control", role)
                frames += 1
        push_call.join(5)
        if control_call is not None:
            control_call.join(30)
        body_: Any = controlled.get("body")
        answer: dict[str, Any] = body_ if isinstance(body_, dict) else {}
        report["push_control"] = {"answer": controlled.get("status"), "applied": answer.get("applied"),
                                  "state": {k: (answer.get("state") or {}).get(k) for k in ("status", "position")}}
        record_call.join(60)
        report["video_frames_seen"] = frames
        report["push"] = {k: (pushed.get("body") or {}).get(k) for k in ("status", "reason", "position", "framesSent")}
        report["push_answer"] = pushed.get("status")
        body = recorded.get("body") or {}
        files_ = [f for f in body.get("Files", []) if f.get("UserId") == PUSHER and f.get("Status") == 1]
        report["recording"] = {"answer": recorded.get("status"), "Reason": body.get("Reason"),
                               "Files": [f.get("RecordFile") for f in body.get("Files", [])]}
        if files_:
            key = unquote(urlsplit(files_[0]["RecordFile"]).path.lstrip("/"))
            (work / "recording.mp4").write_bytes(cos.get_object_bytes(key))
            report["recording"]["decoded"] = str(decode(work / "recording.mp4"))
    finally:
        watcher.exit()
        for server in servers:
            server.stop()
        files.stop()
        cos.stop()
        redis.stop()
        rooms.stop()
    ok = (report.get("push_answer") == 200 and report["push"].get("status") == "completed"  # the clip to its end
          and report.get("video_frames_seen", 0) > 0 and "decoded" in report.get("recording", {})
          and report.get("push_control", {}).get("applied") is True)
    print(json.dumps(report, indent=1), flush=True)
    if not ok:
        for server in servers:
            print(f"check-image FAILED; {server.function}'s log ends with:\n{server.tail()}", file=sys.stderr)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.rootfs_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "build" / "check-image"), help="where the image's context is built")
    parser.add_argument(INSIDE, nargs=2, metavar=("ROOT", "APP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return boot(Path(args.inside[0]), Path(args.inside[1]))
    if os.geteuid() != 0:
        print("error: check-image needs root (mount and network namespaces, chroot)", file=sys.stderr)
        return 2
    try:
        t0 = time.monotonic()
        root, app = prepare(Path(args.out))
        print(f"root {root}, app {app} ready in {time.monotonic() - t0:.1f} s", flush=True)
    except rootfs.RootfsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    # The boot runs in a network namespace of its own with only loopback up (as `./dev test` isolates).
    inner = [sys.executable, "-m", "deploy.rootfs_check", INSIDE, str(root), str(app)]
    return subprocess.call(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner], cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
