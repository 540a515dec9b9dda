"""A bare Debian 12 root file system for the image's tree, built once per machine with mmdebstrap,
and the image's command started in it as SCF starts the image (`./dev check-image`).

    root = rootfs.ensure()                  # cached: /var/cache/trtc-rootfs/<key>/root
    rootfs.compile_app(root, app)           # `python -m compileall` of app/ by the rootfs's CPython
    proc = rootfs.start_server(root, app, env)   # server.py as uid 10000, tree read-only, /tmp writable

The root holds Debian's minbase and CPython 3.11 (python3.11), the `scf` user (uid/gid 10000, home
/tmp) and /usr/local/bin/python3 -> python3.11: what the Dockerfile's base and RUN lines give, with
Debian's CPython in place of python.org's. The cache key is the suite, variant, package list and
hooks: a change to any of them builds a new root beside the old one.

start_server runs in mount and PID namespaces of its own (unshare, root only; stop_server stops it): the cached root bound
read-only, app/ bound read-only at /app, a tmpfs at /tmp, /proc, and a /dev with only null, zero,
random, urandom and a /dev/shm tmpfs; then chroot, setpriv to 10000:10000 with no groups and no new privileges, an
environment of only what is given (HOME=/tmp) and the Dockerfile's CMD from WORKDIR /app/code. It
shares the caller's network namespace: run the caller in one with only loopback (check_image does).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Mapping

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("python3.11",)
MIRROR = "http://deb.debian.org/debian"
UID = GID = 10000
CACHE_ROOT = Path(os.environ.get("TRTC_ROOTFS_CACHE", "/var/cache/trtc-rootfs"))
# What the Dockerfile adds to its base, done in the root once (mmdebstrap --customize-hook).
HOOKS = (
    f'chroot "$1" groupadd --gid {GID} scf',
    f'chroot "$1" useradd --uid {UID} --gid {GID} --home-dir /tmp --no-create-home --shell /usr/sbin/nologin scf',
    'mkdir -p "$1/usr/local/bin" "$1/app" && ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3"',
    'rm -rf "$1/var/cache/apt/archives"/*.deb "$1/var/lib/apt/lists"/*',
)
IMAGE_COMMAND = ("/usr/local/bin/python3", "-I", "-S", "-u", "/app/code/server.py")  # the Dockerfile's CMD
DEVICES = ("null", "zero", "random", "urandom")


class RootfsError(Exception):
    """Why the root file system could not be built or used, in a sentence a person can act on."""


def cache_key() -> str:
    spec = json.dumps({"suite": SUITE, "variant": VARIANT, "packages": PACKAGES, "hooks": HOOKS, "mirror": MIRROR})
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def ensure(cache_root: Path = CACHE_ROOT, log: bool = True) -> Path:
    """The cached root (built now when missing: a few minutes, from Debian's archive)."""
    home = cache_root / cache_key()
    root = home / "root"
    if (home / "built.json").is_file():
        return root
    if os.geteuid() != 0:
        raise RootfsError("building the Debian root needs root (mmdebstrap's root mode, chroot hooks)")
    if shutil.which("mmdebstrap") is None:
        raise RootfsError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="root.", dir=home))
    argv = ["mmdebstrap", f"--variant={VARIANT}", "--mode=root", f"--include={','.join(PACKAGES)}",
            *(f"--customize-hook={hook}" for hook in HOOKS), SUITE, str(work), MIRROR]
    started = time.monotonic()
    if log:
        print(f"building the Debian {SUITE} root in {root} (first run on this machine)...", flush=True)
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise RootfsError(f"mmdebstrap failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    if root.exists():
        shutil.rmtree(root)
    work.rename(root)
    took = time.monotonic() - started
    (home / "built.json").write_text(json.dumps({"seconds": round(took, 1), "argv": argv}, indent=1))
    if log:
        print(f"built the root in {took:.0f} s", flush=True)
    return root


def _namespace_script(root: Path, app: Path, writable_app: bool) -> str:
    """Shell run by `unshare --mount`: the per-run root under a fresh directory, then exec "$@" in it."""
    ro = "" if writable_app else " && mount -o remount,bind,ro \"$R/app\""
    devices = " && ".join(f'touch "$R/dev/{d}" && mount --bind /dev/{d} "$R/dev/{d}"' for d in DEVICES)
    return (
        'set -e; R="$(mktemp -d)"; '
        f'mount --bind "{root}" "$R" && mount -o remount,bind,ro "$R"; '
        f'mount --bind "{app}" "$R/app"{ro}; '
        'mount -t tmpfs -o mode=1777,size=1g tmpfs "$R/tmp"; '
        'mount -t proc proc "$R/proc"; '
        f'mount -t tmpfs -o mode=755,size=1m tmpfs "$R/dev" && {devices}; '
        # POSIX semaphores (multiprocessing's locks) live in /dev/shm, as in a container.
        'mkdir "$R/dev/shm" && mount -t tmpfs -o mode=1777,size=64m tmpfs "$R/dev/shm"; '
        'exec chroot "$R" "$@"'
    )


def compile_app(root: Path, app: Path) -> None:
    """The Dockerfile's compileall, by the root's own CPython, into app/ (bytecode for that interpreter)."""
    argv = ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c",
            _namespace_script(root, app, writable_app=True), "sh",
            "/usr/local/bin/python3", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
            "/app"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RootfsError(f"compileall in the root failed: {done.stderr.strip()[-1500:]}")


def server_argv(root: Path, app: Path, env: Mapping[str, str]) -> list[str]:
    """The command that starts server.py in the root as the image runs it (see the module docstring)."""
    environment = {"HOME": "/tmp", "PATH": "/usr/local/bin:/usr/bin:/bin", **env}
    # A PID namespace of its own: the server is its init, so when it ends its workers end with it.
    return ["unshare", "--mount", "--pid", "--propagation", "private", "--fork", "sh", "-c",
            _namespace_script(root, app, writable_app=False), "sh",
            "/usr/bin/setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--no-new-privs",
            "/usr/bin/env", "-i", "-C", "/app/code", *(f"{k}={v}" for k, v in environment.items()), *IMAGE_COMMAND]


def start_server(root: Path, app: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(server_argv(root, app, env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_server(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM to the server itself (as SCF stops an instance), then SIGKILL after `grace_s`. The
    signal goes to unshare's child, the sandbox's init: unshare does not pass signals on, and the
    parent-death signal does not survive setpriv's change of user."""
    try:
        children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    except OSError:
        children = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for child in children:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass
        try:
            proc.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()
