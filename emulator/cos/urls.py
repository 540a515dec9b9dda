"""Where a COS request goes: the bucket its Host names, and the object an `x-cos-copy-source` names.

cos-python-sdk-v5 configured with `CosConfig(IP=..., Port=...)` sends every request to
http://IP:PORT/<key> with `Host: <bucket>.cos.<region>.myqcloud.com` and signs that Host, so the
bucket comes from the Host header; a request without a COS Host (curl to 127.0.0.1) goes to the
service's own bucket. The host pattern is the project's one (shared.cos.urls, which also
builds and parses the RecordFile URLs).

Tools that build virtual-host names from an endpoint (coscmd: `http://<bucket>.<endpoint>/<key>`)
reach this service as their HTTP proxy (HTTP_PROXY=http://IP:PORT, honoured by requests): the
request line then carries the absolute URL (`origin_form` takes its path and query) and the Host is
`<bucket>.127.0.0.1:PORT`, a bucket in front of the local endpoint (`bucket_for` checks that bucket).
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from shared.cos.urls import cos_host, parse_cos_host

from .exceptions import CosError
from .models import CosState


def origin_form(raw_uri: str) -> str:
    """The path and query of a request target: a proxy's absolute form ("http://host/key?q") loses
    its scheme and host; the usual origin form ("/key?q") is kept as it is."""
    if raw_uri.startswith("/"):
        return raw_uri
    parts = urlsplit(raw_uri)
    if not (parts.scheme and parts.netloc):
        return raw_uri
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _local_bucket(host: str) -> str | None:
    """The bucket of a virtual host in front of a local endpoint: "b-125.127.0.0.1", "b-125.localhost"."""
    bucket, _, rest = host.partition(".")
    if not rest:
        return None
    if rest == "localhost":
        return bucket
    try:
        return bucket if ipaddress.ip_address(rest).is_loopback else None
    except ValueError:
        return None


def bucket_for(host: str, state: CosState) -> str:
    """The bucket a request with this Host (lower case, no port) is for: NoSuchBucket when it names
    a bucket or region this service does not have."""
    named = parse_cos_host(host)
    if named is not None and named != (state.bucket, state.region):
        raise CosError("NoSuchBucket", "The specified bucket does not exist.", 404)
    local = _local_bucket(host)
    if local is not None and local != state.bucket:
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
