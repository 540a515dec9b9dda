"""A missing or wrong room backend setting is a clear error when the function starts, before any
work: 500 JSON naming the setting for the gateway, a failed result for a direct invocation."""
from __future__ import annotations

import json

import pytest

from functions.push_stream import index as push_index
from functions.recognize_stream import index as recognize_index
from functions.record_stream import index as record_index

CONTEXT = {"request_id": "req-preflight", "time_limit_in_ms": 10_000}


def _gateway(body: dict) -> dict:
    return {"httpMethod": "POST", "path": "/x", "requestContext": {"stage": "release"},
            "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


@pytest.mark.parametrize("handler", [push_index.main_handler, record_index.main_handler,
                                     recognize_index.main_handler],
                         ids=["push_stream", "record_stream", "recognize_stream"])
def test_unknown_backend_is_named_at_start(handler, monkeypatch, tmp_path):
    monkeypatch.setenv("ROOM_BACKEND", "bogus")
    monkeypatch.setenv("CFS_PATH", str(tmp_path))
    # Even a body that would fail validation gets the configuration error first: nothing else ran.
    response = handler(_gateway({"nonsense": 1}), CONTEXT)
    assert response["statusCode"] == 500
    body = json.loads(response["body"])
    assert body == {"status": "failed", "reason": "configuration_error",
                    "message": "ROOM_BACKEND='bogus' is not one of trtc, local"}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("handler", [push_index.main_handler, record_index.main_handler,
                                     recognize_index.main_handler],
                         ids=["push_stream", "record_stream", "recognize_stream"])
def test_local_backend_without_address_names_it(handler, monkeypatch):
    monkeypatch.setenv("ROOM_BACKEND", "local")
    monkeypatch.delenv("LOCAL_ROOM_ADDRESS", raising=False)
    result = handler({"anything": "at all"}, CONTEXT)  # a direct invocation: the plain result
    assert result["status"] == "failed" and result["reason"] == "configuration_error"
    assert "LOCAL_ROOM_ADDRESS=host:port" in result["message"]


def test_local_backend_with_a_malformed_address_names_it(monkeypatch):
    monkeypatch.setenv("ROOM_BACKEND", "local")
    monkeypatch.setenv("LOCAL_ROOM_ADDRESS", "127.0.0.1")
    result = push_index.main_handler({}, CONTEXT)
    assert result["reason"] == "configuration_error" and "LOCAL_ROOM_ADDRESS='127.0.0.1' must be host:port" in result["message"]


def test_a_valid_backend_goes_on_to_validate_the_parameters(monkeypatch):
    monkeypatch.setenv("ROOM_BACKEND", "trtc")  # the default; liteav is not imported to check it
    response = push_index.main_handler(_gateway({"videoSrc": "x"}), CONTEXT)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["reason"] == "invalid_parameters"


def test_trtc_backend_without_liteav_installed_names_it(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "liteav" else real_find_spec(name, *a))
    monkeypatch.setenv("ROOM_BACKEND", "trtc")
    result = record_index.main_handler({"anything": "at all"}, CONTEXT)
    assert result["reason"] == "configuration_error" and "liteav" in result["message"]
