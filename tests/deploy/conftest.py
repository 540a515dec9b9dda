"""The image's tree, built once per test session (`./dev package` without a container engine), and its
entry server run from that tree as SCF runs it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="session")
def package_cache() -> Path:
    """Where the dependencies installed for the image are kept between sessions (build/, ignored by
    git): `./dev package` reuses an install whose requirements did not change."""
    cache = REPO / "build" / ".test-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


@pytest.fixture(scope="session")
def image_context(tmp_path_factory: pytest.TempPathFactory, package_cache: Path):
    """`./dev package` into a session folder, then compiled as the Dockerfile compiles /app: app/ is
    then the file tree the image holds (what the entry server tests run, with this interpreter)."""
    from deploy.image import build as image_build

    python, _ = image_build.base_of(image_build.base_image())
    if python != PYTHON:  # the tree's native modules are built for the image's CPython only
        pytest.skip(f"the image's tree is for CPython {python} (the Dockerfile's FROM); this is {PYTHON}")
    out = tmp_path_factory.mktemp("build") / "image"
    context = image_build.write_context(out, cache=package_cache)
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
