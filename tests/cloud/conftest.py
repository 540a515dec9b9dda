"""Fixtures for the local cloud's tests: SCF behind a gateway and a Cloud API endpoint, with the
probe function (tests/cloud/probe/index.py) as its code; the real tencentcloud ScfClient."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from emulator import clients
from emulator.cloudapi import CloudApi
from emulator.scf import FunctionConfig, Gateway, Scf, register
from tests.waiting import wait_for

PROBE_ROOT = Path(__file__).resolve().parent / "probe"
SECRET_ID = "AKIDtestLocalCloud000000000000000000"
SECRET_KEY = "testLocalCloudSecretKey0000000000"
MAX_CONCURRENCY = 2


@dataclass
class ScfStack:
    api: CloudApi
    scf: Scf
    gateway: Gateway
    runs_dir: Path


@pytest.fixture
def scf_stack(tmp_path: Path):
    api = CloudApi(SECRET_ID, SECRET_KEY).start()
    env = {"PROBE_ENV": "from-configuration", "ROOM_BACKEND": "local"}
    scf = Scf(tmp_path / "runs", [
        FunctionConfig("probe", PROBE_ROOT, time_limit_ms=30_000, memory_limit_mb=256, environment=env),
        FunctionConfig("probe_short", PROBE_ROOT, time_limit_ms=1_500, memory_limit_mb=128, environment=env),
    ], max_concurrency=MAX_CONCURRENCY)
    register(api, scf)
    gateway = Gateway(scf).start()
    yield ScfStack(api, scf, gateway, tmp_path / "runs")
    gateway.stop()
    scf.shutdown(2.0)
    api.stop()


def scf_client(endpoint: str, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY) -> Any:
    return clients.scf_client({"cloudApiEndpoint": endpoint, "secretId": secret_id, "secretKey": secret_key})


def until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """tests.waiting.wait_for with this folder's defaults."""
    return wait_for(predicate, timeout, what)


def alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
