"""The one Cloud API parameter parser (emulator/cloudapi/responses.py) that SCF and TRTC read their
actions' parameters with, and the one HTTP server helper (emulator/httpserver.py) every local server
starts and stops through."""
from __future__ import annotations

import json
import socket
import threading
from typing import Any, Callable

import pytest
import requests
from tencentcloud.scf.v20180416 import models

from emulator.clients import scf_client
from emulator.cloudapi import ApiError, CloudApi
from emulator.httpserver import HttpServer
from emulator.scf.responses import ScfResponse
from emulator.trtc.responses import TrtcResponse

from .conftest import SECRET_ID, SECRET_KEY, until

Read = Callable[[Any], Any]


def _scf(params: dict[str, Any]) -> ScfResponse:
    return ScfResponse(None, params)  # type: ignore[arg-type]  (the getters never reach the backend)


def _trtc(params: dict[str, Any]) -> TrtcResponse:
    return TrtcResponse(None, params)  # type: ignore[arg-type]


@pytest.mark.parametrize("params, read, expected", [
    ({"N": "7"}, lambda r: r.get_int_param("N", 1, lo=0, hi=9), 7),  # a GET's string
    ({}, lambda r: r.get_int_param("N", 1, lo=0, hi=9), 1),
    ({"N": None}, lambda r: r.get_int_param("N", 1), 1),
    ({"B": "true"}, lambda r: r.get_bool_param("B"), True),
    ({"B": "false"}, lambda r: r.get_bool_param("B", True), False),
    ({"B": ""}, lambda r: r.get_bool_param("B"), False),
    ({"L": ["a", "b"]}, lambda r: r.get_list_param("L"), ["a", "b"]),
    ({"L.1": "b", "L.0": "a", "L.x": "no"}, lambda r: r.get_list_param("L"), ["a", "b"]),  # a GET's list
    ({"L": ""}, lambda r: r.get_list_param("L"), []),
    ({"C": None}, lambda r: r.get_choice_param("C", ("ASC", "DESC"), "DESC"), "DESC"),
    ({"S": ""}, lambda r: r.get_str_param("S", "d"), "d"),
])
def test_values_are_read_from_json_and_from_query_strings(params: dict[str, Any], read: Read, expected: Any):
    assert read(_scf(params)) == expected


@pytest.mark.parametrize("params, read, scf_code, trtc_code", [
    ({}, lambda r: r.get_str_param("S", required=True), "MissingParameter", "MissingParameter.S"),
    ({"S": ""}, lambda r: r.get_str_param("S", required=True), "MissingParameter", "MissingParameter.S"),
    ({"S": 5}, lambda r: r.get_str_param("S"), "InvalidParameterValue.S", "InvalidParameter.S"),
    ({}, lambda r: r.get_int_param("N", required=True), "MissingParameter", "MissingParameter.N"),
    ({"N": None}, lambda r: r.get_int_param("N", required=True), "InvalidParameterValue.N", "InvalidParameter.N"),
    ({"N": True}, lambda r: r.get_int_param("N"), "InvalidParameterValue.N", "InvalidParameter.N"),
    ({"N": "1.5"}, lambda r: r.get_int_param("N"), "InvalidParameterValue.N", "InvalidParameter.N"),
    ({"N": 10}, lambda r: r.get_int_param("N", lo=0, hi=9), "InvalidParameterValue.N", "InvalidParameter.N"),
    ({"B": "yes"}, lambda r: r.get_bool_param("B"), "InvalidParameterValue.B", "InvalidParameter.B"),
    ({"L": "a"}, lambda r: r.get_list_param("L"), "InvalidParameterValue.L", "InvalidParameter.L"),
    ({"L": []}, lambda r: r.get_list_param("L", required=True), "InvalidParameterValue.L", "InvalidParameter.L"),
    ({"L": [1]}, lambda r: r.get_list_param("L", each=lambda v: isinstance(v, str)), "InvalidParameterValue.L",
     "InvalidParameter.L"),
    ({"C": "UP"}, lambda r: r.get_choice_param("C", ("ASC", "DESC"), "DESC"), "InvalidParameterValue.C",
     "InvalidParameter.C"),
])
def test_each_service_names_a_missing_or_bad_parameter_its_own_way(params: dict[str, Any], read: Read,
                                                                   scf_code: str, trtc_code: str):
    name = trtc_code.rsplit(".", 1)[1]
    for make, code in ((_scf, scf_code), (_trtc, trtc_code)):
        with pytest.raises(ApiError) as e:
            read(make(params))
        assert e.value.code == code
        assert f"`{name}`" in e.value.message  # the message names the parameter


def test_a_get_request_filters_async_events_by_a_list_it_flattens(scf_stack):
    """The SDK sends a GET's list as Status.0=...: ListAsyncEvents reads it like the POST's JSON array."""
    post = scf_client(scf_stack.api.info)
    get = scf_client(scf_stack.api.info, method="GET")

    def invoke(event: dict[str, Any]) -> str:
        req = models.InvokeRequest()
        req.FunctionName, req.InvocationType, req.ClientContext = "probe", "Event", json.dumps(event)
        return str(post.Invoke(req).Result.FunctionRequestId)

    quick = invoke({"echo": 1})
    until(lambda: scf_stack.scf.get(quick).done.is_set(), 20, "the quick run to finish")
    slow = invoke({"mode": "sleep", "seconds": 20})
    req = models.ListAsyncEventsRequest()
    req.FunctionName, req.Status = "probe", ["FINISHED"]
    assert [e.InvokeRequestId for e in get.ListAsyncEvents(req).EventList] == [quick]
    req.Status = ["RUNNING"]
    assert [e.InvokeRequestId for e in get.ListAsyncEvents(req).EventList] == [slow]


# --- emulator/httpserver.py ------------------------------------------------------------------------


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _returns_within(stop: Callable[[], None], seconds: float = 5.0) -> bool:
    t = threading.Thread(target=stop, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive()


def test_a_handler_and_a_wsgi_app_are_served_then_stopped():
    from http.server import BaseHTTPRequestHandler

    class Hello(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "4")])
        return [b"wsgi"]

    for served, body in ((Hello, "hello"), (app, "wsgi")):
        server = HttpServer(served, name="test-http").start()  # type: ignore[arg-type]
        assert requests.get(server.url, timeout=5).text == body
        assert _returns_within(server.stop)
        assert _refused(server.port)
        server.stop()  # twice is fine


def test_a_server_never_started_stops_at_once():
    """A local cloud whose start failed part way stops its parts; one never started must not hang it."""
    api = CloudApi(SECRET_ID, SECRET_KEY)
    port = int(api.endpoint.rsplit(":", 1)[1])
    assert _returns_within(api.stop)
    assert _refused(port)
