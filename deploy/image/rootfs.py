"""The image booted on the system it names, without a container engine (`./dev check-image`).

    python -m deploy.image.rootfs build [--out build]   the root file system (cached) and the context
    python -m deploy.image.rootfs check [--out build] [--app DIR] [--cold-starts N] [--compare]
                                                        boot app/ in it, drive it, print a table
    ... [--if-changed]   either does nothing when a check of the same deploy/ and requirements*.txt
                         passed on this machine (a stamp in CACHE; what ./dev test passes)

`build` (needs Debian's archive, as apt is configured, and PyPI):
- a bare Debian root file system of the Dockerfile's release (`mmdebstrap --variant=minbase`) with
  that release's own CPython X.Y (the FROM tag's X.Y) and the packages holding what deploy/image/elf.py
  says the base provides to the wheels' .so files; the image's user (10000:10000, HOME /tmp) and its
  command's path (/usr/local/bin/python3) added. Kept in CACHE/<release>-<key> (CACHE:
  $TRTC_ROOTFS_CACHE, else /var/cache/trtc-rootfs), the key a hash of the package list and the
  Dockerfile's FROM line: a machine pays for it once.
- the build context (`./dev package`: OUT/image), its app/ copied and compiled by the root file
  system's own interpreter as the Dockerfile's RUN does (OUT/rootfs-app).

`check` (as root; nothing but loopback): runs in a network namespace holding only loopback (entered
here unless already in one, as `./dev test` runs pytest), so that the local cloud started here (rooms,
COS, Redis, a media server, a callback receiver) and the entry servers share 127.0.0.1 and nothing else.
Each entry server is started as the image would be: in mount and PID namespaces of its own
(`unshare`), the root file system bind-mounted read-only with app/ read-only at /app, a fresh tmpfs on
/tmp (the only writable place), /proc and a minimal /dev, `chroot`, then `setpriv` to uid/gid 10000
with no groups and no capabilities, HOME=/tmp, `python3 -I -S -u /app/code/server.py` in /app/code.
It is driven as SCF drives it (POST /event-invoke, X-Scf-* headers): a recording, a push into the
local room (frames checked by a subscriber), a push_control status call, the recording stopped by
RemoveUser and its COS object decoded. Cold start: the push server's process start -> the first frame
in the room, the median of N pushes (--compare: as many from this interpreter outside the sandbox,
interleaved, for what the sandbox costs). Exit status 1 when a step failed.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from deploy import package
from deploy.image import build as image_build
from deploy.image.elf import BASE_SYSTEMS

CACHE = Path(os.environ.get("TRTC_ROOTFS_CACHE", "/var/cache/trtc-rootfs"))
UID = 10000  # the Dockerfile's USER
VARIANT = "minbase"
# Bumped when what is done to the root file system after mmdebstrap changes (part of the key).
RECIPE = 1
# The Debian package holding each system library elf.BASE_SYSTEMS lists; every other one is glibc's (libc6).
LIBRARY_PACKAGES = {"libstdc++.so.6": "libstdc++6", "libgcc_s.so.1": "libgcc-s1", "libz.so.1": "zlib1g"}
# What mmdebstrap does to the tree after installing (as the Dockerfile's groupadd/useradd, and the
# official image's interpreter path, which the image's command names).
CUSTOMIZE = (
    f'echo "scf:x:{UID}:" >> "$1/etc/group"',
    f'echo "scf:x:{UID}:{UID}::/tmp:/usr/sbin/nologin" >> "$1/etc/passwd"',
    'echo "scf:*:19000:0:99999:7:::" >> "$1/etc/shadow"',
    'mkdir -p "$1/app"',
    'ln -sf /usr/bin/python{python} "$1/usr/local/bin/python3"',
)
# The image's environment (the official python image's PATH and LANG; the Dockerfile's HOME).
IMAGE_ENV = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
             "HOME": "/tmp"}
# Started as the image would be: see the module docstring. $1 the root file system, $2 app/.
SANDBOX = r"""set -e
root=$1; app=$2; shift 2
mount --bind -o ro "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$app" "$root/app"
mount -o remount,bind,ro "$root/app"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=1g tmpfs "$root/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs "$root/dev"
for n in null zero full random urandom; do touch "$root/dev/$n"; mount --bind "/dev/$n" "$root/dev/$n"; done
ln -s /proc/self/fd "$root/dev/fd"
mount -o remount,ro "$root/dev"
exec chroot "$root" setpriv --reuid=%(uid)d --regid=%(uid)d --clear-groups --inh-caps=-all --bounding-set=-all \
  --no-new-privs -- env -C /app/code "$@"
