"""Build what `sls deploy` uploads: the code root of the functions and its dependencies as layers.

    python -m deploy.package [--python 3.11] [--out build] [--cache DIR]      (or ./dev package)
    python -m deploy.package --image [--tag NAME:TAG] ...    the image instead (deploy/image/build.py)

Writes into --out:

    code/ + code.zip            index.py (deploy/entry.py), functions/<name>/index.py, shared/
    layers/<name>/ + <name>.zip the dependencies of requirements.txt for SCF's Linux (manylinux
                                x86_64 wheels for CPython --python), split into layers that each
                                stay under the upload limit; SCF unpacks layers into /opt, which
                                is on the runtime's PYTHONPATH (/var/user:/opt)
    layers/publish-<name>/serverless.yml
                                the `layer` component publishing each (cd build/layers; sls deploy)
    manifest.json               what was built, sizes, and the limits they were checked against

The dependencies are SCF's: `pip install --target --platform manylinux_2_28_x86_64 ...
--only-binary=:all:`, never this machine's. A requirement published only as an sdist and whose
C part is optional (crcmod, from cos-python-sdk-v5) is turned into a pure-Python wheel first.
Sizes are printed and checked against SCF's limits; over a limit the command fails saying which.

The packaged native code (`.so` files) is read too (its ELF dynamic section and version needs, by
the small reader below): what it needs from the runtime's image (glibc, GLIBCXX, system libraries
such as libstdc++.so.6 and libz.so.1) is printed, and anything the target image (`--target`, one of
TARGET_IMAGES) is not known to provide fails the command, naming it and who needs it.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ("push_stream", "record_stream", "push_control")
DEFAULT_PYTHON = "3.11"  # SCF's Python3.11 runtime; PyAV 18 publishes no wheel below 3.11
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

MB = 1024 * 1024
# SCF's quotas (Tencent Cloud docs, "Quota Limits", product 583/11637): code plus bound layers at most
# 500 MB unpacked, at most 5 layers per function version. A package uploaded by the Serverless
# Framework must stay below 50 MB zipped (product 1040/39381), hence dependencies in layers.
ZIP_LIMIT = 50 * MB
UNPACKED_LIMIT = 500 * MB
MAX_LAYERS = 5

# Requirements published only as sdists whose compiled part is optional: (version, the folder of the
# sdist holding the pure-Python package, the package's name). Built here into py3-none-any wheels.
PURE_FROM_SDIST = {"crcmod": ("1.7", "python3/crcmod", "crcmod")}

# Dropped from every package: bytecode for another interpreter, Cython sources, type stubs.
_DROP_SUFFIXES = (".pyc", ".pyo", ".pyx", ".pxd", ".pyi")
_DROP_DIRS = ("__pycache__",)


class PackageError(Exception):
    """The package cannot be built or is over a limit; the message says which."""


@dataclass
class Artifact:
    name: str
    kind: str  # "code" or "layer"
    directory: str
    zip_path: str
    unpacked_bytes: int
    zipped_bytes: int
    top_level: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    python: str
    runtime: str
    platforms: list[str]
    code: Artifact
    layers: list[Artifact]
    limits: dict[str, int]
    # The newest glibc a packaged wheel needs (its manylinux tag): SCF's image must have at least it.
    glibc: str = "2.17"
    # What the packaged .so files need from the image, and the image checked against (RuntimeNeeds).
    runtime_needs: dict = field(default_factory=dict)

    @property
    def unpacked_total(self) -> int:
        return self.code.unpacked_bytes + sum(a.unpacked_bytes for a in self.layers)


# --- sizes -----------------------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _deflated_size(path: Path) -> int:
    """What `path` (file or tree) takes in a zip, without writing one."""
    total = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        n = 0
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                n += len(c.compress(chunk))
        n += len(c.flush())
        # + local and central headers, which hold the path inside the zip (not this machine's path)
        total += min(n, f.stat().st_size) + 100 + 2 * len(f.relative_to(path.parent).as_posix())
    return total


def human(n: int) -> str:
    return f"{n / MB:.1f} MB"


# --- dependencies ----------------------------------------------------------------------------------


def target_requirements(requirements: Path, python: str) -> list[str]:
    """requirements.txt's lines for SCF (Linux, x86_64, CPython `python`): markers evaluated there."""
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
    """requirements.txt installed for SCF into a folder under `cache` (reused while nothing changed)."""
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
    """index.py (the entry), functions/<name>/index.py and shared/, nothing else."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "deploy" / "entry.py", dest / "index.py")
    for name in FUNCTIONS:
        (dest / "functions" / name).mkdir(parents=True)
        shutil.copy2(REPO_ROOT / "functions" / name / "index.py", dest / "functions" / name / "index.py")
    shutil.copytree(REPO_ROOT / "shared", dest / "shared",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))


def zip_tree(src: Path, zip_path: Path) -> int:
    """Zip the contents of `src` (its files at the archive's root); the zip's size."""
    zip_path.unlink(missing_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for f in sorted(src.rglob("*")):
            if f.name == ".complete":
                continue
            arc = f.relative_to(src).as_posix()
            if f.is_dir():
                continue
            info = zipfile.ZipInfo.from_file(f, arc)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(f, "rb") as fh:
                zf.writestr(info, fh.read(), compresslevel=6)
    return zip_path.stat().st_size


# --- layers ----------------------------------------------------------------------------------------


def _distributions(site: Path) -> list[list[Path]]:
    """The installed top-level entries grouped so that a package and its .libs and metadata stay together."""
    groups: dict[str, list[Path]] = {}
    for entry in sorted(site.iterdir()):
        if entry.name == ".complete":
            continue
        stem = re.split(r"[.-]", entry.name, maxsplit=1)[0].lower()
        if entry.name.endswith(".dist-info"):
            stem = re.sub(r"-[^-]+\.dist-info$", "", entry.name).lower().replace("-", "_")
            stem = {"tencentcloud_sdk_python_common": "tencentcloud", "tencentcloud_sdk_python_trtc": "tencentcloud",
                    "tencentcloud_sdk_python_scf": "tencentcloud", "cos_python_sdk_v5": "qcloud_cos"}.get(stem, stem)
        groups.setdefault(stem, []).append(entry)
    return list(groups.values())


def plan_layers(site: Path, limit: int = ZIP_LIMIT) -> list[list[Path]]:
    """First-fit decreasing of the distributions by zipped size into layers under `limit`."""
    sized = sorted(((sum(_deflated_size(p) for p in g), g) for g in _distributions(site)),
                   key=lambda t: t[0], reverse=True)
    bins: list[tuple[int, list[Path]]] = []
    margin = limit * 0.97  # the estimate leaves out a little zip bookkeeping
    for size, group in sized:
        if size > margin:
            names = ", ".join(p.name for p in group)
            raise PackageError(f"{names} alone takes {human(size)} zipped, over SCF's {human(limit)} upload limit")
        for i, (used, members) in enumerate(bins):
            if used + size <= margin:
                bins[i] = (used + size, members + group)
                break
        else:
            bins.append((size, list(group)))
    return [members for _, members in bins]


def layer_env(name: str) -> str:
    """The prefix of the variables naming a layer in serverless.yml: deps1 -> LAYER_DEPS1."""
    return f"LAYER_{name.upper()}"


def _layer_serverless_yml(name: str, runtime: str, top_level: list[str]) -> str:
    # The Serverless Framework's `layer` component (inputs: region, name, src, runtimes, description).
    return (f"# Publishes build/layers/{name} as an SCF layer; `cd build/layers && sls deploy` publishes every\n"
            f"# layer. Put the version it prints in {layer_env(name)}_VERSION for the root serverless.yml.\n"
            f"app: trtc-media\nstage: ${{env:STAGE}}\ncomponent: layer\nname: trtc-media-{name}\n\n"
            f"inputs:\n  region: ${{env:REGION}}\n  name: ${{env:{layer_env(name)}_NAME}}\n  src: ../{name}\n"
            f"  runtimes:\n    - {runtime}\n"
            f"  description: {json.dumps('trtc-media dependencies: ' + ', '.join(top_level))[:900]}\n")


def build_layers(site: Path, dest: Path, limit: int = ZIP_LIMIT, runtime: str = f"Python{DEFAULT_PYTHON}") -> list[Artifact]:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    artifacts = []
    for i, members in enumerate(plan_layers(site, limit), start=1):
        name = f"deps{i}"
        layer_dir = dest / name
        layer_dir.mkdir()
        for p in members:
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, layer_dir / p.name)
        zipped = zip_tree(layer_dir, dest / f"{name}.zip")
        top_level = sorted(p.name for p in members if not p.name.endswith(".dist-info"))
        artifacts.append(Artifact(name, "layer", str(layer_dir), str(dest / f"{name}.zip"), tree_size(layer_dir),
                                  zipped, top_level))
        publish = dest / f"publish-{name}"
        publish.mkdir()
        (publish / "serverless.yml").write_text(_layer_serverless_yml(name, runtime, top_level), "utf-8")
    return artifacts


# --- what the native code needs from the runtime's image ---------------------------------------------


@dataclass(frozen=True)
class TargetImage:
    """What a runtime image provides to native code: its system libraries, by soname, and the newest
    version node of each versioned family (GLIBC_2.36: glibc; GLIBCXX_3.4.30, CXXABI_1.3.13:
    libstdc++; GCC_12.0.0: libgcc_s; ZLIB_1.2.12: zlib)."""

    name: str
    libraries: frozenset[str]
    versions: dict[str, str]
    # Version nodes that carry no number (glibc 2.36's GLIBC_ABI_DT_RELR).
    other_nodes: frozenset[str] = frozenset()


# glibc 2.36's libraries (libc6).
_GLIBC_236 = frozenset({
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libmvec.so.1", "libpthread.so.0", "libdl.so.2",
    "librt.so.1", "libresolv.so.2", "libutil.so.1", "libanl.so.1", "libnsl.so.1", "libBrokenLocale.so.1",
    "libthread_db.so.1", "libnss_files.so.2", "libnss_dns.so.2",
})
# The images a deployment may run in. Each entry says only what is known to be there: a soname or
# version not listed fails the check until someone confirms it in the image and adds it here.
TARGET_IMAGES = {
    # Debian 12 (bookworm) packages as in the python:3.11-slim-bookworm image: libc6 2.36, libstdc++6 and
    # libgcc-s1 12.2, zlib1g 1.2.13, and what the base system and CPython itself link (OpenSSL 3,
    # SQLite, libffi, bzip2, xz, zstd, ncurses, readline, libuuid).
    "python:3.11-slim-bookworm": TargetImage(
        name="python:3.11-slim-bookworm",
        libraries=_GLIBC_236 | frozenset({
            "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libbz2.so.1.0", "liblzma.so.5", "libzstd.so.1",
            "libffi.so.8", "libssl.so.3", "libcrypto.so.3", "libsqlite3.so.0", "libuuid.so.1", "libtinfo.so.6",
            "libncursesw.so.6", "libreadline.so.8", "libcrypt.so.1", "libselinux.so.1", "libpcre2-8.so.0",
            "libacl.so.1", "libattr.so.1", "libgmp.so.10", "libblkid.so.1", "libmount.so.1", "libmd.so.0",
        }),
        versions={"GLIBC": "2.36", "GLIBCXX": "3.4.30", "CXXABI": "1.3.13", "GCC": "12.0.0", "ZLIB": "1.2.12"},
        other_nodes=frozenset({"GLIBC_ABI_DT_RELR"}),
    ),
}
DEFAULT_TARGET = "python:3.11-slim-bookworm"


@dataclass
class ElfNeeds:
    """What one shared object asks of the dynamic loader."""

    path: str
    soname: str | None = None
    needed: list[str] = field(default_factory=list)
    # Version nodes it needs, by the library that must define them: {"libc.so.6": {"GLIBC_2.28"}}.
    versions: dict[str, set[str]] = field(default_factory=dict)


_SHT_DYNAMIC, _SHT_GNU_VERNEED = 6, 0x6FFFFFFE
_DT_NULL, _DT_NEEDED, _DT_SONAME = 0, 1, 14


def read_elf_needs(path: Path) -> ElfNeeds | None:
    """DT_NEEDED, DT_SONAME and the version needs (.gnu.version_r) of an ELF file; None if it is not one."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF" or ident[4] not in (1, 2) or ident[5] not in (1, 2):
            return None
        wide, e = ident[4] == 2, "<" if ident[5] == 1 else ">"

        def unpack(fmt: str, offset: int) -> tuple[int, ...]:
            f.seek(offset)
            size = struct.calcsize(e + fmt)
            data = f.read(size)
            if len(data) != size:
                raise PackageError(f"{path}: truncated ELF file")
            return struct.unpack(e + fmt, data)

        header = "HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"
        (_, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, _) = unpack(header, 16)
        shdr = "IIQQQQIIQQ" if wide else "IIIIIIIIII"
        sections = []
        for i in range(shnum if shoff else 0):
            name, kind, _, _, offset, size, link, info, _, entsize = unpack(shdr, shoff + i * shentsize)
            sections.append((kind, offset, size, link, info, entsize))

        def string(table: int, index: int) -> str:
            _, offset, size, _, _, _ = sections[table]
            f.seek(offset + index)
            raw = f.read(min(4096, max(0, size - index)))
            return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

        needs = ElfNeeds(str(path))
        for kind, offset, size, link, info, entsize in sections:
            if kind == _SHT_DYNAMIC:
                dyn = "qQ" if wide else "iI"
                step = entsize or struct.calcsize(e + dyn)
                for at in range(offset, offset + size, step):
                    tag, value = unpack(dyn, at)
                    if tag == _DT_NULL:
                        break
                    if tag == _DT_NEEDED:
                        needs.needed.append(string(link, value))
                    elif tag == _DT_SONAME:
                        needs.soname = string(link, value)
            elif kind == _SHT_GNU_VERNEED:
                at = offset
                for _ in range(info):  # sh_info: how many libraries the file needs versions of
                    _, count, file_name, aux, next_need = unpack("HHIII", at)
                    library = needs.versions.setdefault(string(link, file_name), set())
                    aux_at = at + aux
                    for _ in range(count):
                        _, _, _, vna_name, vna_next = unpack("IHHII", aux_at)
                        library.add(string(link, vna_name))
                        aux_at += vna_next
                    if not next_need:
                        break
                    at += next_need
        return needs


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def runtime_needs(site: Path) -> dict:
    """What the ELF files under `site` need from outside it: {"glibc", "versions": {family: newest},
    "libraries": {soname: [who needs it]}, "nodes": {node: [who needs it]}}."""
    elves = []
    for p in sorted(site.rglob("*")):
        if p.is_file() and not p.is_symlink() and (p.suffix == ".so" or ".so." in p.name):
            needs = read_elf_needs(p)
            if needs is not None:
                elves.append(needs)
    bundled = {Path(n.path).name for n in elves} | {n.soname for n in elves if n.soname}
    libraries: dict[str, list[str]] = {}
    nodes: dict[str, list[str]] = {}
    for n in elves:
        who = Path(n.path).relative_to(site).as_posix()
        for lib in n.needed:
            if lib not in bundled:
                libraries.setdefault(lib, []).append(who)
        for lib, names in n.versions.items():
            if lib not in bundled:
                for name in names:
                    nodes.setdefault(name, []).append(who)
    versions: dict[str, str] = {}
    for name in nodes:
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*?)_(\d+(?:\.\d+)*)", name)
        if m and (m.group(1) not in versions or _version_key(m.group(2)) > _version_key(versions[m.group(1)])):
            versions[m.group(1)] = m.group(2)
    return {"glibc": versions.get("GLIBC", "2.17"), "versions": dict(sorted(versions.items())),
            "libraries": dict(sorted(libraries.items())), "nodes": dict(sorted(nodes.items()))}


