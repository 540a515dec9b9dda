"""Logging carries the request id and never shows a secret; stop signals come from SIGTERM and the time limit."""
import json
import os
import signal
import time

from shared.runtime import Invocation, StopSignal, get_logger
from shared.secrets import MAX_DEPTH, SECRET_FIELDS, redact, redact_url_value, redact_value


def test_log_lines_are_json_with_request_id_and_secrets_redacted(capsys):
    redact_value("very-secret-usersig-value")
    log = get_logger("req-42", "push_stream")
    log.info("entering", userSig="abc123", redisPassword="pw-1", SecretKey="k", room="i:5")
    log.info("connecting with very-secret-usersig-value")
    lines = [json.loads(l) for l in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["request_id"] == "req-42" and lines[0]["room"] == "i:5"
    assert lines[0]["userSig"] == lines[0]["redisPassword"] == lines[0]["SecretKey"] == "***"
    assert lines[1]["msg"] == "connecting with ***"


def test_url_fields_lose_query_and_userinfo_and_free_text_is_never_rewritten(capsys):
    log = get_logger("req-url", "record_stream")
    log.info("callback delivered", url="https://cb.example.com/hook?sig=abc&t=1",
             redis="redis://:hunter2@10.0.0.5:6379/0", sources=["http://u:p@h/a.mp4#tok", "/local/b.mp4"])
    # Messages that merely mention a secret's field name are left as they are.
    log.error("invalid parameters: userSig: is required; redisPassword=  is blank; token: 5")
    first, second = [json.loads(l) for l in capsys.readouterr().err.strip().splitlines()]
    assert first["url"] == "https://cb.example.com/hook?***"
    assert first["redis"] == "redis://***@10.0.0.5:6379/0"
    assert first["sources"] == ["http://***@h/a.mp4#***", "/local/b.mp4"]
    assert second["msg"] == "invalid parameters: userSig: is required; redisPassword=  is blank; token: 5"


def test_a_url_parameter_s_query_is_masked_even_inside_a_library_message(capsys):
    redact_url_value("https://cdn.example.com/v.mp4?auth_key=1700000000-0-0-5f4dcc3b5aa765d6")
    get_logger("req-lib").error("source failed", error="HTTP error 403 on "
                                "https://cdn.example.com/v.mp4?auth_key=1700000000-0-0-5f4dcc3b5aa765d6")
    line = json.loads(capsys.readouterr().err)
    assert line["error"] == "HTTP error 403 on https://cdn.example.com/v.mp4?***"


def test_a_short_secret_does_not_garble_ordinary_words(capsys):
    redact_value("redis")  # a weak password that is also a word
    get_logger("req-short").info("redis reachable", redisPassword="redis")
    line = json.loads(capsys.readouterr().err)
    assert line["msg"] == "redis reachable" and line["redisPassword"] == "***"


def test_secret_fields_are_matched_by_name_in_any_casing_and_deep_values_do_not_crash():
    assert redact({"USERSIG": "a", "Cookie": "c=1", "nested": [{"secretkey": "k"}]}) == \
        {"USERSIG": "***", "Cookie": "***", "nested": [{"secretkey": "***"}]}
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert json.dumps(redact(deep)).count("[") == MAX_DEPTH + 1


def test_every_secret_field_of_the_parameter_models_is_redacted_by_name():
    from pydantic import SecretStr

    from shared.contracts.push import PushParams
    from shared.contracts.record import CosSettings, RecordParams

    for model in (PushParams, RecordParams, CosSettings):
        for name, field in model.model_fields.items():
            if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())):
                assert name.lower() in SECRET_FIELDS, (model.__name__, name)


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
