"""Fixtures shared by every test: real servers on 127.0.0.1, started and stopped by the suite.

Each part of the project adds its own fixtures in its tests' conftest or module; the ones here are
the ones several parts use.
"""
from __future__ import annotations

import importlib.util

import pytest

from emulator.redis import RedisServer

if importlib.util.find_spec("liteav") is not None:
    # Before any test can reach it: the real liteav never creates a TRTCCloud here (it would contact
    # Tencent's servers). Importing the fake makes every way to a real one raise.
    from tests.fakes import liteav_fake  # noqa: F401

# The emulator's TRTC application (also what `python -m emulator up` uses by default).
SDK_APP_ID = 1400000001
SDK_SECRET_KEY = "emulator-sdk-secret-key-0123456789abcdef"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A real redis-server for the whole session (tests use distinct keys or flush what they use)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def room_service():
    """The emulator's TRTC rooms and Cloud API (TRTC actions) on 127.0.0.1 for the whole session.

    `.address`, `.env` (ROOM_BACKEND/LOCAL_ROOM_ADDRESS), `.usersig(user_id)`, `.trtc_client()`,
    `.cloud_api_endpoint`, `.secret_id`, `.secret_key`, `.rooms` (state, for assertions).
    Tests use their own room ids so they do not meet.
    """
    from emulator.trtc import RoomService

    service = RoomService(SDK_APP_ID, SDK_SECRET_KEY).start()
    yield service
    service.stop()


@pytest.fixture
def make_room_service():
    """A factory for a room service of the test's own: make_room_service(dismiss_after=1.0)."""
    from emulator.trtc import RoomService

    started: list[RoomService] = []

    def make(dismiss_after: float = 300.0) -> RoomService:
        service = RoomService(SDK_APP_ID, SDK_SECRET_KEY, dismiss_after=dismiss_after).start()
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


# The emulator's COS account and bucket (also what `python -m emulator up` uses by default).
COS_SECRET_ID = "AKIDemulatorCosSecretId0000000000"
COS_SECRET_KEY = "emulatorCosSecretKey0123456789ab"
COS_REGION = "ap-guangzhou"
COS_BUCKET = "emulator-1250000000"


@pytest.fixture(scope="session")
def cos_service(tmp_path_factory: pytest.TempPathFactory):
    """COS on 127.0.0.1 for the whole session: `.ip`, `.port`, `.region`, `.bucket`,
    `.endpoint_url` (what COS_ENDPOINT is set to), `.secret_id`, `.secret_key`, `.client()`,
    `.get_object_bytes(key)`, `.requests`, and failures: `.fail_next(n)`, `.drop_next(n)`,
    `.deny()` / `.allow()`, `.clear_faults()` (done after every test). Tests use their own keys
    so they do not meet.
    """
    from emulator.cos import CosService

    service = CosService(secret_id=COS_SECRET_ID, secret_key=COS_SECRET_KEY, region=COS_REGION,
                         bucket=COS_BUCKET, state_dir=str(tmp_path_factory.mktemp("cos"))).start()
    yield service
    service.stop()


@pytest.fixture(autouse=True)
def _cos_faults_cleared(request: pytest.FixtureRequest):
    """Failures a test injected into the session's COS end with that test."""
    yield
    if "cos_service" in request.fixturenames:
        request.getfixturevalue("cos_service").clear_faults()


@pytest.fixture
def callback_receiver():
    """An HTTP server on 127.0.0.1 recording each POST: `.url`, `.received` (`.headers`, `.body`,
    `.json`), `.wait_for(n, timeout)`, `.fail_next(n, status=503)`, `.drop_next(n)`,
    `.down()` / `.up()` (connection refused while down), `.attempts`."""
    from emulator.callbacks import CallbackReceiver

    receiver = CallbackReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def fresh_redis(tmp_path):
    """A redis-server of the test's own, for tests that stop, kill or restart it."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_outside_network(monkeypatch, tmp_path_factory: pytest.TempPathFactory):
    """The functions refuse internal addresses and local files by default; tests serve everything
    on loopback and keep their clips under the session's temporary directory."""
    monkeypatch.setenv("SOURCE_ALLOWLIST", "127.0.0.0/8,::1/128,localhost")
    monkeypatch.setenv("CALLBACK_ALLOWLIST", "127.0.0.0/8,::1/128,localhost")
    monkeypatch.setenv("REDIS_ALLOWLIST", "127.0.0.0/8,::1/128,localhost")
    monkeypatch.setenv("COS_ALLOWLIST", "127.0.0.0/8,::1/128,localhost")
    monkeypatch.setenv("LOCAL_SOURCE_DIRS", str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def fake_dns(monkeypatch):
    """A resolver hook: `fake_dns["name.test"] = ["127.0.0.1", "127.0.0.2"]` makes each lookup of
    that name answer the next address in the list (the last one from then on): a DNS answer that
    changes between a check and a connect. Other names resolve as usual. `.lookups[name]` counts."""
    import socket

    real = socket.getaddrinfo

    class Answers(dict):
        def __init__(self) -> None:
            super().__init__()
            self.lookups: dict[str, int] = {}

    answers = Answers()

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.lower() in answers:
            queue = answers[name.lower()]
            answers.lookups[name.lower()] = answers.lookups.get(name.lower(), 0) + 1
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers
