"""The local COS endpoint, driven with the real cos-python-sdk-v5 the way users drive COS."""
from __future__ import annotations

import os
import time

import pytest
from qcloud_cos.cos_exception import CosClientError, CosServiceError

from emulator.clients import cos_client
from emulator.cos import CosService
from emulator.cos.signature import http_string, signature


def test_put_head_get_list_through_the_sdk(cos_service):
    c = cos_service.client()
    key = "emu/put/a b/ü.txt"  # spaces and non-ASCII travel percent-encoded and are signed decoded
    c.put_object(Bucket=cos_service.bucket, Key=key, Body=b"hello cos", ContentType="text/plain")

    head = c.head_object(Bucket=cos_service.bucket, Key=key)
    assert int(head["Content-Length"]) == 9
    assert cos_service.get_object_bytes(key) == b"hello cos"
    listed = c.list_objects(Bucket=cos_service.bucket, Prefix="emu/put/")
    assert [o["Key"] for o in listed["Contents"]] == [key]


def test_multipart_upload_file_reassembles_the_bytes(cos_service, tmp_path):
    data = os.urandom(2 * 1024 * 1024 + 12345)  # three 1 MB parts: COS's smallest part size
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    cos_service.client().upload_file(Bucket=cos_service.bucket, Key="emu/multi/big.bin",
                                     LocalFilePath=str(src), PartSize=1, MAXThread=2)
    served = [r for r in cos_service.requests if r.key == "emu/multi/big.bin"]
    assert sum(1 for r in served if r.method == "PUT" and "partNumber" in r.query) == 3
    assert cos_service.get_object_bytes("emu/multi/big.bin") == data


def test_missing_object_is_nosuchkey(cos_service):
    with pytest.raises(CosServiceError) as e:
        cos_service.client().get_object(Bucket=cos_service.bucket, Key="emu/none/missing.txt")
    assert (e.value.get_status_code(), e.value.get_error_code()) == (404, "NoSuchKey")


def test_wrong_secret_key_is_refused_with_cos_xml_error(cos_service):
    bad = cos_service.client(secret_key="not-the-right-key")
    with pytest.raises(CosServiceError) as e:
        bad.put_object(Bucket=cos_service.bucket, Key="emu/auth/x.txt", Body=b"x")
    assert e.value.get_status_code() == 403
    assert e.value.get_error_code() == "SignatureDoesNotMatch"
    assert e.value.get_request_id()  # COS's x-cos-request-id / RequestId
    with pytest.raises(CosServiceError):
        cos_service.client().head_object(Bucket=cos_service.bucket, Key="emu/auth/x.txt")  # nothing was written


def test_unknown_secret_id_is_invalidaccesskeyid(cos_service):
    with pytest.raises(CosServiceError) as e:
        cos_service.client(secret_id="AKIDnobody").put_object(Bucket=cos_service.bucket, Key="emu/auth/y", Body=b"y")
    assert (e.value.get_status_code(), e.value.get_error_code()) == (403, "InvalidAccessKeyId")


def test_unsigned_request_is_access_denied(cos_service):
    import requests

    r = requests.get(f"{cos_service.endpoint_url}/emu/auth/anything", timeout=5,
                     headers={"Host": f"{cos_service.bucket}.cos.{cos_service.region}.myqcloud.com"})
    assert r.status_code == 403
    assert "<Code>AccessDenied</Code>" in r.text


