"""API Gateway with async execution: the answer a caller gets, the event and context the handler
gets, the concurrency limit, and each run's output kept by request id."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import requests

from .conftest import MAX_CONCURRENCY, PROBE_ROOT, until


def _run(gateway_url: str, reqid: str) -> dict:
    r = requests.get(f"{gateway_url}/_runs/{reqid}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def _finished(gateway_url: str, reqid: str, timeout: float = 20.0) -> dict:
    return until(lambda: (lambda d: d if d["status"] != "RUNNING" else None)(_run(gateway_url, reqid)),
                 timeout, f"run {reqid} to end")


def test_post_answers_at_once_with_the_request_id_while_the_handler_runs(scf_stack):
    url = scf_stack.gateway.url
    r = requests.post(f"{url}/probe", json={"mode": "sleep", "seconds": 20}, timeout=5)
    assert r.status_code == 200
    assert r.text == "Async run task submitted"
    reqid = r.headers["x-scf-reqid"]
    assert len(reqid) == 36
    # Answered while the handler is still sleeping: the call is asynchronous.
    assert _run(url, reqid)["status"] == "RUNNING"
    scf_stack.scf.terminate("probe", reqid, grace=False)
    assert _run(url, reqid)["status"] == "ABORTED"


def test_handler_sees_the_api_gateway_event_and_the_scf_context(scf_stack, tmp_path: Path):
    url = scf_stack.gateway.url
    out = tmp_path / "seen.json"
    body = json.dumps({"out": str(out), "echo": "hello"})
    r = requests.post(f"{url}/probe?lang=en&n=2", data=body,
                      headers={"Content-Type": "application/json", "X-Custom": "yes"}, timeout=5)
    assert r.status_code == 200
    reqid = r.headers["x-scf-reqid"]
    run = _finished(url, reqid)
    assert run["status"] == "FINISHED" and run["statusCode"] == 200
    assert run["result"] == {"echo": "hello"}

    seen = json.loads(out.read_text())
    event, context, env = seen["event"], seen["context"], seen["env"]
    assert event["body"] == body  # the body is handed over as the string that was posted
    assert event["isBase64Encoded"] is False
    assert event["httpMethod"] == "POST"
    assert event["path"] == "/probe"
    assert event["queryString"] == {"lang": "en", "n": "2"}
    assert event["queryStringParameters"] == {"lang": "en", "n": "2"}
    assert event["pathParameters"] == {} and event["headerParameters"] == {}
    assert event["headers"]["X-Custom"] == "yes"
    assert event["headers"]["Content-Type"] == "application/json"
    rc = event["requestContext"]
    assert rc["httpMethod"] == "POST" and rc["path"] == "/probe" and rc["stage"] == "release"
    assert rc["sourceIp"] == "127.0.0.1" and rc["identity"] == {} and rc["serviceId"]
    assert rc["requestId"] == r.headers["X-Api-RequestId"]

    assert context["request_id"] == reqid
    assert context["function_name"] == "probe"
    assert context["namespace"] == "default"
    assert context["function_version"] == "$LATEST"
    assert context["time_limit_in_ms"] == 30_000
    assert context["memory_limit_in_mb"] == 256

    # Its own process, in its code root, with the function's configured environment.
    assert seen["pid"] == run["pid"]
    assert Path(seen["cwd"]) == PROBE_ROOT
    assert env["PROBE_ENV"] == "from-configuration"
    assert env["SCF_FUNCTIONNAME"] == "probe"


def test_a_body_that_is_not_text_arrives_base64_encoded(scf_stack, tmp_path: Path):
    url = scf_stack.gateway.url
    out = tmp_path / "seen.json"
    r = requests.post(f"{url}/release/probe", params={"out": str(out)}, data=b"\xff\xfe\x00binary",
                      timeout=5)  # the stage prefix works too
    assert r.status_code == 200
    run = _finished(url, r.headers["x-scf-reqid"])
    event = json.loads(out.read_text())["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe\x00binary"
    # The record keeps only what could be parsed and redacted; these bytes could not.
    assert run["event"]["isBase64Encoded"] is False and run["event"]["body"].startswith("*** (not kept:")


def test_past_the_concurrency_limit_the_gateway_answers_432_resource_limit_reached(scf_stack):
    url = scf_stack.gateway.url
    ids = []
    for _ in range(MAX_CONCURRENCY):
        r = requests.post(f"{url}/probe", json={"mode": "sleep", "seconds": 20}, timeout=5)
        assert r.status_code == 200
        ids.append(r.headers["x-scf-reqid"])
    r = requests.post(f"{url}/probe", json={"mode": "sleep", "seconds": 20}, timeout=5)
    assert r.status_code == 432
    assert "x-scf-reqid" not in r.headers
    error = r.json()
    assert error["errorCode"] == 432
    assert "ResourceLimitReached" in error["errorMessage"]
    assert len(scf_stack.scf.runs()) == MAX_CONCURRENCY  # nothing was started for the refused call

    scf_stack.scf.terminate("probe", ids[0], grace=False)
    r = requests.post(f"{url}/probe", json={"mode": "echo"}, timeout=5)
    assert r.status_code == 200  # a slot is free again


def test_each_run_keeps_its_log_and_result_by_request_id(scf_stack):
    url = scf_stack.gateway.url
    ok = requests.post(f"{url}/probe", json={"echo": "kept", "userSig": "never-kept-usersig"},
                       timeout=5).headers["x-scf-reqid"]
    bad = requests.post(f"{url}/probe", json={"mode": "raise"}, timeout=5).headers["x-scf-reqid"]
    _finished(url, ok)
    failed = _finished(url, bad)

    log = requests.get(f"{url}/_runs/{ok}/log", timeout=5).text
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {ok}"
    assert '"msg": "probe started"' in log
    assert f"END RequestId: {ok}" in log and "Status: FINISHED" in lines[-1]

    assert failed["status"] == "FAILED" and failed["statusCode"] == 430
    assert failed["error"]["errorType"] == "RuntimeError"
    assert "probe asked to fail" in requests.get(f"{url}/_runs/{bad}/log", timeout=5).text

    listed = {r["requestId"]: r["status"] for r in requests.get(f"{url}/_runs", timeout=5).json()["runs"]}
    assert listed == {ok: "FINISHED", bad: "FAILED"}
    # The same, as files under the runs directory.
    run_dir = scf_stack.runs_dir / ok
    assert json.loads((run_dir / "result.json").read_text())["result"] == {"echo": "kept"}
    assert json.loads((run_dir / "run.json").read_text())["status"] == "FINISHED"
    assert (run_dir / "log").read_text() == log
    # The event is kept with its secrets redacted.
    assert "never-kept-usersig" not in (run_dir / "run.json").read_text()
    assert "never-kept-usersig" not in requests.get(f"{url}/_runs/{ok}", timeout=5).text


def test_unknown_paths_methods_and_runs_are_refused_clearly(scf_stack):
    url = scf_stack.gateway.url
    r = requests.post(f"{url}/no_such_function", json={}, timeout=5)
    assert r.status_code == 404 and "POST /probe" in r.json()["errorMessage"]
    r = requests.get(f"{url}/probe", timeout=5)
    assert r.status_code == 404 and "method GET" in r.json()["errorMessage"]
    r = requests.get(f"{url}/_runs/00000000-0000-0000-0000-000000000000", timeout=5)
    assert r.status_code == 404 and "ResourceNotFound.AsyncEvent" in r.json()["errorMessage"]
    assert scf_stack.scf.runs() == []


def test_runs_of_an_earlier_session_stay_readable_by_request_id(tmp_path: Path):
    from emulator.scf import FunctionConfig, Gateway, Scf

    runs_dir = tmp_path / "runs"
    before = Scf(runs_dir, [FunctionConfig("probe", PROBE_ROOT)])
    old = before.invoke("probe", {"echo": "from before"})
    assert before.wait(old, 20)
    before.shutdown(1.0)
    # A run the earlier session was still running when it died (its record says RUNNING).
    crashed = json.loads((runs_dir / old.request_id / "run.json").read_text())
    crashed.update(requestId="11111111-2222-3333-4444-555555555555", status="RUNNING", statusCode=202,
                   endTime=None, result=None)
    (runs_dir / crashed["requestId"]).mkdir()
    (runs_dir / crashed["requestId"] / "run.json").write_text(json.dumps(crashed))

    after = Scf(runs_dir, [FunctionConfig("probe", PROBE_ROOT)])
    assert after.load_previous() == 2
    gateway = Gateway(after).start()
    try:
        run = _run(gateway.url, old.request_id)
        assert (run["status"], run["result"]) == ("FINISHED", {"echo": "from before"})
        log = requests.get(f"{gateway.url}/_runs/{old.request_id}/log", timeout=5).text
        assert log.startswith(f"START RequestId: {old.request_id}")
        lost = _run(gateway.url, crashed["requestId"])
        assert (lost["status"], lost["statusCode"]) == ("FAILED", 439)
    finally:
        gateway.stop()
        after.shutdown(1.0)
