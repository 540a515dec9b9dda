"""The settings object: every documented variable validated once, named when wrong, never defaulted silently."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from functions.push_stream import index as push_index
from shared.settings import SECRET_VARIABLES, VARIABLES, ConfigError, settings, value

README = Path(__file__).resolve().parents[2] / "README.md"

# A value each variable refuses (what a typo in serverless.yml's .env would give).
BAD = {
    "ROOM_BACKEND": "tcp", "LOCAL_ROOM_ADDRESS": "nohost", "LITEAV_LOG_LEVEL": "loud",
    "TRTC_PUSH_SCENE": "concert", "TRTC_RECORD_SCENE": "tape", "SOURCE_ALLOWLIST": "10.0.0.0/8,bad/host",
    "CALLBACK_ALLOWLIST": "a b", "REDIS_URL": "http://x", "REDIS_ALLOWLIST": "1.2.3.4/99", "SOURCE_TIMEOUT_SECONDS": "abc", "CHECKPOINT_TTL_SECONDS": "0",
    "PACING_SPEED": "abc", "PUSH_MAX_AREA": "big", "PUSH_MAX_FPS": "0", "RECORD_MIN_FREE_MB": "-1", "COS_ENDPOINT": "ftp://x",
    "COS_ALLOWLIST": "a b", "CALLBACK_RETRY_SECONDS": "0", "ENTRY_LISTEN": "9000",
    "ENTRY_MAX_WORKERS": "0", "ENTRY_READ_TIMEOUT_SECONDS": "-1",
    "ASR_ENDPOINT": "https://asr.cloud-rtc.com", "ASR_ALLOWLIST": "a b",
    "STOP_MARGIN_SECONDS": "soon", "LOG_LEVEL": "LOUD",
}
# Free text: any value is a valid one.
FREE = {"CFS_PATH", "CALLBACK_SIGN_KEY", "TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY",
        "TENCENTCLOUD_SESSIONTOKEN", "ENTRY_FUNCTION", "LOCAL_SOURCE_DIRS", "RECORD_STATE_BUCKET",
        "RECORD_STATE_REGION", "RECORD_STATE_PREFIX", "SCF_API_ENDPOINT", "TENCENTCLOUD_REGION"}


def _readme_variables() -> set[str]:
    text = README.read_text()
    section = text[text.index("## Environment variables"):]
    section = section[:section.index("\n## ", 1)]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_the_readme_table_and_the_settings_list_the_same_variables():
    assert _readme_variables() == set(VARIABLES)


def test_every_variable_is_either_checked_or_free_text():
    assert set(BAD) | FREE == set(VARIABLES) and not set(BAD) & FREE


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_refused_naming_the_variable(name):
    env = {"ROOM_BACKEND": "local", "LOCAL_ROOM_ADDRESS": "127.0.0.1:1", name: BAD[name]}
    with pytest.raises(ConfigError) as e:
        settings(env)
    if name in SECRET_VARIABLES:
        assert name in str(e.value) and BAD[name] not in str(e.value)  # named, never echoed
    else:
        assert f"{name}={BAD[name]!r}" in str(e.value)


def test_defaults_and_blank_values():
    s = settings({"SOURCE_TIMEOUT_SECONDS": " ", "PACING_SPEED": "4", "SOURCE_ALLOWLIST": "127.0.0.0/8, localhost"})
    assert s.source_timeout_seconds == 15.0 and s.pacing_speed == 4.0
    assert s.source_allowlist == ("127.0.0.0/8", "localhost") and s.room_backend == "trtc"


def test_a_bad_setting_fails_the_first_call_at_once(monkeypatch):
    monkeypatch.setenv("ROOM_BACKEND", "local")
    monkeypatch.setenv("LOCAL_ROOM_ADDRESS", "127.0.0.1:9")
    monkeypatch.setenv("PACING_SPEED", "abc")
    result = push_index.main_handler({}, {"request_id": "req-settings"})
    assert result["status"] == "failed" and result["reason"] == "configuration_error"
    assert "PACING_SPEED='abc' must be a number" in result["message"]


def test_one_variable_read_alone_has_the_same_default_and_check():
    # The image's entry server reads its own variables alone: another wrong one is the call's to report.
    env = {"ROOM_BACKEND": "local", "LOG_LEVEL": "LOUD", "ENTRY_LISTEN": "127.0.0.1:9100"}
    assert value("ENTRY_LISTEN", env) == "127.0.0.1:9100"
    assert value("ENTRY_MAX_WORKERS", env) == settings({}).entry_max_workers
    assert value("ENTRY_FUNCTION", {}) is None and value("ENTRY_LISTEN", {}) == "0.0.0.0:9000"
    with pytest.raises(ConfigError, match=r"ENTRY_LISTEN='9000' must be host:port"):
        value("ENTRY_LISTEN", {"ENTRY_LISTEN": "9000"})
