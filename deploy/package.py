"""What packaging needs below the image's build (deploy/image/build.py): requirements.txt installed for
the image's CPython, the functions' code root, sizes, and `PackageError`. The command is deploy/__main__.py:

    python -m deploy [--tag NAME:TAG] [--out build] [--cache DIR]      (or ./dev package)

It writes OUT/image (see deploy/image/build.py): the Dockerfile, app/site (requirements.txt installed
for the image's CPython, read from the Dockerfile's FROM line: manylinux x86_64 wheels, never this
machine's), app/code (the entry server, index.py, functions/, shared/) and manifest.json; checks
what the `.so` files need against the base (deploy/image/elf.py) and fails naming what it lacks.

A requirement published only as an sdist and whose C part is optional (crcmod, from
cos-python-sdk-v5) is turned into a pure-Python wheel first.
"""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from deploy.entry import FUNCTIONS

REPO_ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
MB = 1024 * 1024

# Requirements published only as sdists whose compiled part is optional: (version, the folder of the
# sdist holding the pure-Python package, the package's name). Built here into py3-none-any wheels.
PURE_FROM_SDIST = {"crcmod": ("1.7", "python3/crcmod", "crcmod")}

# Dropped from every package: bytecode for another interpreter, Cython sources, type stubs.
_DROP_SUFFIXES = (".pyc", ".pyo", ".pyx", ".pxd", ".pyi")
_DROP_DIRS = ("__pycache__",)


class PackageError(Exception):
    """The package cannot be built; the message says why."""


# --- sizes -----------------------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human(n: int) -> str:
    return f"{n / MB:.1f} MB"


# --- dependencies ----------------------------------------------------------------------------------


def target_requirements(requirements: Path, python: str) -> list[str]:
    """requirements.txt's lines for the image (Linux, x86_64, CPython `python`): markers evaluated there."""
    from packaging.markers import Marker

    env = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "python_version": python, "python_full_version": f"{python}.0"}
    out = []
    for raw in requirements.read_text("utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            continue
        out.append(req.strip())
    return out


def _pip(args: Sequence[str], what: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stdout.splitlines() if "is ignored: it is neither a file" not in ln]
        raise PackageError(f"{what} failed (pip exit {proc.returncode}):\n" + "\n".join(lines[-25:]))


def _write_pure_wheel(dest: Path, name: str, version: str, package_dir: Path, package: str) -> Path:
    """A py3-none-any wheel holding `package_dir` as the importable package `package`."""
    dist = f"{name}-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for f in sorted(package_dir.rglob("*.py")):
        files.append((f"{package}/{f.relative_to(package_dir).as_posix()}", f.read_bytes()))
    files.append((f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()))
    files.append((f"{dist}/WHEEL", b"Wheel-Version: 1.0\nGenerator: deploy.package\nRoot-Is-Purelib: true\n"
                                   b"Tag: py3-none-any\n"))
    record = []
    for arc, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arc},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files.append((f"{dist}/RECORD", ("\n".join(record) + "\n").encode()))
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in files:
            zf.writestr(arc, data)
    return wheel


def pure_wheelhouse(cache: Path) -> Path:
    """Wheels built here for the sdist-only requirements (see PURE_FROM_SDIST)."""
    house = cache / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
    for name, (version, subdir, package) in PURE_FROM_SDIST.items():
        if (house / f"{name}-{version}-py3-none-any.whl").exists():
            continue
        sdists = cache / "sdists"
        sdists.mkdir(parents=True, exist_ok=True)
        _pip(["download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(sdists), f"{name}=={version}"],
             f"downloading the {name} sdist")
        archive = next(iter(sorted(sdists.glob(f"{name}-{version}.tar.gz"))), None)
        if archive is None:
            raise PackageError(f"pip downloaded no {name}-{version}.tar.gz")
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
            _write_pure_wheel(house, name, version, Path(tmp) / f"{name}-{version}" / subdir, package)
    return house


def install_dependencies(requirements: Path, python: str, cache: Path) -> Path:
    """requirements.txt installed for the image's CPython `python` (manylinux x86_64 wheels) into a
    folder under `cache`, reused while nothing changed."""
    reqs = target_requirements(requirements, python)
    key = hashlib.sha1(json.dumps([python, PLATFORMS, reqs, sorted(PURE_FROM_SDIST.items())]).encode()).hexdigest()[:12]
    target = cache / f"site-{python}-{key}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    house = pure_wheelhouse(cache)
    req_file = cache / f"requirements-{python}-{key}.txt"
    req_file.write_text("\n".join(reqs) + "\n", "utf-8")
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    _pip(["install", "-q", "--no-compile", "--target", str(target), *platforms, "--implementation", "cp",
          "--python-version", python, "--only-binary=:all:", "--find-links", str(house), "-r", str(req_file)],
         f"installing requirements.txt for CPython {python} on manylinux x86_64")
    strip(target)
    (target / ".complete").write_text("", "utf-8")
    return target


def strip(root: Path) -> None:
    """Remove what the runtime never reads: bytecode, Cython sources, stubs, packages' own tests."""
    for p in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if p.is_dir() and (p.name in _DROP_DIRS or (p.name in ("tests", "test") and p.parent != root
                                                    and (p.parent / "__init__.py").exists())):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and p.suffix in _DROP_SUFFIXES:
            p.unlink()
    bin_dir = root / "bin"  # console scripts point at this machine's interpreter
    if bin_dir.is_dir():
        shutil.rmtree(bin_dir)


# --- code root -------------------------------------------------------------------------------------


def build_code_root(dest: Path) -> None:
    """index.py (deploy/entry.py), functions/<name>/ of each function entry.FUNCTIONS lists, and shared/."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "deploy" / "entry.py", dest / "index.py")
    no_bytecode = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for name in FUNCTIONS:
        if not (REPO_ROOT / "functions" / name / "index.py").is_file():
            raise PackageError(f"deploy/entry.py FUNCTIONS lists {name!r}, but functions/{name}/index.py is missing")
        shutil.copytree(REPO_ROOT / "functions" / name, dest / "functions" / name, ignore=no_bytecode)
    shutil.copytree(REPO_ROOT / "shared", dest / "shared", ignore=no_bytecode)
