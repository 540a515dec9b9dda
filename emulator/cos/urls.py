"""Where a COS request goes: the bucket its Host names, and the object an `x-cos-copy-source` names.

cos-python-sdk-v5 configured with `CosConfig(IP=..., Port=...)` sends every request to
http://IP:PORT/<key> with `Host: <bucket>.cos.<region>.myqcloud.com` and signs that Host, so the
bucket comes from the Host header; a request without a COS Host (curl to 127.0.0.1) goes to the
service's own bucket. The host pattern is the project's one (shared.cos.urls, which also
builds and parses the RecordFile URLs).
"""
from __future__ import annotations

from shared.cos.urls import cos_host, parse_cos_host

from .exceptions import CosError
from .models import CosState


def bucket_for(host: str, state: CosState) -> str:
    """The bucket a request with this Host (lower case, no port) is for: NoSuchBucket when it names
    a bucket or region this service does not have."""
    named = parse_cos_host(host)
    if named is not None and named != (state.bucket, state.region):
        raise CosError("NoSuchBucket", "The specified bucket does not exist.", 404)
    return state.bucket


def copy_source_key(source: str, state: CosState) -> str:
    """The key an `x-cos-copy-source` ("bucket-appid.cos.region.myqcloud.com/key") names in this bucket."""
    host, _, key = source.partition("/")
    named = parse_cos_host(host.lower())
    if named is None or not key:
        raise CosError("InvalidArgument", "x-cos-copy-source must be like "
                                          "bucket-appid.cos.region.myqcloud.com/key", 400)
    if named != (state.bucket, state.region):
        raise CosError("NoSuchBucket", "The source bucket does not exist.", 404)
    return key


def host_of(state: CosState) -> str:
    """The bucket's COS host, as answers name it (Location headers, XML bodies)."""
    return cos_host(state.bucket, state.region)
