"""`./dev package`: the build context of the functions' image, and the image where an engine exists.

    python -m deploy [--tag NAME:TAG] [--out build] [--cache DIR]      (deploy/__main__.py)

The Dockerfile's FROM line decides the rest: its tag python:<X.Y.Z>-slim-<release> names the CPython
the wheels are installed for (X.Y) and the system they must load on (elf.BASE_SYSTEMS[release]).
Writes OUT/image:

    Dockerfile        deploy/image/Dockerfile
    app/site/         requirements.txt installed for that CPython: manylinux x86_64 wheels, the
                      ones tests/deploy runs (the same install, from the same cache)
    app/code/         server.py (the entry server), index.py (deploy/entry.py), functions/, shared/
    manifest.json     sizes, the base image, what the shared objects need

then checks what the `.so` files of app/site need (glibc, GLIBCXX, CXXABI, system libraries)
against the base system, and fails naming what the base lacks. Where docker or podman answers (or
buildah), it builds and tags the image, prints its size and loads the native modules inside it
(`server.py --check`); without one it prints the command to build it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from deploy import package
from deploy.image.elf import BASE_SYSTEMS, BaseSystem, RuntimeNeeds, check_runtime, describe_needs, runtime_needs

HERE = Path(__file__).resolve().parent
DOCKERFILE = HERE / "Dockerfile"
SERVER = HERE / "server.py"
DEFAULT_TAG = "trtc-media:latest"
ENGINES = ("docker", "podman", "buildah")
# What the Dockerfile runs over /app after copying it (the test tree is compiled the same way).
COMPILE_ARGS = ("-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash")
# The image's command (the Dockerfile's CMD; serverless.yml's image.command + image.args).
COMMAND = ("/usr/local/bin/python3", "-I", "-S", "-u", "/app/code/server.py")

# The official CPython images' tags: python:<version>-slim-<Debian release>[@sha256:...].
_PYTHON_TAG = re.compile(r"(?:[\w.-]+(?::\d+)?/)*(?:library/)?python:(\d+\.\d+)(?:\.\d+)?-slim-([a-z]+)(?:@sha256:[0-9a-f]{64})?")


@dataclass
class ImageContext:
    directory: str
    python: str
    base_image: str
    base_system: str
    command: list[str]
    code_bytes: int
    site_bytes: int
    # What the shared objects of app/site need from the system (each need with who has it), and
    # the newest version of each family among them.
    needs: RuntimeNeeds
    newest_versions: dict[str, str]
    problems: list[str] = field(default_factory=list)
    engine: str | None = None
    engine_note: str = ""
    tag: str | None = None
    image_bytes: int | None = None
    in_image: dict | None = None


def base_image(dockerfile: Path | None = None) -> str:
    """The image the Dockerfile (default deploy/image/Dockerfile) builds FROM, as written: tag and digest."""
    dockerfile = dockerfile or DOCKERFILE
    for line in dockerfile.read_text("utf-8").splitlines():
        m = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", line, re.I)
        if m:
            return m.group(1)
    raise package.PackageError(f"{dockerfile} has no FROM line")


def base_of(image: str) -> tuple[str, BaseSystem]:
    """The CPython version ("3.11") and the system (elf.BASE_SYSTEMS) of a python:X.Y.Z-slim-<release> base."""
    m = _PYTHON_TAG.fullmatch(image)
    if m is None or m.group(2) not in BASE_SYSTEMS:
        raise package.PackageError(f"the Dockerfile's base {image} is not python:X.Y.Z-slim-<release> with a "
                                   f"release whose system libraries are known (deploy/image/elf.py BASE_SYSTEMS: "
                                   f"{', '.join(BASE_SYSTEMS)})")
    return m.group(1), BASE_SYSTEMS[m.group(2)]


def _link_tree(src: Path, dest: Path) -> None:
    """A copy of `src` at `dest`, hard-linked where the file system allows (the site is 160 MB)."""
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link, ignore=shutil.ignore_patterns(".complete", "__pycache__"))


def fetch_wheels(cache: Path, requirements: Path = package.REPO_ROOT / "requirements.txt") -> Path:
    """The image's wheels installed into `cache` (reused while nothing changed): what write_context
    needs from PyPI, fetched ahead (`./dev test` does, before the tests run without a network)."""
    python, _ = base_of(base_image(DOCKERFILE))
    cache.mkdir(parents=True, exist_ok=True)
    return package.install_dependencies(requirements, python, cache.resolve())


def write_context(out: Path, cache: Path | None = None, requirements: Path = package.REPO_ROOT / "requirements.txt",
                  dockerfile: Path | None = None) -> ImageContext:
    """The build context in `out` (replaced), checked against the Dockerfile's base."""
    dockerfile = dockerfile or DOCKERFILE
    image = base_image(dockerfile)
    python, system = base_of(image)  # before anything is installed
    out = out.resolve()
    cache = (cache or out.parent / ".cache").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    site = package.install_dependencies(requirements, python, cache)
    shutil.rmtree(out, ignore_errors=True)
    (out / "app").mkdir(parents=True)
    _link_tree(site, out / "app" / "site")
    code = out / "app" / "code"
    package.build_code_root(code)
    shutil.copy2(SERVER, code / "server.py")
    shutil.copy2(dockerfile, out / "Dockerfile")
    (out / ".dockerignore").write_text("manifest.json\n", "utf-8")

    needs = runtime_needs(out / "app" / "site")
    context = ImageContext(str(out), python, image, system.name, list(COMMAND), package.tree_size(code),
                           package.tree_size(out / "app" / "site"), needs, needs.versions,
                           check_runtime(needs, system))
    _save(context)
    if context.problems:
        raise package.PackageError("the base image lacks what the packaged .so files need: "
                                   + "; ".join(context.problems))
    return context


