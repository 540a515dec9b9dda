"""The one door to Redis: where a Redis is (`address`; `default` applies REDIS_URL), the one checked way to connect to it
(`connection`: REDIS_ALLOWLIST, equal-time failures, one RedisUnavailable) and every key the project
keeps there (`keys`). Everything that talks to Redis goes through here; this package imports nothing
of the features above it (push, record, contracts, gateway)."""