def test_tampered_body_headers_break_the_signature(cos_service):
    """A signed header changed on the way (Content-Length here) no longer matches."""
    import requests

    host = f"{cos_service.bucket}.cos.{cos_service.region}.myqcloud.com"
    now = int(time.time())
    t = f"{now - 60};{now + 600}"
    signed = {"host": host, "content-length": "5"}
    sig = signature(cos_service.secret_key, t, t, http_string("put", "/emu/auth/t.txt", {}, signed))
    auth = (f"q-sign-algorithm=sha1&q-ak={cos_service.secret_id}&q-sign-time={t}&q-key-time={t}"
            f"&q-header-list=content-length;host&q-url-param-list=&q-signature={sig}")
    ok = requests.put(f"{cos_service.endpoint_url}/emu/auth/t.txt", data=b"12345", timeout=5,
                      headers={"Host": host, "Authorization": auth})
    assert ok.status_code == 200
    bad = requests.put(f"{cos_service.endpoint_url}/emu/auth/t.txt", data=b"123456", timeout=5,
                       headers={"Host": host, "Authorization": auth})
    assert bad.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in bad.text


def test_expired_signature_is_refused(cos_service):
    import requests

    host = f"{cos_service.bucket}.cos.{cos_service.region}.myqcloud.com"
    t = f"{int(time.time()) - 7200};{int(time.time()) - 3600}"
    sig = signature(cos_service.secret_key, t, t, http_string("get", "/emu/auth/t.txt", {}, {"host": host}))
    auth = (f"q-sign-algorithm=sha1&q-ak={cos_service.secret_id}&q-sign-time={t}&q-key-time={t}"
            f"&q-header-list=host&q-url-param-list=&q-signature={sig}")
    r = requests.get(f"{cos_service.endpoint_url}/emu/auth/t.txt", timeout=5, headers={"Host": host, "Authorization": auth})
    assert r.status_code == 403 and "Request has expired" in r.text


def test_temporary_credentials_need_their_token(cos_service):
    cos_service.add_temporary_credentials("AKIDtmpEmuTest01", "tmp-secret-key-01", "session-token-01")
    good = cos_service.client("AKIDtmpEmuTest01", "tmp-secret-key-01", token="session-token-01")
    good.put_object(Bucket=cos_service.bucket, Key="emu/tmp/ok.txt", Body=b"ok")
    assert cos_service.get_object_bytes("emu/tmp/ok.txt") == b"ok"
    for token in (None, "some-other-token"):
        with pytest.raises(CosServiceError) as e:
            cos_service.client("AKIDtmpEmuTest01", "tmp-secret-key-01", token=token).put_object(
                Bucket=cos_service.bucket, Key="emu/tmp/no.txt", Body=b"no")
        assert (e.value.get_status_code(), e.value.get_error_code()) == (403, "InvalidAccessKeyId")


def test_wrong_region_or_bucket_is_nosuchbucket(cos_service):
    with pytest.raises(CosServiceError) as e:
        cos_client(cos_service.info, region="ap-shanghai").put_object(Bucket=cos_service.bucket, Key="emu/r/x", Body=b"x")
    assert (e.value.get_status_code(), e.value.get_error_code()) == (404, "NoSuchBucket")
    with pytest.raises(CosServiceError) as e:
        cos_service.client().put_object(Bucket="other-1250000000", Key="emu/r/x", Body=b"x")
    assert e.value.get_error_code() == "NoSuchBucket"


def test_injected_failures_then_recovery(cos_service):
    c = cos_service.client()
    cos_service.fail_next(1)
    with pytest.raises(CosServiceError) as e:
        c.put_object(Bucket=cos_service.bucket, Key="emu/fault/x", Body=b"x")
    assert (e.value.get_status_code(), e.value.get_error_code()) == (503, "ServiceUnavailable")

    cos_service.drop_next(1)
    with pytest.raises(CosClientError):
        c.put_object(Bucket=cos_service.bucket, Key="emu/fault/x", Body=b"x")

    cos_service.deny()
    with pytest.raises(CosServiceError) as e:
        c.put_object(Bucket=cos_service.bucket, Key="emu/fault/x", Body=b"x")
    assert (e.value.get_status_code(), e.value.get_error_code()) == (403, "AccessDenied")
    cos_service.allow()

    c.put_object(Bucket=cos_service.bucket, Key="emu/fault/x", Body=b"x")
    assert cos_service.get_object_bytes("emu/fault/x") == b"x"