""" % {"uid": UID}
COLD_START_TARGET_S = 0.5
# The pushed clip (160x120, 25 fps, AAC in 20 ms frames), longer than the push is let run: push_control
# stops it once PUSHED_S seconds of it reached the room, however slow the machine.
CLIP_S = 30.0
PUSHED_S = 3
CONTROL_TOKEN = "check-image-control-token"


class RootfsError(Exception):
    """The root file system cannot be built or used; the message says why."""


# --- the root file system -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    base_line: str  # the Dockerfile's FROM image, as written
    release: str  # bookworm
    python: str  # 3.11
    packages: tuple[str, ...]

    @property
    def key(self) -> str:
        spec = [self.base_line, self.release, VARIANT, list(self.packages), RECIPE]
        return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:12]

    @property
    def directory(self) -> Path:
        return CACHE / f"{self.release}-{self.key}"

    @property
    def root(self) -> Path:
        return self.directory / "root"

    def built(self) -> bool:
        return (self.directory / "complete.json").is_file()


def recipe(dockerfile: Path | None = None) -> Recipe:
    """What the root file system holds, read from the Dockerfile's FROM line and elf.BASE_SYSTEMS."""
    line = image_build.base_image(dockerfile)
    python, system = image_build.base_of(line)
    [release] = [name for name, s in BASE_SYSTEMS.items() if s is system]
    packages = {f"python{python}"}
    packages.update(LIBRARY_PACKAGES.get(library, "libc6") for library in system.libraries)
    return Recipe(line, release, python, tuple(sorted(packages)))


def apt_sources(release: str, etc: Path = Path("/etc/apt")) -> list[str]:
    """The archive lines apt is configured with for `release` (its suites: bookworm, bookworm-updates,
    bookworm-security), as one-line `deb URI SUITE COMPONENTS` entries, main only."""
    entries: list[tuple[str, str]] = []  # (uri, suite)
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for f in files:
        for line in f.read_text("utf-8").splitlines() if f.is_file() else ():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb" and "main" in words[3:]:
                entries.append((words[1], words[2]))
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text("utf-8")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
            if "deb" in fields.get("types", "").split() and "main" in fields.get("components", "").split() \
                    and fields.get("enabled", "yes").lower() != "no":
                entries += [(uri, suite) for uri in fields.get("uris", "").split() for suite in fields["suites"].split()]
    lines = [f"deb {uri} {suite} main" for uri, suite in entries if suite == release or suite.startswith(release + "-")]
    if not any(line.split()[2] == release for line in lines):
        raise RootfsError(f"apt is configured with no archive for Debian {release} (main) in {etc}/sources.list*")
    return list(dict.fromkeys(lines))


def build_rootfs(r: Recipe, log: Callable[[str], None] = print) -> float:
    """Build the root file system into the cache unless it is there; the seconds it took (0: cached)."""
    if r.built():
        return 0.0
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise RootfsError("mmdebstrap is not installed (Debian's mmdebstrap package; ./dev check-image installs it)")
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{r.release}-{r.key}-", dir=CACHE))
    hooks = [f"--customize-hook={h.format(python=r.python)}" for h in CUSTOMIZE]
    cmd = [mmdebstrap, "--quiet", f"--variant={VARIANT}", "--include=" + ",".join(r.packages), *hooks,
           r.release, str(staging / "root"), *apt_sources(r.release)]
    log(f"building the {r.release} root file system ({', '.join(r.packages)}) into {r.directory} ...")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RootfsError(f"mmdebstrap failed (exit {proc.returncode}):\n" + "\n".join(proc.stdout.splitlines()[-25:]))
    version = subprocess.run(["chroot", str(staging / "root"), "/usr/local/bin/python3", "-c",
                              "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    (staging / "complete.json").write_text(json.dumps({
        "base": r.base_line, "release": r.release, "packages": list(r.packages), "python": version,
        "build_seconds": round(took, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}), "utf-8")
    shutil.rmtree(r.directory, ignore_errors=True)
    staging.rename(r.directory)
    return took


