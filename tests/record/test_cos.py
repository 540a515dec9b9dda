"""shared.cos (the one door to COS) against the local COS endpoint: what an upload does and reports,
the start check, and the egress rule on COS_ENDPOINT."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from shared.cos.client import CosBucket, check_access
from shared.cos.errors import UploadError
from shared.cos.urls import cos_url, parse_cos_url
from shared.record.state import store_from_env
from shared.rules.record import object_key
from shared.runtime import RetryPolicy

_OWN = object()


def upload_file(path, *, bucket, region, key, secret_id=None, secret_key=None, tries=4, backoff=0.05,
                timeout=30.0):
    """One PUT of a local file through the door, as the segment uploader makes it; the object's URL."""
    policy = RetryPolicy(tries=tries, backoff=backoff, max_backoff=8 * backoff)
    cos = CosBucket.open(bucket, region, secret_id, secret_key, policy=policy, timeout=timeout)
    cos.put_file(key, path)
    return cos.url(key)


def _upload(svc, path, key, secret_id=_OWN, secret_key=_OWN, **kw):
    return upload_file(path, bucket=svc.bucket, region=svc.region, key=key,
                       secret_id=svc.secret_id if secret_id is _OWN else secret_id,
                       secret_key=svc.secret_key if secret_key is _OWN else secret_key, **kw)


def test_small_file_is_put_and_url_names_the_object(cos_env, tmp_path):
    src = tmp_path / "a.mp3"
    src.write_bytes(b"ID3" + os.urandom(5000))
    url = _upload(cos_env, src, "up/small/a.mp3")
    assert url == f"https://{cos_env.bucket}.cos.{cos_env.region}.myqcloud.com/up/small/a.mp3"
    assert parse_cos_url(url) == (cos_env.bucket, cos_env.region, "up/small/a.mp3")
    assert cos_env.get_object_bytes("up/small/a.mp3") == src.read_bytes()


def test_wrong_secret_key_is_signaturedoesnotmatch(cos_env, tmp_path):
    src = tmp_path / "x.mp3"
    src.write_bytes(b"x" * 100)
    with pytest.raises(UploadError) as e:
        _upload(cos_env, src, "up/auth/x.mp3", secret_key="wrong-key-123456")
    assert str(e.value).startswith("upload failed: SignatureDoesNotMatch")
    assert "SecretKey" in str(e.value)  # says what to check
    assert e.value.status == 403
    # A 4xx is not retried: one PUT reached COS.
    assert sum(1 for r in cos_env.requests if r.key == "up/auth/x.mp3") == 1


def test_execution_role_credentials_from_the_environment(cos_env, monkeypatch, tmp_path):
    cos_env.add_temporary_credentials("AKIDroleUploadTest", "role-secret-key-xyz", "role-session-token-xyz")
    monkeypatch.setenv("TENCENTCLOUD_SECRETID", "AKIDroleUploadTest")
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", "role-secret-key-xyz")
    monkeypatch.setenv("TENCENTCLOUD_SESSIONTOKEN", "role-session-token-xyz")
    src = tmp_path / "role.mp3"
    src.write_bytes(b"role" * 100)
    upload_file(src, bucket=cos_env.bucket, region=cos_env.region, key="up/role/role.mp3", backoff=0.05)
    assert cos_env.get_object_bytes("up/role/role.mp3") == src.read_bytes()

    # Without its session token the role's key is refused, and the message says what is wrong.
    monkeypatch.delenv("TENCENTCLOUD_SESSIONTOKEN")
    with pytest.raises(UploadError, match=r"^upload failed: InvalidAccessKeyId"):
        upload_file(src, bucket=cos_env.bucket, region=cos_env.region, key="up/role/again.mp3", backoff=0.05)


def test_no_credentials_at_all_is_a_clear_error(cos_env, tmp_path):
    src = tmp_path / "n.mp3"
    src.write_bytes(b"n")
    with pytest.raises(UploadError, match="no COS credentials.*TENCENTCLOUD_SECRETID"):
        upload_file(src, bucket=cos_env.bucket, region=cos_env.region, key="up/none/n.mp3")
    with pytest.raises(UploadError, match="CosConfig.SecretKey is missing"):
        upload_file(src, bucket=cos_env.bucket, region=cos_env.region, key="up/none/n.mp3", secret_id="AKIDonly")


def test_cos_failing_twice_then_succeeding_uploads(cos_env, tmp_path):
    src = tmp_path / "flaky.mp3"
    src.write_bytes(os.urandom(4000))
    cos_env.fail_next(2)
    _upload(cos_env, src, "up/flaky/flaky.mp3")
    statuses = [r.status for r in cos_env.requests if r.key == "up/flaky/flaky.mp3"]
    assert statuses == [503, 503, 200]
    assert cos_env.get_object_bytes("up/flaky/flaky.mp3") == src.read_bytes()


def test_dropped_connections_are_retried(cos_env, tmp_path):
    src = tmp_path / "drop.mp3"
    src.write_bytes(os.urandom(4000))
    cos_env.drop_next(2)
    _upload(cos_env, src, "up/drop/drop.mp3")
    assert cos_env.get_object_bytes("up/drop/drop.mp3") == src.read_bytes()


