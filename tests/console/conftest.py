"""The console's tests: one local cloud for the whole package (its console included), the real
clients (the gateway over HTTP, tencentcloud's ScfClient), and headless Chromium from Debian's
`chromium` package driven by Playwright (./dev test installs it when missing)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from emulator.clients import scf_client
from emulator.cloud import CloudConfig, LocalCloud
from emulator.trtc import usersig
from tests.media_fixtures import clips  # noqa: F401  (the session's clip cache)
from tests.waiting import wait_for  # noqa: F401  (the tests here import it from this module)

APP = 1400000001
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    # Session-scoped, so made before the per-test environment: the clips under the session's temp
    # dir are named as local sources here (the functions get LOCAL_SOURCE_DIRS when the cloud starts).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCAL_SOURCE_DIRS", str(tmp_path_factory.getbasetemp()))
        c = LocalCloud(CloudConfig(state_dir=tmp_path_factory.mktemp("console-cloud"), shutdown_grace_s=3.0)).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def info(cloud: LocalCloud) -> dict[str, Any]:
    return cloud.info()


@pytest.fixture(scope="session")
def gray_clip(clips) -> Path:  # noqa: F811
    return clips.get("gray.mp4")


def push_params(clip: Path, room: int | str, user: str = "pusher", **extra: Any) -> dict[str, Any]:
    return {"videoSrc": str(clip), "sdkAppId": APP, "roomId": room, "userId": user, "userSig": usersig(user), **extra}


def record_params(info: dict[str, Any], room: int, user: str = "recorder", **extra: Any) -> dict[str, Any]:
    return {"SdkAppId": APP, "RoomId": room, "UserId": user, "UserSig": usersig(user), "Mode": "02",
            "CosConfig": {"Region": info["cos"]["region"], "Bucket": info["cos"]["bucket"], "Path": "/console"},
            **extra}


@pytest.fixture
def start(info: dict[str, Any], cloud: LocalCloud) -> Iterator[Callable[[str, dict[str, Any]], str]]:
    """start(function, params) -> x-scf-reqid, through the gateway; whatever is still running at the
    test's end is killed."""
    started: list[str] = []

    def post(function: str, params: dict[str, Any]) -> str:
        r = requests.post(f"{info['gateway']}/{function}", json=params, timeout=10)
        assert r.status_code == 200, r.text
        started.append(r.headers["x-scf-reqid"])
        return started[-1]

    yield post
    assert cloud.scf is not None
    for reqid in started:
        run = cloud.scf.get(reqid)
        if not run.done.is_set():
            try:
                cloud.scf.terminate(run.function.name, reqid, grace=False)
            except Exception:  # ended meanwhile
                pass


@pytest.fixture(scope="session")
def scf_api(info: dict[str, Any]) -> Any:
    return scf_client(info)


def async_status(scf_api: Any, reqid: str) -> str:
    from tencentcloud.scf.v20180416 import models

    req = models.GetAsyncEventStatusRequest()
    req.InvokeRequestId = reqid
    return str(scf_api.GetAsyncEventStatus(req).Result.Status)


def terminate(scf_api: Any, function: str, reqid: str, grace: bool) -> None:
    from tencentcloud.scf.v20180416 import models

    req = models.TerminateAsyncEventRequest()
    req.FunctionName, req.InvokeRequestId, req.GraceShutdown = function, reqid, grace
    scf_api.TerminateAsyncEvent(req)


def log_has(cloud: LocalCloud, reqid: str, msg: str) -> bool:
    assert cloud.scf is not None
    for line in cloud.scf.get(reqid).read_log().splitlines():
        if line.startswith("{") and json.loads(line).get("msg") == msg:
            return True
    return False


# --- the browser -----------------------------------------------------------------------------------


def chromium_path() -> str:
    for path in CHROMIUM_PATHS:
        if Path(path).exists():
            return path
    found = shutil.which("chromium")
    if found:
        return found
    raise RuntimeError("Debian's chromium is not installed: `./dev test` installs it "
                       "(apt-get install chromium), or install it yourself")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(),
                              args=["--autoplay-policy=no-user-gesture-required", "--mute-audio"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, info: dict[str, Any]) -> Iterator[Any]:
    """A fresh page on the console; any uncaught script error on it fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=info["console"])
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert not errors, f"script errors on the console's page: {errors}"
