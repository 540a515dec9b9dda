"""The one way to connect to a Redis: checked against REDIS_ALLOWLIST, and silent about what it found.

A Redis address comes from a caller (redisHost) or the function's REDIS_URL and lies inside the
VPC, so every connection (the first, and each reconnect) is made by shared.egress.connect under
REDIS_ALLOWLIST, on the address actually connected: a name is resolved once and that address is
checked and used (no DNS rebinding between check and connect).

What goes wrong reads the same whatever the far side is: a closed port, a silent one and a service
that is not a Redis all fail as "unreachable", after the same time (the connect budget), so an
answer never tells a caller which ports are open on a host. Nothing the far side sent (a banner, an
error text) is ever put into a message; only our own words and the exception's type name are.
"""
from __future__ import annotations

import functools
import socket
import time
from typing import TYPE_CHECKING, Optional

from shared import egress

from .address import RedisAddress

if TYPE_CHECKING:  # redis-py (and the asyncio it imports) costs ~50 ms: loaded by the first connect()
    import redis
    import redis.connection

CONNECT_TIMEOUT_S = 0.5  # to connect and hear the first PING's answer; every failure takes this long


class RedisUnavailable(Exception):
    """The Redis cannot be used: the message says where and why, in our words only."""


class RedisRefused(RedisUnavailable):
    """REDIS_ALLOWLIST refuses the address: nothing was sent there. The caller named a wrong redisHost."""


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a call on a client may raise when the Redis fails: `except redis_errors() as e:`. A
    function, so that a module handling Redis failures does not import redis-py before it connects
    (an except clause's expression is evaluated only when an exception reaches it)."""
    import redis

    return (redis.RedisError, OSError)


@functools.cache
def _checked_classes() -> tuple[type[redis.ConnectionError], type[redis.connection.Connection]]:
    """The two classes made on redis-py (_EgressRefused, CheckedConnection), built on the first
    connect(): a push without Redis never imports redis-py."""
    import redis
    import redis.connection

    class _EgressRefused(redis.ConnectionError):
        """Inside redis-py: the egress rule refused the address (carried out as RedisRefused)."""

    class CheckedConnection(redis.connection.Connection):
        """A redis-py connection whose socket comes from shared.egress.connect: the host resolved once,
        checked against REDIS_ALLOWLIST, and that address connected to."""

        def _connect(self) -> socket.socket:
            try:
                sock = egress.connect(self.host, self.port, egress.REDIS_ALLOWLIST_ENV,
                                      f"Redis at {self.host}:{self.port}:", self.socket_connect_timeout)
            except egress.HostDoesNotResolve as e:
                raise OSError(str(e)) from None  # unreachable, like any other failure to connect
            except egress.DestinationRefused as e:
                raise _EgressRefused(str(e)) from None
            if self.socket_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for k, v in self.socket_keepalive_options.items():
                    sock.setsockopt(socket.IPPROTO_TCP, k, v)
            sock.settimeout(self.socket_timeout)
            return sock

    return _EgressRefused, CheckedConnection


def where(address: RedisAddress) -> str:
    """How messages name a Redis (host and port: the db is not part of "where")."""
    return f"Redis at {address.host}:{address.port}"


def connect(address: RedisAddress, *, timeout_s: float = CONNECT_TIMEOUT_S,
            socket_timeout_s: Optional[float] = None) -> "redis.Redis":
    """A client (decode_responses) on a Redis that answered a PING; RedisUnavailable otherwise.

    The PING must come within `timeout_s`; later reads may take up to `socket_timeout_s` (a BLPOP
    waits longer than a connect should). One attempt per call, no backoff: a dead Redis must cost a
    caller no more than `timeout_s`, and the same `timeout_s` whatever made it fail."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    _EgressRefused, CheckedConnection = _checked_classes()
    pool = redis.ConnectionPool(
        connection_class=CheckedConnection,
        host=address.host, port=address.port, password=address.password or None, db=address.db,
        socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0), retry_on_timeout=False, decode_responses=True, health_check_interval=0,
    )
    client = redis.Redis(connection_pool=pool)
    t0 = time.monotonic()
    try:
        client.ping()
    except _EgressRefused as e:
        client.close()
        raise RedisRefused(f"redisHost: {e}") from None  # our own words: the rule and the address
    except redis.AuthenticationError:
        client.close()
        raise RedisUnavailable(f"{where(address)} refused the password (redisPassword)") from None
    except (redis.RedisError, OSError):
        client.close()
        # Refused, timed out, or not a Redis: the same words after the same time (no port oracle).
        time.sleep(max(0.0, t0 + timeout_s - time.monotonic()))
        raise RedisUnavailable(f"{where(address)} is unreachable") from None
    if socket_timeout_s is not None and socket_timeout_s != timeout_s:
        pool.connection_kwargs["socket_timeout"] = socket_timeout_s  # reconnects read as long
        conn = pool.get_connection()
        try:
            conn.socket_timeout = socket_timeout_s
            conn.update_current_socket_timeout(socket_timeout_s)
        finally:
            pool.release(conn)
    return client


def failed(address: RedisAddress, e: BaseException, doing: str) -> str:
    """A message for a Redis error after connecting: what we were doing and the error's type, never
    its text (a server's error text is the far side's)."""
    return f"{where(address)} failed to {doing} ({type(e).__name__})"


def close_quietly(client: "redis.Redis") -> None:
    try:
        client.close()
    except redis_errors():
        pass