def test_objects_persist_in_the_state_directory(tmp_path):
    state = tmp_path / "state"
    with CosService(bucket="persist-1250000001", state_dir=str(state)) as svc:
        svc.client().put_object(Bucket=svc.bucket, Key="rec/a.mp4", Body=b"first")
        svc.client().put_object(Bucket=svc.bucket, Key="rec/gone.mp4", Body=b"bye")
        svc.client().delete_object(Bucket=svc.bucket, Key="rec/gone.mp4")
    assert (state / "cos" / "persist-1250000001" / "rec" / "a.mp4").read_bytes() == b"first"
    with CosService(bucket="persist-1250000001", state_dir=str(state)) as svc:  # a restart keeps them
        assert svc.get_object_bytes("rec/a.mp4") == b"first"
        keys = [o["Key"] for o in svc.client().list_objects(Bucket=svc.bucket).get("Contents", [])]
        assert keys == ["rec/a.mp4"]


def test_bad_bucket_name_is_refused_at_construction():
    with pytest.raises(ValueError, match="name-1250000000"):
        CosService(bucket="NoAppId")


def test_presigned_url_downloads_without_the_sdk(cos_service):
    """What a person does with a recording: a pre-signed URL opened by any HTTP client."""
    import requests

    c = cos_service.client()
    c.put_object(Bucket=cos_service.bucket, Key="emu/pre/a.mp3", Body=b"ID3 presigned")
    url = c.get_presigned_download_url(Bucket=cos_service.bucket, Key="emu/pre/a.mp3", Expired=60)
    r = requests.get(url, timeout=5)
    assert (r.status_code, r.content) == (200, b"ID3 presigned")
    tampered = url.replace("emu/pre/a.mp3", "emu/pre/b.mp3")
    assert requests.get(tampered, timeout=5).status_code == 403


def test_list_keys_pages_through_everything(cos_service):
    c = cos_service.client()
    for i in range(3):
        c.put_object(Bucket=cos_service.bucket, Key=f"emu/list/{i}.txt", Body=b"x")
    assert cos_service.list_keys("emu/list/") == [f"emu/list/{i}.txt" for i in range(3)]
    assert cos_service.env == {"COS_ENDPOINT": cos_service.endpoint_url}


def test_two_services_with_the_same_bucket_name_are_separate(cos_service):
    with CosService(bucket=cos_service.bucket) as other:
        other.client().put_object(Bucket=other.bucket, Key="emu/twin/only-here.txt", Body=b"twin")
        assert other.list_keys("emu/twin/") == ["emu/twin/only-here.txt"]
        assert cos_service.list_keys("emu/twin/") == []
        listing = other.client().list_objects(Bucket=other.bucket, Prefix="emu/twin/")
        assert listing["Name"] == cos_service.bucket  # the COS name, not moto's internal one


def test_object_headers_are_spelled_as_cos_spells_them(tmp_path):
    """cos-python-sdk-v5's resumable download (coscmd's, for large objects) reads `Last-Modified`
    and `ETag` out of a plain dict of the HEAD answer's headers: their spelling matters."""
    from qcloud_cos import CosConfig, CosS3Client

    from emulator.cos import CosService

    cos = CosService(secret_id="AKIDspelling", secret_key="k", state_dir=str(tmp_path)).start()
    try:
        client = CosS3Client(CosConfig(IP=cos.ip, Port=cos.port, Region=cos.region, SecretId="AKIDspelling",
                                       SecretKey="k", Scheme="http"))
        client.put_object(Bucket=cos.bucket, Key="a.bin", Body=b"x" * 1000)
        head = client.head_object(Bucket=cos.bucket, Key="a.bin")
        assert {"Last-Modified", "ETag", "Content-Length", "x-cos-request-id"} <= set(head), sorted(head)
    finally:
        cos.stop()
