"""Logging carries the request id and never shows a secret; stop signals come from SIGTERM and the time limit."""
import json
import os
import signal
import time

from shared.runtime import Invocation, StopSignal, get_logger, redact_value


def test_log_lines_are_json_with_request_id_and_secrets_redacted(capsys):
    redact_value("very-secret-usersig-value")
    log = get_logger("req-42", "push_stream")
    log.info("entering", userSig="abc123", redisPassword="pw-1", SecretKey="k", room="i:5")
    log.info("connecting with very-secret-usersig-value to redis://:pw@host")
    lines = [json.loads(l) for l in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["request_id"] == "req-42" and lines[0]["room"] == "i:5"
    assert lines[0]["userSig"] == lines[0]["redisPassword"] == lines[0]["SecretKey"] == "***"
    assert "very-secret-usersig-value" not in lines[1]["msg"] and "pw@" not in lines[1]["msg"]


def test_invocation_defaults_for_missing_context_keys():
    inv = Invocation.from_context({}, "record_stream")
    assert inv.function_name == "record_stream" and inv.request_id and inv.time_limit_ms == 86_400_000
    inv = Invocation.from_context({"request_id": "r", "time_limit_in_ms": "3000"})
    assert inv.request_id == "r" and abs(inv.deadline - inv.started - 3.0) < 1e-6


def test_sigterm_sets_terminated():
    with StopSignal() as stop:
        assert stop.reason is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2.0)
        assert stop.reason == "terminated"


def test_time_limit_draws_near():
    stop = StopSignal(deadline=time.monotonic() + 0.3, margin=0.2)
    t0 = time.monotonic()
    assert stop.wait(5.0) and stop.reason == "time_limit"
    assert time.monotonic() - t0 < 1.0