def _who(files: list[str]) -> str:
    return files[0] + (f" and {len(files) - 1} more" if len(files) > 1 else "")


def check_runtime(needs: dict, target: TargetImage) -> list[str]:
    """What `needs` asks of `target` that it is not known to provide, each naming who needs it."""
    problems = []
    for lib, files in needs["libraries"].items():
        if lib not in target.libraries:
            problems.append(f"{lib} (needed by {_who(files)}) is not known to be in {target.name}")
    for node, files in needs["nodes"].items():
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*?)_(\d+(?:\.\d+)*)", node)
        if m is None:
            if node not in target.other_nodes:
                problems.append(f"{node} (needed by {_who(files)}) is not known to be in {target.name}")
            continue
        family, version = m.groups()
        have = target.versions.get(family)
        if have is None:
            problems.append(f"{node} (needed by {_who(files)}): {target.name} is not known to provide {family}_*")
        elif _version_key(version) > _version_key(have):
            problems.append(f"{node} (needed by {_who(files)}) is newer than {target.name}'s {family}_{have}")
    return problems


def describe_needs(needs: dict) -> str:
    """One line: glibc, the other version families, then the system libraries."""
    versions = needs["versions"]
    parts = [f"glibc >= {needs['glibc']}"]
    parts += [f"{family}_{version}" for family, version in versions.items() if family != "GLIBC"]
    glibc_libs = [lib for lib in needs["libraries"] if lib in _GLIBC_236]
    others = [lib for lib in needs["libraries"] if lib not in _GLIBC_236]
    return ", ".join(parts) + f"; from glibc {', '.join(glibc_libs)}" + (f"; and {', '.join(others)}" if others else "")


