"""SCF 2018-04-16 through the real tencentcloud ScfClient: Invoke (Event, RequestResponse),
GetAsyncEventStatus, ListAsyncEvents, TerminateAsyncEvent with and without GraceShutdown, and a
refused TC3 signature."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.scf.v20180416 import models

from .conftest import alive, scf_client, until


def _invoke(client, function: str, event: dict, invocation_type: str = "Event"):
    req = models.InvokeRequest()
    req.FunctionName = function
    req.InvocationType = invocation_type
    req.ClientContext = json.dumps(event)
    return client.Invoke(req).Result


def _status(client, reqid: str):
    req = models.GetAsyncEventStatusRequest()
    req.InvokeRequestId = reqid
    return client.GetAsyncEventStatus(req).Result


def _ended(client, reqid: str, timeout: float = 20.0):
    return until(lambda: (lambda s: s if s.Status != "RUNNING" else None)(_status(client, reqid)),
                 timeout, f"event {reqid} to end")


def _terminate(client, function: str, reqid: str, grace: bool | None) -> None:
    req = models.TerminateAsyncEventRequest()
    req.FunctionName = function
    req.InvokeRequestId = reqid
    if grace is not None:
        req.GraceShutdown = grace
    client.TerminateAsyncEvent(req)


def test_invoke_event_returns_the_request_id_and_the_status_goes_running_then_finished(scf_stack):
    client = scf_client(scf_stack.api.endpoint)
    result = _invoke(client, "probe", {"mode": "sleep", "seconds": 1.0})
    reqid = result.FunctionRequestId
    assert result.RetMsg == "Async run task submitted"
    status = _status(client, reqid)
    assert (status.Status, status.InvokeRequestId) == ("RUNNING", reqid)
    status = _ended(client, reqid)
    assert (status.Status, status.StatusCode) == ("FINISHED", 200)
    assert scf_stack.scf.get(reqid).result == {"slept": 1.0}


def test_invoke_request_response_waits_and_returns_the_handler_result(scf_stack, tmp_path: Path):
    client = scf_client(scf_stack.api.endpoint)
    out = tmp_path / "seen.json"
    result = _invoke(client, "probe", {"echo": "sync", "out": str(out)}, "RequestResponse")
    assert json.loads(result.RetMsg) == {"echo": "sync"}
    assert result.ErrMsg == "" and result.InvokeResult == 0
    assert result.Duration > 0 and result.MemUsage > 0
    seen = json.loads(out.read_text())
    assert seen["event"] == {"echo": "sync", "out": str(out)}  # an Invoke hands the event as is
    assert seen["context"]["request_id"] == result.FunctionRequestId
    # As on SCF, nothing outside /tmp (and a CFS) is writable: not even HOME.
    assert (seen["home_writable"], seen["tmp_writable"]) == (False, True)

    failed = _invoke(client, "probe", {"mode": "raise"}, "RequestResponse")
    assert failed.InvokeResult == -1 and failed.RetMsg == ""
    err = json.loads(failed.ErrMsg)
    assert err["errorType"] == "RuntimeError" and "probe asked to fail" in err["errorMessage"]


@pytest.mark.parametrize("event, function, code", [
    ({"mode": "raise"}, "probe", 430),
    ({"mode": "failed"}, "probe", 430),          # returned, but the result says "status": "failed"
    ({"mode": "gateway_failed"}, "probe", 430),  # the same inside an API Gateway response body
    ({"mode": "crash"}, "probe", 439),           # the process exited without an answer
    ({"mode": "sleep", "seconds": 20}, "probe_short", 433),  # past the function's time limit
])
def test_failures_end_as_failed_with_scf_status_codes(scf_stack, event, function, code):
    client = scf_client(scf_stack.api.endpoint)
    reqid = _invoke(client, function, event).FunctionRequestId
    status = _ended(client, reqid)
    assert (status.Status, status.StatusCode) == ("FAILED", code)


def test_list_async_events_filters_orders_and_pages(scf_stack):
    client = scf_client(scf_stack.api.endpoint)
    first = _invoke(client, "probe", {"echo": 1}).FunctionRequestId
    _ended(client, first)
    second = _invoke(client, "probe", {"mode": "raise"}).FunctionRequestId
    _ended(client, second)
    _invoke(client, "probe", {"echo": "sync"}, "RequestResponse")  # not an async event: not listed

    req = models.ListAsyncEventsRequest()
    req.FunctionName = "probe"
    resp = client.ListAsyncEvents(req)
    assert resp.TotalCount == 2
    assert [(e.InvokeRequestId, e.Status) for e in resp.EventList] == [(second, "FAILED"), (first, "FINISHED")]
    assert all(e.InvokeType == "Event" and e.Qualifier == "$LATEST" and e.StartTime and e.EndTime
               for e in resp.EventList)

    req.Status = ["FINISHED"]
    assert [e.InvokeRequestId for e in client.ListAsyncEvents(req).EventList] == [first]
    req.Status = None
    req.Order, req.Limit, req.Offset = "ASC", 1, 1
    page = client.ListAsyncEvents(req)
    assert page.TotalCount == 2 and [e.InvokeRequestId for e in page.EventList] == [second]

    other = models.ListAsyncEventsRequest()
    other.FunctionName = "no_such_function"
    with pytest.raises(TencentCloudSDKException) as e:
        client.ListAsyncEvents(other)
    assert e.value.code == "ResourceNotFound.Function"


def _sleeping_probe(client, tmp_path: Path) -> tuple[str, Path, Path]:
    """A probe run sleeping 20 s with a child process, once its handler has started: (its request id,
    where it marks a SIGTERM, where it said what it started)."""
    marker, out = tmp_path / "sigterm", tmp_path / "seen.json"
    reqid = _invoke(client, "probe", {"mode": "sleep", "seconds": 20, "marker": str(marker), "out": str(out),
                                      "child": True}).FunctionRequestId
    until(out.exists, 10, "the handler to start")
    return reqid, marker, out


def test_terminate_with_grace_shutdown_sends_sigterm_and_the_handler_finishes(scf_stack, tmp_path: Path):
    client = scf_client(scf_stack.api.endpoint)
    reqid, marker, out = _sleeping_probe(client, tmp_path)
    _terminate(client, "probe", reqid, grace=True)
    status = _ended(client, reqid, timeout=10)
    assert status.Status == "ABORTED"
    assert marker.read_text() == "SIGTERM"  # the handler caught it and wound down by itself
    assert scf_stack.scf.get(reqid).result == {"stoppedBy": "SIGTERM"}
    log = requests.get(f"{scf_stack.gateway.url}/_runs/{reqid}/log", timeout=5).text
    assert "graceful stop" in log
    child = json.loads(out.read_text())["child"]
    until(lambda: not alive(child), 5, "the handler's child process to be gone")


def test_terminate_without_grace_kills_the_run_and_everything_it_started(scf_stack, tmp_path: Path):
    client = scf_client(scf_stack.api.endpoint)
    reqid, marker, out = _sleeping_probe(client, tmp_path)
    seen = json.loads(out.read_text())
    _terminate(client, "probe", reqid, grace=None)  # GraceShutdown defaults to false
    status = _status(client, reqid)  # a kill is over when TerminateAsyncEvent answers
    assert status.Status == "ABORTED"
    assert not marker.exists()  # killed, not asked
    assert not alive(seen["pid"])
    until(lambda: not alive(seen["child"]), 5, "the handler's child process to be gone")


def test_terminate_refuses_unknown_and_finished_events(scf_stack):
    client = scf_client(scf_stack.api.endpoint)
    with pytest.raises(TencentCloudSDKException) as e:
        _terminate(client, "probe", "00000000-0000-0000-0000-000000000000", grace=True)
    assert e.value.code == "ResourceNotFound.AsyncEvent"
    reqid = _invoke(client, "probe", {"echo": 1}).FunctionRequestId
    _ended(client, reqid)
    with pytest.raises(TencentCloudSDKException) as e:
        _terminate(client, "probe", reqid, grace=False)
    assert e.value.code == "FailedOperation.AsyncEventStatus"
    assert _status(client, reqid).Status == "FINISHED"
    with pytest.raises(TencentCloudSDKException) as e:
        _status(client, "00000000-0000-0000-0000-000000000000")
    assert e.value.code == "ResourceNotFound.AsyncEvent"


def test_a_request_signed_with_the_wrong_secret_key_is_refused(scf_stack):
    client = scf_client(scf_stack.api.endpoint, secret_key="not-the-secret-key")
    with pytest.raises(TencentCloudSDKException) as e:
        _invoke(client, "probe", {"echo": 1})
    assert e.value.code == "AuthFailure.SignatureFailure"
    assert scf_stack.scf.runs() == []  # nothing ran
