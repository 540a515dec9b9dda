"""COS's addresses: the one host pattern of the project, and the canonical object URL.

- `cos_host(bucket, region)`  "{bucket}.cos.{region}.myqcloud.com" (the emulator routes on it too)
- `cos_url(bucket, region, key)` "https://{bucket}.cos.{region}.myqcloud.com/{key}": what a result
  reports, against the emulator as in production
- `parse_cos_host`, `parse_cos_url`: the bucket, region (and key) back
"""
from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit


def cos_url(bucket: str, region: str, key: str) -> str:
    return f"https://{cos_host(bucket, region)}/{quote(key.lstrip('/'), safe='/-_.~')}"


# One COS host pattern for the whole project: RecordFile URLs here, the emulator's Host routing.
_COS_HOST = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9-]*)\.cos\.(?P<region>[a-z0-9-]+)\.myqcloud\.com$")


def cos_host(bucket: str, region: str) -> str:
    """The host COS serves a bucket at: "{bucket}.cos.{region}.myqcloud.com"."""
    return f"{bucket}.cos.{region}.myqcloud.com"


def parse_cos_host(host: str) -> tuple[str, str] | None:
    """(bucket, region) from a host made by `cos_host` (lower case, no port), else None."""
    m = _COS_HOST.match(host)
    return (m.group("bucket"), m.group("region")) if m else None


def parse_cos_url(url: str) -> tuple[str, str, str]:
    """(bucket, region, key) from a URL made by `cos_url`."""
    parts = urlsplit(url)
    named = parse_cos_host(parts.hostname or "")
    if not named or not parts.path.strip("/"):
        raise ValueError(f"{url!r} is not a COS object URL like https://bucket-1250000000.cos.ap-guangzhou.myqcloud.com/key")
    return named[0], named[1], unquote(parts.path[1:])
