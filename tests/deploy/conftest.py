"""The package, built once per test session for this machine's Python (3.11, SCF's Python3.11), and
a way to run its handler the way SCF does: unpacked into empty folders, in a fresh interpreter."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy import package
from emulator.scf.runner import UNWRITABLE_HOME

BOOTSTRAP = Path(__file__).with_name("scf_bootstrap.py")
REPO = Path(__file__).resolve().parents[2]
_run_ids = itertools.count(1)


def _tail(path: Path, n: int = 3000) -> str:
    return Path(path).read_text("utf-8", errors="replace")[-n:]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass
class Deployed:
    """The built package unpacked as SCF would: code root in `code` (/var/user), layers in `opt` (/opt)."""

    manifest: package.Manifest
    out: Path
    code: Path
    opt: Path

    def start(self, entry: str, event: Any, env: dict[str, str], request_id: str = "req-deploy") -> subprocess.Popen:
        """The handler of `entry`, started in `python -I -S` with only the package on sys.path.
        Its stdout and stderr go to files (a long run's log would fill a pipe)."""
        context = {"request_id": request_id, "function_name": entry, "namespace": "default",
                   "time_limit_in_ms": 120_000, "memory_limit_in_mb": 1024}
        # HOME where nothing can be created, as on SCF (everything but /tmp is read-only there).
        clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": UNWRITABLE_HOME,
                     "PYTHONDONTWRITEBYTECODE": "x", "ENTRY_FUNCTION": entry, **env}
        logs = self.out / "runs"
        logs.mkdir(exist_ok=True)
        stem = f"{request_id}-{next(_run_ids)}"
        request = logs / f"{stem}.json"
        request.write_text(json.dumps({"paths": [str(self.code), str(self.opt)], "event": event, "context": context}))
        with open(request, "rb") as stdin, open(logs / f"{stem}.out", "wb") as out, \
                open(logs / f"{stem}.log", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", "-S", str(BOOTSTRAP)], cwd=str(self.code),
                                    env=clean_env, stdin=stdin, stdout=out, stderr=err)
        proc.out_path, proc.log_path = logs / f"{stem}.out", logs / f"{stem}.log"  # type: ignore[attr-defined]
        return proc

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float) -> dict[str, Any]:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the handler did not return within {timeout} s; log:\n{_tail(proc.log_path)}")
        out = Path(proc.out_path).read_text("utf-8", errors="replace")
        lines = [ln for ln in out.splitlines() if ln.startswith("{") and ('"result"' in ln or '"error"' in ln)]
        assert lines, f"no result from the handler (exit {proc.returncode}); log:\n{_tail(proc.log_path)}"
        outcome = json.loads(lines[-1])
        assert "error" not in outcome, f"the handler raised {outcome['error']}; log:\n{_tail(proc.log_path)}"
        outcome["log"] = Path(proc.log_path).read_text("utf-8", errors="replace") + out
        return outcome

    def run(self, entry: str, event: Any, env: dict[str, str], timeout: float = 60.0) -> dict[str, Any]:
        return self.finish(self.start(entry, event, env), timeout)


@pytest.fixture(scope="session")
def package_cache() -> Path:
    """Where the dependencies installed for SCF are kept between sessions (build/, ignored by git):
    `./dev package` reuses an install whose requirements did not change."""
    cache = REPO / "build" / ".test-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, package_cache: Path) -> tuple[package.Manifest, Path]:
    """`./dev package --python 3.11` into a session folder."""
    out = tmp_path_factory.mktemp("build")
    manifest = package.build(out, PYTHON, cache=package_cache)
    return manifest, out


@pytest.fixture(scope="session")
def deployed(built, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    manifest, out = built
    root = tmp_path_factory.mktemp("scf")
    code, opt = root / "var-user", root / "opt"
    code.mkdir()
    opt.mkdir()
    with zipfile.ZipFile(manifest.code.zip_path) as zf:
        zf.extractall(code)
    for layer in manifest.layers:  # SCF unpacks every bound layer into /opt
        with zipfile.ZipFile(layer.zip_path) as zf:
            zf.extractall(opt)
    _restore_modes(manifest, code, opt)
    return Deployed(manifest, out, code, opt)


def _restore_modes(manifest: package.Manifest, code: Path, opt: Path) -> None:
    # zipfile drops the executable bit; shared libraries load without it, but keep the files as built.
    for zip_path, dest in [(manifest.code.zip_path, code)] + [(a.zip_path, opt) for a in manifest.layers]:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if mode:
                    os.chmod(dest / info.filename, mode & 0o777)


@pytest.fixture(scope="session")
def image_context(tmp_path_factory: pytest.TempPathFactory, package_cache: Path):
    """`./dev package --image` into a session folder, then compiled as the Dockerfile compiles /app:
    app/ is then the file tree the image holds (what the entry server tests run)."""
    from deploy.image import build as image_build

    out = tmp_path_factory.mktemp("build") / "image"
    context = image_build.write_context(out, PYTHON, cache=package_cache)
    subprocess.run([sys.executable, *image_build.COMPILE_ARGS, str(out / "app")], check=True,
                   stdout=subprocess.DEVNULL, timeout=300)
    return context


@pytest.fixture
def entry_servers(image_context, tmp_path: Path):
    """start(function, env) -> a running EntryServer on the image's tree; all stopped after the test."""
    from tests.deploy.entry_server import EntryServer

    started: list[EntryServer] = []

    def start(function: str, env: dict[str, str] | None = None) -> EntryServer:
        server = EntryServer(Path(image_context.directory) / "app" / "code", function, env or {}, tmp_path / "logs")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