def _hardlink_copy(src: Path, dest: Path) -> None:
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, copy_function=link, ignore=shutil.ignore_patterns("__pycache__"))


def install_app(r: Recipe, context: Path, dest: Path) -> Path:
    """The context's app/ at `dest`/app, compiled by the root file system's interpreter (mounted at
    /app, as the Dockerfile's `COPY app/...` + `RUN python -m compileall ... /app && chmod -R a+rX,go-w
    /app`). The files are hard links to the context's (the chmod reaches them: a+rX,go-w only); the
    bytecode is added beside them. What the wheels need is in the root file system: the context's build
    checked it against elf.BASE_SYSTEMS, whose libraries the recipe installs."""
    app = dest / "app"
    _hardlink_copy(context / "app", app)
    script = ('set -e; mount --bind "$2" "$1/app"; chroot "$1" /usr/local/bin/python3 '
              + " ".join(image_build.COMPILE_ARGS) + ' /app; chmod -R a+rX,go-w "$2"')
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(r.root),
                           str(app)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RootfsError(f"compiling /app in the root file system failed (exit {proc.returncode}):\n"
                          + (proc.stderr or proc.stdout)[-3000:])
    return app


# --- an entry server started as the image would be ------------------------------------------------


def loopback_only() -> bool:
    """This process's network namespace has no interface but loopback."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scf_headers(request_id: str, name: str, role: tuple[str, str, str] | None = None,
                timeout_ms: int = 120_000) -> dict[str, str]:
    """The headers SCF sends with an invocation (emulator/scf/image_runner.py sends the same)."""
    headers = {"Content-Type": "application/json", "X-Scf-Request-Id": request_id, "X-Scf-Timeout": str(timeout_ms),
               "X-Scf-Memory": "1024", "X-Scf-Name": name, "X-Scf-Namespace": "default", "X-Scf-Version": "$LATEST",
               "X-Scf-Region": "ap-guangzhou", "X-Scf-Appid": "1250000000", "X-Scf-Uin": "100000000001",
               "X-Scf-Trigger-Src": "timer"}
    if role:
        headers.update(zip(("X-Scf-Secret-Id", "X-Scf-Secret-Key", "X-Scf-Session-Token"), role))
    return headers


class Sandboxed:
    """One entry server (or `server.py --check`) in the root file system, as the image runs it; with
    `sandboxed=False`, from the same tree by this interpreter (`--compare`: the same start, outside)."""

    def __init__(self, root: Path, app: Path, function: str, env: dict[str, str], logs: Path,
                 args: Sequence[str] = (), sandboxed: bool = True):
        self.port = _free_port()
        logs.mkdir(parents=True, exist_ok=True)
        self.function = function
        self.out_path, self.err_path = logs / f"{function}-{self.port}.out", logs / f"{function}-{self.port}.log"
        full_env = {**IMAGE_ENV, "ENTRY_FUNCTION": function, "ENTRY_LISTEN": f"127.0.0.1:{self.port}", **env}
        self.sandboxed = sandboxed
        if sandboxed:
            cmd = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                   "sh", "-c", SANDBOX, "sh", str(root), str(app), *image_build.COMMAND, *args]
        else:
            full_env["HOME"] = tempfile.gettempdir()
            cmd = [sys.executable, *image_build.COMMAND[1:-1], str(app / "code" / "server.py"), *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=err,
                                         cwd="/" if sandboxed else str(app / "code"))

    def server_pid(self) -> int | None:
        """The host's pid of the process that runs in the sandbox (unshare's child, then python)."""
        if not self.sandboxed:
            return self.proc.pid
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def wait_listening(self, timeout: float = 30.0) -> float:
        """Seconds from the process's start to GET / answering 200 (SCF allows 30 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RootfsError(f"{self.function}: the entry server exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                if self.request("GET", "/", timeout=1)[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                time.sleep(0.005)
        raise RootfsError(f"{self.function}: the entry server did not listen within {timeout:g} s:\n{self.log()[-3000:]}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 120.0) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")

    def invoke(self, event: Any, headers: dict[str, str], timeout: float = 120.0) -> tuple[int, Any]:
        """POST /event-invoke as SCF does."""
        return self.request("POST", "/event-invoke", json.dumps(event).encode(), headers, timeout=timeout)

    def log(self) -> str:
        return self.err_path.read_text("utf-8", "replace") + self.out_path.read_text("utf-8", "replace")

    def stop(self) -> None:
        pid = self.server_pid()
        if self.proc.poll() is None and pid:
            try:
                os.kill(pid, signal.SIGTERM)  # as SCF ends a container: the server forwards it to its workers
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # --kill-child: the sandbox's first process goes too, and its namespace with it
            self.proc.wait()


