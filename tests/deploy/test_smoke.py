"""`python -m deploy.smoke` run as a user runs it, against `python -m emulator up` (its recovery timer
every 2 s instead of every minute): every step holds; a step that fails is named with its request id
and the error while the others still run; bad parameters are refused naming them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from deploy import smoke
from emulator import media
from emulator.mediaserver import MediaHTTPServer
from tests.cloud.test_cli_tools import emulator_up

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with emulator_up(tmp_path_factory.mktemp("smoke") / "state", "--timer-tick", "2") as info:
        yield info


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaHTTPServer]:
    """Two 30 s clips (different tones) served over HTTP on 127.0.0.1, as a sample source would be."""
    root = tmp_path_factory.mktemp("sources")
    media.make_clip(root / "a.mp4", duration=30.0, width=160, height=120)
    media.make_clip(root / "b.mp4", duration=30.0, width=160, height=120, tone_hz=660)
    server = MediaHTTPServer(root).start()
    yield server
    server.stop()


def argv(up: dict[str, Any], sources: MediaHTTPServer, **override: str) -> list[str]:
    """Every parameter spelled out from the JSON line, as a user types them for a deployed stack."""
    values = {
        "gateway": up["gateway"], "scf-api": up["cloudApiUrl"], "trtc-api": up["cloudApiUrl"],
        "secret-id": up["secretId"], "secret-key": up["secretKey"], "region": up["cos"]["region"],
        "sdk-app-id": str(up["sdkAppId"]), "sdk-secret-key": up["sdkSecretKey"],
        "cos-bucket": up["cos"]["bucket"], "cos-region": up["cos"]["region"],
        "cos-endpoint": f"http://{up['cos']['ip']}:{up['cos']['port']}",
        "redis-host": up["redis"]["host"], "redis-port": str(up["redis"]["port"]),
        "source": sources.url("a.mp4"), "switch-source": sources.url("b.mp4"),
        "callback-listen": "127.0.0.1:0", "run-seconds": "6", "recovery-timeout": "60", **override}
    return [part for name, value in values.items() for part in (f"--{name}", value)]


def run_smoke(args: list[str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.smoke", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def rows(stdout: str) -> dict[str, list[str]]:
    """The final table's rows by step: [held, request id, seconds, detail...]."""
    table = stdout.split("\n\n")[-1].strip().splitlines()
    assert table[0].split()[:4] == ["step", "held", "request", "id"], stdout
    return {line.split()[0]: line.split()[1:] for line in table[1:]}


def test_every_step_holds_against_the_local_cloud(up, sources):
    done = run_smoke(argv(up, sources))
    table = rows(done.stdout)
    assert set(table) == set(smoke.STEPS), done.stdout
    failed = {step: row for step, row in table.items() if row[0] != "yes"}
    assert not failed and done.returncode == 0, done.stdout + done.stderr
    assert "h264 160x120 + aac 48000 Hz" in " ".join(table["record_remove"])  # the file decoded, its streams named
    assert "recovered" in " ".join(table["record_recover"])


def test_a_failing_step_is_named_with_its_request_id_and_the_next_steps_still_run(up, sources):
    done = run_smoke(argv(up, sources, **{"cos-secret-key": "not-the-key", "steps": "record_remove,push_control"}))
    assert done.returncode == 1, done.stdout + done.stderr
    table = rows(done.stdout)
    assert list(table) == ["record_remove", "push_control"], done.stdout  # the second step ran too
    held, request_id, _, *detail = table["record_remove"]
    assert held == "NO" and len(request_id) == 36, table  # the recording's x-scf-reqid
    assert "SignatureDoesNotMatch" in " ".join(detail) and "COS request id" in " ".join(detail), detail


@pytest.mark.parametrize("drop, bad, named", [
    ("gateway", {}, "--gateway"),
    ("sdk-secret-key", {}, "--sdk-secret-key"),
    (None, {"sdk-app-id": "abc"}, "--sdk-app-id"),
    (None, {"gateway": "ftp://example"}, "--gateway"),
    (None, {"cos-bucket": "nobucket"}, "--cos-bucket"),
    (None, {"redis-port": "70000"}, "--redis-port"),
    (None, {"callback-listen": "nowhere"}, "--callback-listen"),
    (None, {"steps": "push_resume,fly"}, "--steps"),
])
def test_missing_or_malformed_parameters_are_refused_naming_them(drop, bad, named):
    fake = {"gateway": "http://127.0.0.1:9", "cloudApiUrl": "http://127.0.0.1:9", "secretId": "id", "secretKey": "k",
            "cos": {"region": "ap-guangzhou", "bucket": "b-1250000000", "ip": "127.0.0.1", "port": 9},
            "sdkAppId": 1400000001, "sdkSecretKey": "s", "redis": {"host": "127.0.0.1", "port": 9}}

    class Sources:
        def url(self, path: str) -> str:
            return f"http://127.0.0.1:9/{path}"

    args = argv(fake, Sources(), **bad)  # type: ignore[arg-type]
    if drop:
        at = args.index(f"--{drop}")
        del args[at:at + 2]
    done = run_smoke(args, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""  # refused before any step ran


def test_no_parameter_defaults_to_an_address():
    for action in smoke.parser()._actions:
        assert not (isinstance(action.default, str) and ("://" in action.default or "." in action.default)), action
    refused = run_smoke([], timeout=60)
    assert refused.returncode == 2 and "--gateway" in refused.stderr and "--source" in refused.stderr
