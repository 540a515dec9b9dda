"""The real SDK clients, aimed at the local cloud: how the demo, the tests and the benches reach it,
the way a user's code would (tencentcloud-sdk-python over plain HTTP, cos-python-sdk-v5 by IP and port).

    info = cloud.info()                  # or the JSON line `python -m emulator up` prints
    scf_client(info).GetAsyncEventStatus(request)
    trtc_client(info).RemoveUser(request)
    cos_client(info).get_object(Bucket=..., Key=...)

`info` needs only what the client uses: "cloudApiEndpoint", "secretId" and "secretKey" for the
Cloud API clients (CloudApi.info), "cos" {"ip", "port", "region"} and the keys for COS
(CosService.info). Keyword arguments override the keys (a test of a wrong key, temporary credentials).
"""
from __future__ import annotations

from typing import Any, Mapping

REGION = "ap-guangzhou"  # the Cloud API endpoint serves every region; the SDK needs one to sign


def _cloud_api_client(client_class: Any, info: Mapping[str, Any], secret_id: str | None, secret_key: str | None,
                      region: str, method: str, timeout: float) -> Any:
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile

    cred = credential.Credential(info["secretId"] if secret_id is None else secret_id,
                                 info["secretKey"] if secret_key is None else secret_key)
    http = HttpProfile(endpoint=info["cloudApiEndpoint"], protocol="http", reqMethod=method, reqTimeout=timeout)
    return client_class(cred, region, ClientProfile(httpProfile=http))


def scf_client(info: Mapping[str, Any], *, secret_id: str | None = None, secret_key: str | None = None,
               region: str = REGION, method: str = "POST", timeout: float = 30) -> Any:
    """A tencentcloud ScfClient (2018-04-16) on the local Cloud API endpoint."""
    from tencentcloud.scf.v20180416.scf_client import ScfClient

    return _cloud_api_client(ScfClient, info, secret_id, secret_key, region, method, timeout)


def trtc_client(info: Mapping[str, Any], *, secret_id: str | None = None, secret_key: str | None = None,
                region: str = REGION, method: str = "POST", timeout: float = 30) -> Any:
    """A tencentcloud TrtcClient (2019-07-22) on the local Cloud API endpoint."""
    from tencentcloud.trtc.v20190722.trtc_client import TrtcClient

    return _cloud_api_client(TrtcClient, info, secret_id, secret_key, region, method, timeout)


def cos_client(info: Mapping[str, Any], *, secret_id: str | None = None, secret_key: str | None = None,
               token: str | None = None, region: str | None = None, retry: int = 0) -> Any:
    """A CosS3Client on the local COS endpoint (`region` other than the bucket's: a test of the wrong one)."""
    from qcloud_cos import CosConfig, CosS3Client

    cos = info["cos"]
    config = CosConfig(IP=cos["ip"], Port=cos["port"], Region=region or cos["region"], Scheme="http",
                       SecretId=info["secretId"] if secret_id is None else secret_id,
                       SecretKey=info["secretKey"] if secret_key is None else secret_key, Token=token)
    return CosS3Client(config, retry=retry)