def test_cos_failing_for_good_gives_up_after_bounded_tries(cos_env, tmp_path):
    src = tmp_path / "down.mp3"
    src.write_bytes(b"d" * 10)
    cos_env.fail_next(50)
    with pytest.raises(UploadError) as e:
        _upload(cos_env, src, "up/down/down.mp3", tries=3)
    assert str(e.value).startswith("upload failed: ServiceUnavailable")
    assert "after 3 tries" in str(e.value)
    assert sum(1 for r in cos_env.requests if r.key == "up/down/down.mp3") == 3


def test_cos_refusing_is_access_denied(cos_env, tmp_path):
    src = tmp_path / "deny.mp3"
    src.write_bytes(b"d" * 10)
    cos_env.deny()
    with pytest.raises(UploadError) as e:
        _upload(cos_env, src, "up/deny/deny.mp3")
    assert str(e.value).startswith("upload failed: AccessDenied")
    assert e.value.code == "AccessDenied"


def test_missing_file_and_network_down_are_clear(cos_env, monkeypatch, tmp_path):
    with pytest.raises(UploadError, match=r"^upload failed: cannot read the file.*nope.mp3"):
        _upload(cos_env, tmp_path / "nope.mp3", "up/x/nope.mp3")
    src = tmp_path / "n.mp3"
    src.write_bytes(b"n")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("COS_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(UploadError, match=r"^upload failed: network error") as e:
        _upload(cos_env, src, "up/x/n.mp3", tries=3, timeout=2)
    assert e.value.code == "NetworkError"


def test_secrets_never_reach_the_log(cos_env, capfd, tmp_path):
    src = tmp_path / "log.mp3"
    src.write_bytes(b"l" * 10)
    cos_env.fail_next(1)
    _upload(cos_env, src, "up/log/ok.mp3")
    with pytest.raises(UploadError):
        _upload(cos_env, src, "up/log/bad.mp3", secret_key="a-wrong-secret-key-987")
    err = capfd.readouterr().err
    assert "retrying" in err  # the log says what happened...
    assert cos_env.secret_key not in err and "a-wrong-secret-key-987" not in err  # ...never with what keys


def test_object_key_is_unique_sortable_and_rooted():
    t = datetime(2026, 11, 21, 5, 6, 7, 890000, tzinfo=timezone.utc)
    assert object_key("/records/", 1400000001, 1234, "anchor_1", t, "mp4") == \
        "records/1400000001_1234_anchor_1_20261121T050607890Z.mp4"
    assert object_key("/", 1400000001, 1234, "u", t, ".MP3") == "1400000001_1234_u_20261121T050607890Z.mp3"
    assert object_key("", 1, 2, "u", t, "mp4", part=2) == "1_2_u_20261121T050607890Z_002.mp4"
    assert object_key("a//b/", 1, 2, "u", t.timestamp(), "mp4") == "a/b/1_2_u_20261121T050607890Z.mp4"
    # String rooms: "_" and unsafe characters are replaced and a hash keeps distinct rooms distinct.
    k1, k2 = object_key("p", 1, "room_a", "u", t, "mp4"), object_key("p", 1, "room-a", "u", t, "mp4")
    assert k1 != k2 and "_" not in k1.split("/")[-1].split("_")[1]
    later = object_key("p", 1, 2, "u", t.timestamp() + 0.001, "mp4")
    assert sorted([later, object_key("p", 1, 2, "u", t, "mp4")])[-1] == later
    with pytest.raises(ValueError, match="'..'"):
        object_key("a/../b", 1, 2, "u", t, "mp4")


def test_object_key_from_hostile_user_ids_stays_one_short_distinct_segment():
    t = datetime(2026, 11, 21, 5, 6, 7, 890000, tzinfo=timezone.utc)
    ids = ["../../x", "/abs/x", "a/b", "a-b", "nul\x00id", "\U0001F600", "../" * 66 + "xx", "../" * 66 + "xy", ".."]
    keys = [object_key("p", 1, 2, user_id, t, "mp3") for user_id in ids]
    assert len(set(keys)) == len(ids)
    for key in keys:
        assert key.startswith("p/1_2_") and key.count("/") == 1, key
        assert len(key) < 120 and all(ch.isascii() and (ch.isalnum() or ch in "/_-.") for ch in key), key


def test_cos_url_quotes_the_key():
    assert cos_url("b-1250000000", "ap-guangzhou", "a b/c.mp4") == \
        "https://b-1250000000.cos.ap-guangzhou.myqcloud.com/a%20b/c.mp4"
    assert parse_cos_url("https://b-1250000000.cos.ap-guangzhou.myqcloud.com/a%20b/c.mp4") == \
        ("b-1250000000", "ap-guangzhou", "a b/c.mp4")


# --- the start check: credentials tried before a recording starts ---------------------------------


def _check(svc, **kw):
    kw.setdefault("secret_id", svc.secret_id)
    kw.setdefault("secret_key", svc.secret_key)
    kw.setdefault("bucket", svc.bucket)
    kw.setdefault("backoff", 0.05)
    return check_access(region=svc.region, key_prefix="trtc/check/", **kw)


def test_start_check_accepts_good_credentials_with_one_head(cos_env):
    before = len(cos_env.requests)
    assert _check(cos_env) is None
    assert [(r.method, r.key, r.status) for r in cos_env.requests[before:]] == [("HEAD", "", 200)]


@pytest.mark.parametrize("kw,code,names", [
    ({"secret_key": "wrong-key-0123456789"}, "SignatureDoesNotMatch", "CosConfig.SecretKey"),
    ({"secret_id": "AKIDnobodyKnowsThis000000"}, "InvalidAccessKeyId", "CosConfig.SecretId"),
    ({"bucket": "missing-1250000000"}, "NoSuchBucket", "CosConfig.Bucket"),
    ({"secret_key": None}, "MissingCredentials", "CosConfig.SecretKey is missing"),
])
def test_start_check_names_what_is_wrong(cos_env, kw, code, names):
    with pytest.raises(UploadError) as e:
        _check(cos_env, **kw)
    assert e.value.code == code
    assert str(e.value).startswith(f"CosConfig cannot be used: {code}") and names in str(e.value), str(e.value)


def test_start_check_access_denied(cos_env):
    cos_env.deny()
    with pytest.raises(UploadError, match=r"^CosConfig cannot be used: AccessDenied.*cos:HeadBucket") as e:
        _check(cos_env)
    assert not e.value.retryable


def test_start_check_treats_an_unreachable_cos_as_a_warning(cos_env, monkeypatch):
    cos_env.fail_next(1)
    assert _check(cos_env) is None  # a 503, then in: retried like an upload
    cos_env.fail_next(3)
    warning = _check(cos_env, tries=3)
    assert warning.startswith("COS not reachable at start: HTTP503") and "after 3 tries" in warning, warning
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("COS_ENDPOINT", f"http://127.0.0.1:{port}")
    assert "network error" in _check(cos_env, tries=2, timeout=2)


def test_the_callers_tries_are_kept(cos_env, tmp_path):
    src = tmp_path / "two.mp3"
    src.write_bytes(b"t" * 10)
    cos_env.fail_next(50)
    with pytest.raises(UploadError, match="after 2 tries"):
        _upload(cos_env, src, "up/two/two.mp3", tries=2)
    assert sum(1 for r in cos_env.requests if r.key == "up/two/two.mp3") == 2  # not raised to 3
    with pytest.raises(UploadError, match="ServiceUnavailable"):
        _upload(cos_env, src, "up/two/one.mp3", tries=1)
    assert sum(1 for r in cos_env.requests if r.key == "up/two/one.mp3") == 1


# --- the egress rule: COS_ENDPOINT is checked as every other address the functions connect to -----


@pytest.mark.parametrize("endpoint", ["http://10.20.30.40:9000", "http://127.0.0.1:1", "http://169.254.169.254"])
def test_an_unlisted_internal_cos_endpoint_is_refused_before_any_request(cos_env, monkeypatch, tmp_path, endpoint):
    src = tmp_path / "x.mp3"
    src.write_bytes(b"x" * 10)
    monkeypatch.setenv("COS_ALLOWLIST", "")
    monkeypatch.setenv("COS_ENDPOINT", endpoint)
    before = len(cos_env.requests)
    with pytest.raises(UploadError) as e:  # the uploads (segments, assembly) ...
        _upload(cos_env, src, "up/egress/x.mp3")
    assert e.value.code == "EndpointRefused" and "COS_ALLOWLIST" in str(e.value), str(e.value)
    assert not e.value.retryable
    with pytest.raises(UploadError, match=r"^CosConfig cannot be used: EndpointRefused.*COS_ALLOWLIST"):
        _check(cos_env)  # ... the start check ...
    monkeypatch.setenv("RECORD_STATE_BUCKET", cos_env.bucket)
    monkeypatch.setenv("TENCENTCLOUD_SECRETID", cos_env.secret_id)
    monkeypatch.setenv("TENCENTCLOUD_SECRETKEY", cos_env.secret_key)
    with pytest.raises(UploadError, match="EndpointRefused"):
        store_from_env()  # ... and the recovery state all go through the one door
    assert len(cos_env.requests) == before  # nothing reached any COS


def test_a_listed_internal_cos_endpoint_is_used(cos_env, monkeypatch, tmp_path):
    src = tmp_path / "ok.mp3"
    src.write_bytes(b"ok" * 10)
    port = cos_env.endpoint_url.rsplit(":", 1)[1]
    monkeypatch.setenv("COS_ALLOWLIST", "127.0.0.1/32")
    monkeypatch.setenv("COS_ENDPOINT", f"http://127.0.0.1:{port}")
    _upload(cos_env, src, "up/egress/ok.mp3")
    assert cos_env.get_object_bytes("up/egress/ok.mp3") == src.read_bytes()
