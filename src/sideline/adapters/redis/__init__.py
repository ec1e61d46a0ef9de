"""The Redis backend: redis-py plus one Lua script per multi-key operation."""

from sideline.adapters.redis.backend import DEFAULT_REDIS_URL, RedisBackend, redis_url

__all__ = ["DEFAULT_REDIS_URL", "RedisBackend", "redis_url"]