def sandbox_facts(pid: int) -> dict[str, Any]:
    """What the process `pid` runs as and sees, read from the host's /proc: uid/gid, groups,
    capabilities, how / and /tmp are mounted, its network interfaces."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    mounts: dict[str, tuple[str, str]] = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        parts = left.split()
        mounts[parts[4]] = (right.split()[0], parts[5].split(",")[0])  # mount point -> (fs type, ro|rw)
    net = sorted(ln.split(":")[0].strip() for ln in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:])
    # Where files can be written: /proc and the device files bound into /dev are rw as in any container.
    writable = sorted(m for m, (_, mode) in mounts.items() if mode == "rw" and m != "/proc" and not m.startswith("/dev/"))
    return {"uid": status["Uid"].split()[:2], "gid": status["Gid"].split()[:2], "groups": status["Groups"].split(),
            "cap_eff": status["CapEff"].strip(), "root": mounts.get("/"), "tmp": mounts.get("/tmp"),
            "app": mounts.get("/app"), "writable": writable, "net": net}


def tree_cpu_seconds(pid: int, started_by: float) -> float:
    """CPU seconds (user + system, reaped children's included) used so far by `pid` and those of its
    descendants started by `started_by` (time.monotonic(), on the clock of /proc's start times): what a
    start costs whatever the machine's load, unlike its wall time."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            # The fields after the command's closing parenthesis: state is field 3 (index 0) in proc(5).
            stat = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            children = [c for t in Path(f"/proc/{p}/task").iterdir() for c in (t / "children").read_text().split()]
        except OSError:
            continue
        if int(stat[19]) / tick > started_by:  # starttime: a spare worker started after the call
            continue
        total += sum(int(v) for v in stat[11:15]) / tick  # utime, stime, cutime, cstime
        todo += [int(c) for c in children]
    return total


# --- the check ------------------------------------------------------------------------------------


@dataclass
class Row:
    step: str
    ok: bool
    detail: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def add(self, step: str, ok: bool, detail: str) -> bool:
        self.rows.append(Row(step, ok, detail))
        return ok

    def table(self) -> Iterator[str]:
        width = max((len(r.step) for r in self.rows), default=4)
        yield f"{'step'.ljust(width)}  ok    detail"
        for r in self.rows:
            yield f"{r.step.ljust(width)}  {'yes ' if r.ok else 'NO  '}  {r.detail}"


def _wait(predicate: Callable[[], Any], timeout: float, every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)


class _Subscriber:
    """An audience member of the local room noting when `user_id`'s first frame arrives, and counting."""

    def __init__(self, address: str, sdk_app_id: int, room: int, user_id: str, usersig: Callable[[str], str]):
        from shared.room import EnterParams, RemoteAudio, RemoteVideo, Role, RoomRef, VideoFormat
        from shared.room.local import LocalRoom

        host, _, port = address.rpartition(":")
        self.room = LocalRoom(host, int(port))
        self.first_at: float | None = None
        self.video = self.audio = 0
        self._stop = threading.Event()
        me = "check-subscriber"
        self.room.enter(EnterParams(sdk_app_id, RoomRef(room), me, usersig(me), role=Role.AUDIENCE,
                                    video_output=VideoFormat.H264, audio_output_channels=1))

        def run() -> None:
            while not self._stop.is_set():
                event = self.room.poll(0.05)
                if isinstance(event, (RemoteAudio, RemoteVideo)) and event.user_id == user_id:
                    self.first_at = self.first_at or time.monotonic()
                    if isinstance(event, RemoteVideo):
                        self.video += 1
                    else:
                        self.audio += 1

        from shared.worker import spawn
        self._thread = spawn(run, "check-subscriber")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.room.exit()


def _call(fn: Callable[[], tuple[int, Any]], into: dict[str, Any], key: str) -> Any:
    """`fn` on a thread of its own (shared.worker.spawn); its answer lands in into[key]."""
    from shared.worker import spawn

    def run() -> None:
        try:
            into[key] = fn()
        except Exception as e:  # reported as the step's failure
            into[key] = (0, f"{type(e).__name__}: {e}")

    return spawn(run, f"check-{key}")


def drive(root: Path, app: Path, work: Path, cold_starts: int = 1, compare: bool = False) -> Report:
    """Boot the entry servers in the root file system and drive them through a recording, a push, a
    push_control call; what held, as a Report. `cold_starts` pushes started cold in all (the median
    is reported); `compare`: as many from this interpreter outside the sandbox, interleaved."""
    import av

    from emulator.callbacks import CallbackReceiver
    from emulator.cos import CosService
    from emulator.media import make_clip
    from emulator.mediaserver import MediaHTTPServer
    from emulator.redis import RedisServer
    from emulator.trtc import RoomService
    from shared.cos.urls import parse_cos_url

    report = Report()
    servers: list[Sandboxed] = []
    stack: list[Callable[[], None]] = []
    logs = work / "logs"

    def start(function: str, env: dict[str, str], args: Sequence[str] = (), sandboxed: bool = True) -> Sandboxed:
        server = Sandboxed(root, app, function, env, logs, args, sandboxed)
        servers.append(server)
        return server

    try:
        media = work / "media"
        media.mkdir(parents=True, exist_ok=True)
        make_clip(media / "clip.mp4", duration=CLIP_S, width=160, height=120, fps=25)
        if cold_starts > 1 or compare:
            make_clip(media / "short.mp4", duration=1.0, width=160, height=120, fps=25)
        role = ("AKIDcheckImageRole00000000000000", "checkImageRoleSecret000000000000", "checkImageRoleToken")
        cos = CosService(state_dir=str(work / "cos"), temporary_credentials=[role]).start()
        stack.append(cos.stop)
        rooms = RoomService().start()
        stack.append(rooms.stop)
        redis_server = RedisServer(work / "redis").start()
        stack.append(redis_server.stop)
        http_media = MediaHTTPServer(media).start()
        stack.append(http_media.stop)
        callbacks = CallbackReceiver().start()
        stack.append(callbacks.stop)
        env = {**rooms.env, "COS_ENDPOINT": cos.endpoint_url, "PACING_SPEED": "1",
               "SOURCE_ALLOWLIST": "127.0.0.0/8", "CALLBACK_ALLOWLIST": "127.0.0.0/8",
               "REDIS_ALLOWLIST": "127.0.0.0/8", "COS_ALLOWLIST": "127.0.0.0/8"}

        # 0. What the image's build checks inside a built image: the native modules load there.
        check = start("push_stream", {}, ["--check"])
        check.proc.wait(timeout=120)
        lines = [ln for ln in check.out_path.read_text().splitlines() if ln.startswith("{")]
        loaded = json.loads(lines[-1]) if lines else {}
        if not report.add("native modules load", check.proc.returncode == 0 and bool(loaded.get("trtc")) and bool(loaded.get("h264")),
                          f"Python {loaded.get('python')}, {loaded.get('glibc')}; {', '.join(loaded.get('modules', {}))}"
                          if loaded else check.log()[-800:]):
            return report

        # 1. A recording of the room, waiting for someone to publish.
        room = 4_400_001
        answers: dict[str, Any] = {}
        recorder = start("record_stream", env)
        control = start("push_control", env)  # ready before the push starts: only the push's start is timed
        recorder.wait_listening()
        control.wait_listening()
        record_event = {"SdkAppId": rooms.sdk_app_id, "RoomId": room, "UserId": "recorder",
                        "UserSig": rooms.usersig("recorder"), "Callback": callbacks.url, "Mode": "02",
                        "CosConfig": {"Region": cos.region, "Bucket": cos.bucket, "Path": "/check-image"}}
        recording = _call(lambda: recorder.invoke(record_event, scf_headers("req-check-record", "record_stream", role)),
                          answers, "req-check-record")
        entered = _wait(lambda: "recorder" in rooms.rooms.user_ids(rooms.sdk_app_id, room), 60)
        facts = sandbox_facts(recorder.server_pid() or 0)
        isolated = (facts["uid"] == [str(UID)] * 2 and facts["gid"] == [str(UID)] * 2 and not facts["groups"]
                    and int(facts["cap_eff"], 16) == 0 and facts["root"][1] == "ro" and facts["app"][1] == "ro"
                    and facts["tmp"] == ("tmpfs", "rw") and facts["writable"] == ["/tmp"] and facts["net"] == ["lo"])
        report.add("sandbox", isolated, f"uid/gid {facts['uid'][0]}/{facts['gid'][0]}, groups {facts['groups'] or 'none'}, "
                   f"caps {facts['cap_eff']}, / {facts['root'][1]}, /app {facts['app'][1]}, writable {facts['writable']}, "
                   f"net {facts['net']}")
        if not report.add("record_stream enters the room", bool(entered), "the recorder is in the room" if entered
                          else f"not in the room after 60 s:\n{recorder.log()[-2000:]}"):
            return report

        # 2. A push, its server started cold: process start -> the first frame in the room.
        cpu: dict[bool, list[float]] = {True: [], False: []}  # sandboxed -> CPU seconds to the first frame

        def push(room_id: int, clip: str, request_id: str, sandboxed: bool = True
                 ) -> tuple[Sandboxed, _Subscriber, Any, float]:
            """A fresh push_stream server invoked as soon as it listens; the pusher, the subscriber
            watching, the call's thread (its answer in answers[request_id]) and the listening time.
            The CPU its processes used by the first frame goes to cpu[sandboxed]."""
            sub = _Subscriber(rooms.address, rooms.sdk_app_id, room_id, "anchor", rooms.usersig)
            stack.append(sub.close)
            event = {"videoSrc": http_media.url(clip), "sdkAppId": rooms.sdk_app_id, "roomId": room_id,
                     "userId": "anchor", "userSig": rooms.usersig("anchor"), "redis": True,
                     "redisHost": redis_server.host, "redisPort": redis_server.port, "controlToken": CONTROL_TOKEN}
            server = start("push_stream", env, sandboxed=sandboxed)
            listening = server.wait_listening()
            invoked = time.monotonic()
            call = _call(lambda: server.invoke(event, scf_headers(request_id, "push_stream")), answers, request_id)
            _wait(lambda: sub.first_at, 30, every=0.002)
            if sub.first_at is not None:
                cpu[sandboxed].append(tree_cpu_seconds(server.server_pid() or 0, invoked))
            return server, sub, call, listening

        pusher, subscriber, pushing, listening = push(room, "clip.mp4", "req-check-push")
        if subscriber.first_at is None:
            report.add("push: first frame", False, f"no frame within 30 s:\n{pusher.log()[-2000:]}")
            return report
        colds = [subscriber.first_at - pusher.started]
        # 3. push_control, its own server (started with the recorder's): the running push's state, then,
        # once PUSHED_S of it reached the room, a graceful stop (the clip is longer than any wait here).
        def control_call(action: str, request_id: str) -> tuple[int, Any]:
            return control.invoke({"requestId": "req-check-push", "action": action, "controlToken": CONTROL_TOKEN,
                                   "redisHost": redis_server.host, "redisPort": redis_server.port},
                                  scf_headers(request_id, "push_control", timeout_ms=10_000), timeout=30)

        status, state = control_call("status", "req-check-status")
        held = status == 200 and isinstance(state, dict) and state.get("applied") is True \
            and state.get("state", {}).get("status") == "playing"
        report.add("push_control status", held, f"playing at {state['state'].get('position')} s" if held
                   else f"HTTP {status}: {str(state)[:300]}")
        _wait(lambda: subscriber.video >= PUSHED_S * 25, 30)
        status, state = control_call("stop", "req-check-stop")
        stopping = status == 200 and isinstance(state, dict) and state.get("applied") is True
        report.add("push_control stop", stopping, f"applied at {state['state'].get('position')} s" if stopping
                   else f"HTTP {status}: {str(state)[:300]}")

        pushing.join(60)
        status, pushed = answers.get("req-check-push", (0, "no answer within 60 s"))
        sent: dict[str, int] = pushed.get("framesSent") or {} if isinstance(pushed, dict) else {}
        done = status == 200 and isinstance(pushed, dict) and (pushed.get("status"), pushed.get("reason")) \
            == ("terminated", "control_stop")
        # Every frame the push says it sent arrived (the room may still be delivering the last ones).
        _wait(lambda: subscriber.video >= sent.get("video", 1 << 30) and subscriber.audio >= sent.get("audio", 1 << 30), 5)
        arrived = bool(sent) and subscriber.video == sent.get("video", 0) >= PUSHED_S * 25 and subscriber.audio == sent.get("audio", 0)
        report.add("push into the room", done and arrived,
                   f"{pushed.get('status')} ({pushed.get('reason')}) at {pushed.get('position')} s; sent "
                   f"{sent.get('video')} video / {sent.get('audio')} audio frames, the subscriber got "
                   f"{subscriber.video} / {subscriber.audio}" if isinstance(pushed, dict) else f"HTTP {status}: {pushed}")

        # 4. The recording stopped as people stop it (RemoveUser), its file in COS decoded.
        from tencentcloud.trtc.v20190722 import models

        req = models.RemoveUserRequest()
        req.SdkAppId, req.RoomId, req.UserIds = rooms.sdk_app_id, room, ["recorder"]
        rooms.trtc_client().RemoveUser(req)
        recording.join(90)
        status, recorded = answers.get("req-check-record", (0, "no answer within 90 s"))
        stopped = status == 200 and isinstance(recorded, dict) and recorded.get("Reason") == "removed"
        detail = "stopped by RemoveUser" if stopped else f"HTTP {status}: {str(recorded)[:300]}"
        if stopped:
            try:
                body = callbacks.wait_for(1, timeout=15.0)[0].json
                [file] = [f for f in body["Files"] if f["UserId"] == "anchor"]
                _bucket, _region, key = parse_cos_url(file["RecordFile"])
                with av.open(io.BytesIO(cos.get_object_bytes(key)), mode="r") as container:
                    kinds = sorted(s.type for s in container.streams)
                    duration = (container.duration or 0) / 1e6
                    frames = sum(1 for _ in container.decode(video=0))
                stopped = kinds == ["audio", "video"] and frames >= subscriber.video - 10
                detail = f"COS {key}: {'+'.join(kinds)}, {duration:.1f} s, {frames} video frames decoded"
            except Exception as e:  # reported in the table
                stopped, detail = False, f"{type(e).__name__}: {e}"
        report.add("record to COS", stopped, detail)

        # 5. More cold starts (a 1 s clip each, a room of its own), for a median on a noisy machine;
        # with `compare`, each followed by the same start from this interpreter, outside the sandbox.
        outside: list[float] = []
        for i in range(1, cold_starts + 1):
            for sandboxed in (True, False) if compare else (True,):
                if sandboxed and i == cold_starts:
                    continue  # the first push above was one
                server, sub, call, _ = push(room + i + (0 if sandboxed else 100), "short.mp4",
                                            f"req-check-cold-{i}-{'in' if sandboxed else 'out'}", sandboxed)
                if sub.first_at is not None:
                    (colds if sandboxed else outside).append(sub.first_at - server.started)
                call.join(30)
                server.stop()
        if compare and outside:
            median, median_cpu = sorted(outside)[len(outside) // 2], sorted(cpu[False])[len(cpu[False]) // 2]
            report.figures.update(cold_start_outside_s=round(median, 3), cold_starts_outside_s=[round(c, 3) for c in outside],
                                  cold_start_outside_cpu_s=round(median_cpu, 3))
            report.add("push: cold start outside", len(outside) == cold_starts,
                       f"the same tree by this interpreter ({sys.version.split()[0]}), no sandbox, interleaved: "
                       f"{median:.3f} s (median of {len(outside)}: {', '.join(f'{c:.2f}' for c in outside)}), "
                       f"CPU {median_cpu:.2f} s")
        cold = sorted(colds)[len(colds) // 2]
        cold_cpu = sorted(cpu[True])[len(cpu[True]) // 2]
        report.figures.update(listening_s=round(listening, 3), cold_start_s=round(cold, 3),
                              cold_starts_s=[round(c, 3) for c in colds], cold_start_cpu_s=round(cold_cpu, 3))
        each = f" (median of {len(colds)}: {', '.join(f'{c:.2f}' for c in colds)})" if len(colds) > 1 else ""
        missed = "" if cold <= COLD_START_TARGET_S else ": missed"
        report.add("push: cold start", len(colds) == cold_starts,
                   f"process start -> listening {listening:.3f} s, -> first frame in the room {cold:.3f} s{each}; "
                   f"target <= {COLD_START_TARGET_S} s{missed}; CPU used by then {cold_cpu:.2f} s")
        return report
    finally:
        for server in servers:
            server.stop()
        for stop in reversed(stack):
            try:
                stop()
            except Exception as e:  # the rest still stop
                print(f"check-image: stopping: {type(e).__name__}: {e}", file=sys.stderr)
        tracebacks = [s.function for s in servers if "Traceback" in s.log()]
        if tracebacks:
            report.add("logs", False, f"a traceback in the log of {', '.join(tracebacks)} (see {logs})")


# --- the command ----------------------------------------------------------------------------------


def stamp_path(repo: Path = package.REPO_ROOT) -> Path:
    """The stamp of the last check that passed, named by a hash of deploy/ and requirements*.txt."""
    h = hashlib.sha1()
    files = sorted(p for p in (repo / "deploy").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for p in [*files, *sorted(repo.glob("requirements*.txt"))]:
        h.update(p.relative_to(repo).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return CACHE / f"checked-{h.hexdigest()[:16]}"


def _build(out: Path) -> tuple[Recipe, Path, dict[str, float]]:
    r = recipe()
    took = build_rootfs(r)
    t0 = time.monotonic()
    context = image_build.write_context(out / "image", out / ".cache")
    t1 = time.monotonic()
    app = install_app(r, Path(context.directory), out / "rootfs-app")
    return r, app, {"rootfs_build_s": round(took, 1), "package_s": round(t1 - t0, 1),
                    "compile_s": round(time.monotonic() - t1, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deploy.image.rootfs", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("command", choices=("build", "check"))
    ap.add_argument("--out", type=Path, default=package.REPO_ROOT / "build", help="build folder (default build/)")
    ap.add_argument("--app", type=Path, default=None, help="check: the app/ tree to boot (default "
                    "OUT/rootfs-app/app, what build leaves)")
    ap.add_argument("--cold-starts", type=int, default=3, help="check: pushes started cold, the median "
                    "reported (default %(default)s)")
    ap.add_argument("--compare", action="store_true", help="check: as many cold starts of the same tree by "
                    "this interpreter, outside the sandbox, interleaved (what the root file system costs)")
    ap.add_argument("--if-changed", action="store_true", help="check: do nothing when a check of the same "
                    "deploy/ and requirements*.txt passed on this machine")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    try:
        if os.geteuid() != 0:
            raise RootfsError("booting the image's tree needs root (mount, chroot, setpriv)")
        if args.if_changed and stamp_path().exists():
            print(f"check-image: deploy/ and requirements*.txt unchanged since the last passing check ({stamp_path().name})")
            return 0
        if args.command == "build":
            r, app, figures = _build(out)
            print(f"rootfs {r.root} ({', '.join(r.packages)}): built in {figures['rootfs_build_s']} s"
                  if figures["rootfs_build_s"] else f"rootfs {r.root}: cached")
            print(f"context packaged in {figures['package_s']} s; app/ compiled by the rootfs's interpreter in "
                  f"{figures['compile_s']} s: {app}")
            (out / "rootfs-app" / "figures.json").write_text(json.dumps(figures), "utf-8")
            return 0
        if not loopback_only():  # one namespace with loopback alone, shared by the local cloud and the servers
            if shutil.which("unshare") is None or shutil.which("ip") is None:
                raise RootfsError("unshare and ip are needed to run the check with loopback alone")
            os.execvp("unshare", ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                                  sys.executable, "-m", "deploy.image.rootfs", *(argv if argv is not None else sys.argv[1:])])
        r = recipe()
        app = (args.app or out / "rootfs-app" / "app").resolve()
        if not r.built() or not (app / "code" / "server.py").is_file():
            raise RootfsError(f"nothing to boot: run `python -m deploy.image.rootfs build` first (rootfs {r.directory}, "
                              f"app {app})")
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="check-image-") as work:
            report = drive(r.root, app, Path(work), max(1, args.cold_starts), args.compare)
        report.figures["check_s"] = round(time.monotonic() - t0, 1)
    except (RootfsError, package.PackageError) as e:
        print(f"check-image: {e}", file=sys.stderr)
        return 1
    built = json.loads((r.directory / "complete.json").read_text())
    print(f"image tree {app} on {r.release} ({built['python'] and 'CPython ' + built['python']}, rootfs {r.directory})")
    for line in report.table():
        print(line)
    print(f"figures: {json.dumps(report.figures)}")
    if report.ok:
        stamp_path().write_text(json.dumps(report.figures), "utf-8")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
