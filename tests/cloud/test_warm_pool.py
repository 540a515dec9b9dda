"""Warm instances of a synchronous function (emulator/scf/pool.py): consecutive calls through the
gateway are answered by the same process, a fresh one after an error, a crash or a code change, the
pool stays within its bound, and an idle instance is ended after its lifetime."""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import requests

from emulator.scf import FunctionConfig, Gateway, Scf
from tests.cloud.conftest import PROBE_ROOT, alive, until


def _stack(tmp_path: Path, code_root: Path, size: int = 2, idle_s: float = 600.0):
    scf = Scf(tmp_path / "runs", [FunctionConfig("probe_sync", code_root, time_limit_ms=20_000, sync=True)],
              max_concurrency=8, warm_size=size, warm_idle_s=idle_s)
    return scf, Gateway(scf).start()


@pytest.fixture
def warm(tmp_path: Path):
    code = tmp_path / "code"
    shutil.copytree(PROBE_ROOT, code)
    scf, gateway = _stack(tmp_path, code)
    yield scf, gateway, code
    gateway.stop()
    scf.shutdown(2.0)


def _call(gateway: Gateway, **body) -> requests.Response:
    return requests.post(f"{gateway.url}/probe_sync", json=body, timeout=30)


def _pid(scf: Scf, response: requests.Response) -> int:
    pid = scf.get(response.headers["x-scf-reqid"]).pid
    assert pid is not None
    return pid


def test_consecutive_calls_are_answered_by_the_same_warm_process(warm, tmp_path: Path):
    scf, gateway, _ = warm
    first = _call(gateway, echo="one", out=str(tmp_path / "one.json"))
    second = _call(gateway, echo="two", out=str(tmp_path / "two.json"))
    assert (first.status_code, first.json()) == (200, {"echo": "one"})
    assert (second.status_code, second.json()) == (200, {"echo": "two"})
    # The handler's own view (its os.getpid()) and the run records agree: one process took both.
    seen = [json.loads((tmp_path / f"{n}.json").read_text())["pid"] for n in ("one", "two")]
    assert seen[0] == seen[1] == _pid(scf, first) == _pid(scf, second)
    # Each call's output lands in its own run's log, between START and END.
    for r in (first, second):
        log = requests.get(f"{gateway.url}/_runs/{r.headers['x-scf-reqid']}/log", timeout=5).text
        assert log.startswith("START") and '"probe started"' in log and "END RequestId" in log
        assert log.count("probe started") == 1


@pytest.mark.parametrize("mode", ["raise", "crash"])
def test_after_an_error_or_a_crash_the_next_call_gets_a_fresh_process(warm, mode: str):
    scf, gateway, _ = warm
    before = _call(gateway, echo="x")
    broken = _call(gateway, mode=mode)
    after = _call(gateway, echo="y")
    assert before.status_code == 200 and after.json() == {"echo": "y"}
    assert broken.status_code == 502
    assert _pid(scf, broken) == _pid(scf, before)  # the warm one took it ...
    assert _pid(scf, after) != _pid(scf, broken)  # ... and was not used again
    until(lambda: not alive(_pid(scf, broken)), 10, "the failed instance to end")


def test_a_code_change_gets_a_fresh_process_running_the_new_code(warm):
    scf, gateway, code = warm
    old = _call(gateway, echo="x")
    assert old.json() == {"echo": "x"}
    index = code / "index.py"
    index.write_text(index.read_text().replace('return {"echo": p.get("echo")}',
                                               'return {"echo": p.get("echo"), "version": 2}'))
    new = _call(gateway, echo="x")
    assert new.json() == {"echo": "x", "version": 2}
    assert _pid(scf, new) != _pid(scf, old)
    assert not alive(_pid(scf, old))


def test_the_pool_never_exceeds_its_bound_and_extra_calls_still_run(warm):
    scf, gateway, _ = warm
    pool = scf.pool("probe_sync")
    assert pool is not None and pool.size == 2
    answers: list[requests.Response] = []
    calls = [threading.Thread(target=lambda: answers.append(_call(gateway, mode="sleep", seconds=1.5)))
             for _ in range(4)]
    for c in calls:
        c.start()
    counts = []
    while any(c.is_alive() for c in calls):
        counts.append(pool.count())
        for c in calls:
            c.join(0.02)
    assert [a.status_code for a in answers] == [200] * 4
    assert max(counts) <= 2 and max(counts) >= 1
    pids = {_pid(scf, a) for a in answers}
    assert len(pids) == 4  # four at once: two pooled, two for one call each
    until(lambda: sum(alive(p) for p in pids) <= 2, 10, "the extra instances to end")
    assert pool.count() <= 2
    again = _call(gateway, echo="z")
    assert _pid(scf, again) in pids  # a pooled one, warm


def test_an_idle_instance_is_ended_after_its_lifetime(tmp_path: Path):
    scf, gateway = _stack(tmp_path, PROBE_ROOT, idle_s=0.5)
    try:
        first = _call(gateway, echo="x")
        assert first.status_code == 200
        until(lambda: not alive(_pid(scf, first)), 10, "the idle instance to end")
        pool = scf.pool("probe_sync")
        assert pool is not None and pool.count() <= 2
        assert _call(gateway, echo="y").json() == {"echo": "y"}
    finally:
        gateway.stop()
        scf.shutdown(2.0)


def test_push_control_through_the_local_cloud_is_answered_by_one_warm_instance(tmp_path: Path):
    from emulator.cloud import CloudConfig, LocalCloud

    cloud = LocalCloud(CloudConfig(state_dir=tmp_path / "state", shutdown_grace_s=2.0,
                                   functions=("push_control",))).start()
    try:
        url = cloud.info()["gateway"] + "/push_control"
        answers = [requests.post(url, json={"requestId": f"no-such-push-{n}", "action": "status",
                                                "controlToken": "a-token-of-16-chars-or-more"}, timeout=30)
                   for n in range(3)]
        assert [a.status_code for a in answers] == [404, 404, 404]  # the function's own answer
        assert all(a.json()["reason"] == "not_running" for a in answers)
        assert cloud.scf is not None
        pids = {_pid(cloud.scf, a) for a in answers}
        assert len(pids) == 1 and alive(pids.pop())
    finally:
        cloud.stop()