# --- the command -----------------------------------------------------------------------------------


def required_glibc(site: Path) -> str:
    """The highest glibc named by the manylinux tags of the installed wheels ("2.28" for PyAV 18)."""
    best = (2, 17)
    for wheel in site.glob("*.dist-info/WHEEL"):
        tags = re.findall(r"^Tag: .*$", wheel.read_text("utf-8", errors="replace"), re.M)
        versions = []
        for tag in tags:
            m = re.search(r"manylinux_(\d+)_(\d+)_", tag)
            versions.append((int(m.group(1)), int(m.group(2))) if m else (2, 17 if "manylinux2014" in tag else 5))
        if versions:
            best = max(best, min(versions))  # a wheel tagged for several needs the oldest of them
    return f"{best[0]}.{best[1]}"


def check_limits(manifest: Manifest) -> list[str]:
    problems = []
    for a in [manifest.code, *manifest.layers]:
        if a.zipped_bytes > ZIP_LIMIT:
            problems.append(f"{a.kind} {a.name}: {human(a.zipped_bytes)} zipped, over the {human(ZIP_LIMIT)} upload limit")
    if len(manifest.layers) > MAX_LAYERS:
        problems.append(f"{len(manifest.layers)} layers, over SCF's {MAX_LAYERS} per function")
    if manifest.unpacked_total > UNPACKED_LIMIT:
        problems.append(f"code and layers unpack to {human(manifest.unpacked_total)}, over SCF's "
                        f"{human(UNPACKED_LIMIT)} per function")
    return problems


def build(out: Path, python: str = DEFAULT_PYTHON, cache: Path | None = None,
          requirements: Path = REPO_ROOT / "requirements.txt", target: str = DEFAULT_TARGET) -> Manifest:
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise PackageError(f"--python must be a version such as 3.11 (got {python!r})")
    if target not in TARGET_IMAGES:
        raise PackageError(f"--target must be one of {', '.join(TARGET_IMAGES)} (got {target!r})")
    out = out.resolve()
    cache = (cache or out / ".cache").resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    site = install_dependencies(requirements, python, cache)
    code_dir = out / "code"
    build_code_root(code_dir)
    code = Artifact("code", "code", str(code_dir), str(out / "code.zip"), tree_size(code_dir),
                    zip_tree(code_dir, out / "code.zip"), sorted(p.name for p in code_dir.iterdir()))
    layers = build_layers(site, out / "layers", runtime=f"Python{python}")
    manifest = Manifest(python, f"Python{python}", list(PLATFORMS), code, layers,
                        {"zip_bytes": ZIP_LIMIT, "unpacked_bytes": UNPACKED_LIMIT, "layers": MAX_LAYERS},
                        required_glibc(site), {"target": target, **runtime_needs(site)})
    (out / "manifest.json").write_text(json.dumps(asdict(manifest), indent=1), "utf-8")
    problems = check_limits(manifest)
    if problems:
        raise PackageError("over SCF's limits: " + "; ".join(problems))
    missing = check_runtime(manifest.runtime_needs, TARGET_IMAGES[target])
    if missing:
        raise PackageError(f"the packaged native code needs what {target} does not have: " + "; ".join(missing))
    return manifest


