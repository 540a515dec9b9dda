"""The function's default Redis (REDIS_URL) applied to a call: the one place REDIS_URL is read.

The rule is in shared.redis.address's docstring; this module reads the settings, which the address
module must not (settings parse REDIS_URL with it).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from shared.settings import settings

from .address import RedisAddress, parse_redis_url


def redis_url_from_env() -> Optional[RedisAddress]:
    """The function's default Redis (REDIS_URL), None when unset; ValueError when malformed."""
    raw = settings().redis_url
    return parse_redis_url(raw) if raw else None


def _given(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name)
    return value is not None and not (isinstance(value, str) and not value.strip())


def with_default_redis(data: Any) -> Any:
    """A call's raw parameters with REDIS_URL filled in where the call names no Redis (the rule in
    this module's docstring). Anything but a dict is returned as it is, for validation to refuse."""
    if not isinstance(data, Mapping) or _given(data, "redisHost"):
        return data
    default = redis_url_from_env()
    if default is None:
        return data
    filled = dict(data)
    filled["redisHost"] = default.host
    if not _given(data, "redisPort"):
        filled["redisPort"] = default.port
    if not _given(data, "redisPassword") and default.password is not None:
        filled["redisPassword"] = default.password
    if not _given(data, "redisDb"):
        filled["redisDb"] = default.db
    return filled
