"""The local cloud started as a whole (in this process): one Cloud API endpoint for TRTC and SCF,
COS that checks signatures, Redis, and the environment a function runs in."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
import requests
from qcloud_cos.cos_exception import CosServiceError
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.scf.v20180416 import models as scf_models
from tencentcloud.trtc.v20190722 import models as trtc_models

from emulator.clients import cos_client, trtc_client
from emulator.cloud import CloudConfig, LocalCloud

from .conftest import PROBE_ROOT, scf_client, until


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cloud")
    functions = root / "functions"
    functions.mkdir()
    (functions / "push_stream").symlink_to(PROBE_ROOT, target_is_directory=True)  # the probe stands in
    # A bucket of its own: the session's cos_service (tests/conftest.py) serves the default one in this process.
    c = LocalCloud(CloudConfig(state_dir=root / "state", functions_dir=functions, shutdown_grace_s=2.0,
                               bucket="cloudtest-1250000000")).start()
    yield c
    c.stop()


def test_the_info_names_every_service_on_loopback(cloud):
    info = cloud.info()
    assert info["gateway"].startswith("http://127.0.0.1:")
    assert info["cloudApiEndpoint"].startswith("127.0.0.1:")
    assert info["roomAddress"].startswith("127.0.0.1:")
    assert info["sdkAppId"] == 1400000001
    assert info["cos"]["ip"] == "127.0.0.1" and info["cos"]["bucket"] and info["cos"]["region"]
    assert info["redis"] == {"host": "127.0.0.1", "port": cloud.redis.port, "password": None}
    assert info["functions"] == ["push_stream"]  # record_stream's folder is absent here: not served
    assert json.loads((cloud.state_dir / "cloud.json").read_text()) == info


def test_one_cloud_api_endpoint_serves_trtc_and_scf(cloud):
    info = cloud.info()
    req = trtc_models.RemoveUserRequest()
    req.SdkAppId, req.RoomId, req.UserIds = info["sdkAppId"], 4242, ["nobody"]
    with pytest.raises(TencentCloudSDKException) as e:
        trtc_client(info, timeout=10).RemoveUser(req)
    assert e.value.code == "FailedOperation.RoomNotExist"  # signed right, served by TRTC's actions
    # A run started through the gateway is listed by SCF's ListAsyncEvents, among exactly the runs the cloud holds.
    answer = requests.post(f"{info['gateway']}/push_stream", json={"mode": "echo"}, timeout=5)
    assert answer.status_code == 200
    lreq = scf_models.ListAsyncEventsRequest()
    lreq.FunctionName = "push_stream"
    listed = scf_client(info["cloudApiEndpoint"], info["secretId"], info["secretKey"]).ListAsyncEvents(lreq)
    assert answer.headers["x-scf-reqid"] in [e.InvokeRequestId for e in listed.EventList]
    assert listed.TotalCount == len([r for r in cloud.scf.runs() if r.function.name == "push_stream"]) >= 1


def test_cos_serves_the_sdk_and_refuses_a_wrong_secret_key(cloud):
    info = cloud.info()
    bucket = info["cos"]["bucket"]
    client = cos_client(info)
    client.put_object(Bucket=bucket, Key="checks/hello.txt", Body=b"hello cos")
    assert client.get_object(Bucket=bucket, Key="checks/hello.txt")["Body"].get_raw_stream().read() == b"hello cos"
    with pytest.raises(CosServiceError) as e:
        cos_client(info, secret_key="wrong-secret-key").get_object(Bucket=bucket, Key="checks/hello.txt")
    assert e.value.get_status_code() == 403
    assert e.value.get_error_code() == "SignatureDoesNotMatch"
    # Persisted under the state directory.
    assert (cloud.state_dir / "cos" / bucket / "checks" / "hello.txt").read_bytes() == b"hello cos"


def test_functions_run_with_the_local_services_and_role_credentials_in_their_environment(cloud, tmp_path: Path):
    info = cloud.info()
    out = tmp_path / "seen.json"
    r = requests.post(f"{info['gateway']}/push_stream", json={"out": str(out)}, timeout=5)
    assert r.status_code == 200 and r.text == "Async run task submitted"
    until(out.exists, 15, "the function to start")
    env = json.loads(out.read_text())["env"]
    assert env["ROOM_BACKEND"] == "local"
    assert env["LOCAL_ROOM_ADDRESS"] == info["roomAddress"]
    assert env["COS_ENDPOINT"] == f"http://127.0.0.1:{info['cos']['port']}"
    assert "127.0.0.0/8" in env["SOURCE_ALLOWLIST"] and "127.0.0.0/8" in env["CALLBACK_ALLOWLIST"]
    assert Path(env["CFS_PATH"]).parent == cloud.state_dir
    assert "127.0.0.0/8" in env["REDIS_ALLOWLIST"]
    # Local sources: the state dir's media/ and demo/, never files/ (other runs' recordings).
    local_dirs = env["LOCAL_SOURCE_DIRS"].split(",")
    assert {str(cloud.state_dir / "media"), str(cloud.state_dir / "demo")} <= set(local_dirs)
    assert not any(Path(env["CFS_PATH"]).is_relative_to(d) for d in local_dirs)

    # The execution role's temporary credentials work against the local COS, with their token only.
    role = (env["TENCENTCLOUD_SECRETID"], env["TENCENTCLOUD_SECRETKEY"], env["TENCENTCLOUD_SESSIONTOKEN"])
    bucket = info["cos"]["bucket"]
    cos_client(info, secret_id=role[0], secret_key=role[1], token=role[2]).put_object(
        Bucket=bucket, Key="checks/role.txt", Body=b"role")
    with pytest.raises(CosServiceError):
        cos_client(info, secret_id=role[0], secret_key=role[1]).put_object(Bucket=bucket, Key="checks/x.txt", Body=b"x")


def test_redis_keeps_its_data_in_the_state_directory(cloud):
    info = cloud.info()
    client = redis.Redis(host=info["redis"]["host"], port=info["redis"]["port"], socket_timeout=5)
    client.set("cloud-test", "1")
    client.save()
    assert (cloud.state_dir / "redis" / "dump.rdb").is_file()