def report(manifest: Manifest) -> Iterable[str]:
    yield (f"runtime {manifest.runtime}, manylinux x86_64 wheels needing glibc >= {manifest.glibc} "
           f"in SCF's image")
    if manifest.runtime_needs:
        yield (f"the .so files need from the image: {describe_needs(manifest.runtime_needs)} "
               f"(all in {manifest.runtime_needs['target']})")
    yield f"{'artifact':<14}{'unpacked':>12}{'zipped':>12}  contents"
    for a in [manifest.code, *manifest.layers]:
        yield f"{a.kind + ' ' + a.name:<14}{human(a.unpacked_bytes):>12}{human(a.zipped_bytes):>12}  {', '.join(a.top_level)}"
    yield (f"total unpacked {human(manifest.unpacked_total)} of {human(UNPACKED_LIMIT)}; each zip under "
           f"{human(ZIP_LIMIT)}; {len(manifest.layers)} of {MAX_LAYERS} layers")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./dev package", description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=DEFAULT_PYTHON, help="SCF's Python runtime version (default %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "build", help="output folder (default build/)")
    ap.add_argument("--cache", type=Path, default=None, help="where installed dependencies are kept (default OUT/.cache)")
    ap.add_argument("--target", default=DEFAULT_TARGET, choices=sorted(TARGET_IMAGES),
                    help="the image the functions run in, whose libraries the native code may use (default %(default)s)")
    ap.add_argument("--image", action="store_true",
                    help="write the image's build context to OUT/image (and build it where docker, podman or "
                         "buildah answers) instead of the code package and layers; see deploy/image/build.py")
    ap.add_argument("--tag", default=None, help="with --image: the image's name:tag (default trtc-media:latest)")
    args = ap.parse_args(argv)
    if args.image:
        from deploy.image import build as image

        return image.main(args.out / "image", args.python, args.cache, args.tag or image.DEFAULT_TAG)
    try:
        manifest = build(args.out, args.python, args.cache, target=args.target)
    except PackageError as e:
        print(f"package: {e}", file=sys.stderr)
        return 1
    for line in report(manifest):
        print(line)
    print(f"wrote {Path(manifest.code.zip_path).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