def _save(context: ImageContext) -> None:
    (Path(context.directory) / "manifest.json").write_text(json.dumps(asdict(context), indent=1), "utf-8")


# --- the container engine ------------------------------------------------------------------------


def _run(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def find_engine() -> tuple[str | None, str]:
    """The first container engine that answers, or None and why none did."""
    notes = []
    for name in ENGINES:
        path = shutil.which(name)
        if not path:
            continue
        probe = [path, "version"] if name == "buildah" else [path, "info"]
        try:
            proc = _run(probe, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            notes.append(f"{name} found but `{name} {probe[1]}` failed: {e}")
            continue
        if proc.returncode == 0:
            return path, f"{name} at {path}"
        why = (proc.stderr or proc.stdout).strip().splitlines()
        notes.append(f"{name} found but `{name} {probe[1]}` failed: {why[-1] if why else f'exit {proc.returncode}'}")
    return None, "; ".join(notes) or "no docker, podman or buildah on PATH"


def build_image(engine: str, context: ImageContext, tag: str) -> ImageContext:
    """Build and tag the image; its size, and what loads inside it (docker and podman)."""
    name = Path(engine).name
    directory = context.directory
    verb = ["bud"] if name == "buildah" else ["build"]
    cmd = [engine, *verb, "--platform", "linux/amd64", "-t", tag, "-f", str(Path(directory) / "Dockerfile"), directory]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise package.PackageError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                                   + "\n".join(proc.stdout.splitlines()[-25:]))
    context.engine = name
    if name == "buildah":
        size = _run([engine, "inspect", "--type", "image", "--format", "{{.Size}}", tag], timeout=60)
    else:
        size = _run([engine, "image", "inspect", "--format", "{{.Size}}", tag], timeout=60)
    text = size.stdout.strip()
    context.image_bytes = int(text) if text.isdigit() else None
    if name != "buildah":
        check = _run([engine, "run", "--rm", "--platform", "linux/amd64", "--network", "none", tag,
                      *COMMAND, "--check"], timeout=300)
        lines = [ln for ln in check.stdout.splitlines() if ln.startswith("{")]
        context.in_image = json.loads(lines[-1]) if lines else {"failed": (check.stderr or check.stdout)[-2000:]}
        if check.returncode != 0:
            _save(context)
            raise package.PackageError(f"the native modules do not load inside {tag}: {context.in_image}")
    _save(context)
    return context


# --- the command ---------------------------------------------------------------------------------


def report(context: ImageContext) -> Iterable[str]:
    h = package.human
    yield (f"image context {context.directory}: app/code {h(context.code_bytes)}, app/site {h(context.site_bytes)} "
           f"(CPython {context.python}, manylinux x86_64 wheels)")
    yield f"base {context.base_image}"
    yield f"the .so files need {describe_needs(context.needs)}"
    yield (f"all present in the base, {context.base_system}" if not context.problems
           else "the base lacks: " + "; ".join(context.problems))
    if context.engine:
        size = h(context.image_bytes) if context.image_bytes is not None else "size unknown"
        yield f"built {context.tag} with {context.engine}: {size}"
        if context.in_image:
            mods = context.in_image.get("modules", {})
            yield (f"inside it: Python {context.in_image.get('python')}, {context.in_image.get('glibc')}; "
                   f"{', '.join(mods)} load")
    else:
        yield f"no image built ({context.engine_note}); build it with:"
        yield f"  docker build --platform linux/amd64 -t {context.tag or DEFAULT_TAG} {context.directory}"


def run(out: Path, cache: Path | None = None, tag: str = DEFAULT_TAG, build: bool = True) -> ImageContext:
    context = write_context(out, cache)
    context.tag = tag
    if build:
        engine, note = find_engine()
        context.engine_note = note
        if engine:
            context = build_image(engine, context, tag)
        else:
            _save(context)
    return context


def main(out: Path, cache: Path | None, tag: str) -> int:
    try:
        context = run(out, cache, tag)
    except package.PackageError as e:
        print(f"package: {e}", file=sys.stderr)
        return 1
    for line in report(context):
        print(line)
    return 0
