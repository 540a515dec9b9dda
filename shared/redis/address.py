"""Where a Redis is: a call's own redisHost/redisPort/redisPassword/redisDb, else the function's REDIS_URL
(that default is applied by shared.redis.default; this module only parses and holds addresses).

Both push functions (push_stream and push_control) take it as the
default Redis of a call that names none; a call's own fields win:

- a call that gives `redisHost` uses its own fields only (port 6379, no password and db 0 when it
  leaves them out): REDIS_URL's password is never sent to a host the caller named;
- a call without `redisHost` uses REDIS_URL's host, and REDIS_URL's port, password and db for any
  of `redisPort`, `redisPassword`, `redisDb` it does not give itself.

`shared.redis.default.with_default_redis` applies that rule to the raw parameters before validation, so that after
validation `redisHost`, `redisPort`, `redisPassword` and `redisDb` are the Redis the call uses
(validated like the call's own). REDIS_URL's form is `redis://[:password@]host[:port][/db]`; a
malformed one is a configuration error reported before any call is served (`redis_url_from_env`
as the handlers' preflight).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from shared.secrets import redact_value

REDIS_URL_ENV = "REDIS_URL"
DEFAULT_REDIS_PORT = 6379
MAX_REDIS_DB = 1023
# A host name (RFC 1123 labels; underscores tolerated as some internal resolvers serve them) or an
# IPv4/IPv6 address. Anything else would only end in a resolver error much later.
_HOST = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?)(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}"
                   r"[A-Za-z0-9_])?)*\.?$|^[0-9A-Fa-f:.]+$")


@dataclass(frozen=True)
class RedisAddress:
    """One Redis: where it is and how to log in. The password never shows in a repr."""

    host: str
    port: int = DEFAULT_REDIS_PORT
    password: Optional[str] = field(default=None, repr=False)
    db: int = 0

    @property
    def where(self) -> str:
        """How a message names it: "redis 10.0.0.12:6379/0"."""
        return f"redis {self.host}:{self.port}/{self.db}"


def check_redis_host(host: str) -> str:
    """`host` if it can name a Redis server (a host name or an IP address); ValueError otherwise."""
    if len(host) > 253 or not _HOST.match(host):
        raise ValueError("must be a host name or an IP address")
    return host


def parse_redis_url(url: str) -> RedisAddress:
    """REDIS_URL as a RedisAddress; ValueError naming REDIS_URL and what is wrong (never its password)."""
    what = f"{REDIS_URL_ENV} must look like redis://[:password@]host[:port][/db]"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    if parts.password:
        redact_value(unquote(parts.password))  # masked from every later log line
    if parts.scheme != "redis":
        raise ValueError(f"{what}: the scheme is {parts.scheme or 'missing'!r}"
                         + (" (TLS is not supported)" if parts.scheme == "rediss" else ""))
    if not parts.hostname:
        raise ValueError(f"{what}: it names no host")
    try:
        check_redis_host(parts.hostname)
    except ValueError:
        raise ValueError(f"{what}: the host {parts.hostname!r} is not a host name or an IP address") from None
    if parts.username:
        raise ValueError(f"{what}: a user name is not supported, only a password (redis://:password@host)")
    if parts.query or parts.fragment:
        raise ValueError(f"{what}: no query string or fragment")
    path = parts.path.strip("/")
    if path and not (path.isdigit() and int(path) <= MAX_REDIS_DB):
        raise ValueError(f"{what}: the db must be a number in 0..{MAX_REDIS_DB}")
    if port == 0:
        raise ValueError(f"{what}: port 0 (a port is 1..65535)")
    return RedisAddress(host=parts.hostname, port=port or DEFAULT_REDIS_PORT,
                        password=unquote(parts.password) if parts.password else None,
                        db=int(path) if path else 0)


def address_of(host: Optional[str], port: int, password: Optional[SecretStr], db: int) -> Optional[RedisAddress]:
    """The RedisAddress of validated redis fields (None without a host)."""
    if not host:
        return None
    return RedisAddress(host=host, port=port, password=password.get_secret_value() if password else None, db=db)


def remember_secret(value: Optional[SecretStr]) -> Optional[SecretStr]:
    """A validator for secret fields: the value is masked from every later log line, even in free text."""
    if value is not None:
        redact_value(value.get_secret_value())
    return value
