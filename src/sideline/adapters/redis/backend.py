"""RedisBackend: every port on Redis, each multi-key change one Lua script."""

from __future__ import annotations

import os

import redis

from sideline.adapters.redis._queues import QueueOps
from sideline.adapters.redis._runs import RunOps

__all__ = ["DEFAULT_REDIS_URL", "RedisBackend", "redis_url"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """The Redis URL from SIDELINE_REDIS_URL, or the local default."""
    return os.environ.get("SIDELINE_REDIS_URL") or DEFAULT_REDIS_URL


class RedisBackend(QueueOps, RunOps):
    """The production backend.

    Args:
        client: a redis-py client created with decode_responses=True. The backend never
            closes a client it was handed; use `from_url` to let it own one.
        namespace: every key lives under "{namespace}:" (one hash tag: one Cluster slot).
        max_dead: the dead set keeps at most this many jobs.
        dead_ttl_s: dead jobs older than this are dropped.
    """

    def __init__(self, client: redis.Redis, *, namespace: str = "sideline",
                 max_dead: int = 10_000, dead_ttl_s: float = 180 * 24 * 3600,
                 _owns_client: bool = False) -> None:
        super().__init__(client, namespace=namespace, owns_client=_owns_client,
                         max_dead=max_dead, dead_ttl_s=dead_ttl_s)

    @classmethod
    def from_url(cls, url: str | None = None, *, max_connections: int | None = None,
                 namespace: str = "sideline", max_dead: int = 10_000,
                 dead_ttl_s: float = 180 * 24 * 3600) -> RedisBackend:
        """A backend with its own connection pool (closed by `close()`).

        Args:
            url: the server; default SIDELINE_REDIS_URL, else redis://127.0.0.1:6379/0.
            max_connections: pool size; size it to the worker's thread count plus a few.
        """
        pool = redis.ConnectionPool.from_url(url or redis_url(), decode_responses=True,
                                             max_connections=max_connections,
                                             health_check_interval=30)
        client = redis.Redis(connection_pool=pool)
        return cls(client, namespace=namespace, max_dead=max_dead, dead_ttl_s=dead_ttl_s,
                   _owns_client=True)

    def flush_namespace(self) -> int:
        """Delete every key of this namespace (tests and demos); return how many."""
        deleted = 0
        batch: list[str] = []
        for key in self.client.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.client.delete(*batch)
                batch = []
        if batch:
            deleted += self.client.delete(*batch)
        return deleted
