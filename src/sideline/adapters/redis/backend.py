"""RedisBackend: every port on Redis, each multi-key change one Lua script."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from sideline.adapters.redis._admin import AdminOps
from sideline.adapters.redis._base import RedisClient
from sideline.adapters.redis._batches import BatchOps
from sideline.adapters.redis._limits import LimitOps
from sideline.adapters.redis._memory import MemoryOps
from sideline.adapters.redis._periodic import PeriodicOps
from sideline.adapters.redis._queues import QueueOps
from sideline.adapters.redis._results import ResultOps
from sideline.adapters.redis._runs import RunOps
from sideline.adapters.redis._settle import SettleOps
from sideline.core.errors import BackendError, ConfigurationError
from sideline.environment import env_number, env_text

__all__ = ["DEFAULT_REDIS_TIMEOUT_S", "DEFAULT_REDIS_URL", "RedisBackend", "redis_url"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

DEFAULT_REDIS_TIMEOUT_S = 5.0
"""Socket and connect timeout of the clients from_url / from_cluster create."""

# A Cluster client retries a command that failed on a connection after refreshing its slot
# map (how it follows a failover); pinned here because redis-py's default changed (3, then
# 10 in redis-py 8). A one-server client never retries: a timed-out script may have run.
_CLUSTER_RETRIES = 2


def _timeout_s(timeout_s: float | None) -> float:
    """`timeout_s`, else SIDELINE_REDIS_TIMEOUT_S, else 5 s; refused unless > 0."""
    value = timeout_s if timeout_s is not None else env_number(
        "SIDELINE_REDIS_TIMEOUT_S", DEFAULT_REDIS_TIMEOUT_S)
    if not value > 0:  # also refuses NaN
        raise ConfigurationError(
            f"the Redis timeout must be a number of seconds > 0, got {value!r} "
            "(timeout_s= or SIDELINE_REDIS_TIMEOUT_S)")
    return float(value)


def _client_options(timeout_s: float | None) -> dict[str, Any]:
    """The options every client this module creates shares."""
    seconds = _timeout_s(timeout_s)
    return {"decode_responses": True, "encoding_errors": "surrogateescape",
            "socket_timeout": seconds, "socket_connect_timeout": seconds,
            "health_check_interval": 30}


def _cluster_retry() -> Retry:
    return Retry(EqualJitterBackoff(cap=1.0, base=0.1), _CLUSTER_RETRIES)


def redis_url() -> str:
    """The Redis URL from SIDELINE_REDIS_URL, or the local default."""
    return os.environ.get("SIDELINE_REDIS_URL") or DEFAULT_REDIS_URL


def _connect_cluster(connect: Callable[[], RedisCluster]) -> RedisCluster:
    """Create a RedisCluster client; it asks a startup node for the slot map at once."""
    try:
        return connect()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise BackendError(
            f"Redis Cluster unreachable: {exc} (are the startup nodes running, in cluster "
            "mode, and is cluster_state ok?)") from exc


class RedisBackend(QueueOps, RunOps, BatchOps, MemoryOps, SettleOps, ResultOps, AdminOps, PeriodicOps,
                   LimitOps):
    """The production backend.

    Args:
        client: a redis-py client created with decode_responses=True and
            encoding_errors="surrogateescape": a `redis.Redis`, or a
            `redis.cluster.RedisCluster` for a Redis Cluster. The backend never closes a
            client it was handed; use `from_url` or `from_cluster` to let it own one.
        namespace: every key lives under "{namespace}:" (one hash tag: one Cluster slot);
            default SIDELINE_NAMESPACE, else "sideline".
        max_dead: the dead set keeps at most this many jobs (SIDELINE_MAX_DEAD, 10,000).
        dead_ttl_s: dead jobs older than this are dropped (SIDELINE_DEAD_TTL_S, 180 days).
    """

    def __init__(self, client: RedisClient, *, namespace: str | None = None,
                 max_dead: int | None = None, dead_ttl_s: float | None = None,
                 _owns_client: bool = False) -> None:
        super().__init__(
            client, namespace=namespace or env_text("SIDELINE_NAMESPACE", "sideline"),
            owns_client=_owns_client,
            max_dead=int(max_dead if max_dead is not None else env_number(
                "SIDELINE_MAX_DEAD", 10_000, integer=True)),
            dead_ttl_s=dead_ttl_s if dead_ttl_s is not None else env_number(
                "SIDELINE_DEAD_TTL_S", 180 * 24 * 3600))

    @classmethod
    def from_url(cls, url: str | None = None, *, cluster: bool | None = None,
                 max_connections: int | None = None, namespace: str | None = None,
                 max_dead: int | None = None, dead_ttl_s: float | None = None,
                 timeout_s: float | None = None) -> RedisBackend:
        """A backend with its own connection pool (closed by `close()`).

        Args:
            url: the server; default SIDELINE_REDIS_URL, else redis://127.0.0.1:6379/0.
            cluster: the URL names one node of a Redis Cluster: connect with a
                `RedisCluster` client, which discovers the other nodes from it (default:
                SIDELINE_REDIS_CLUSTER=1).
            max_connections: pool size (per node, for a cluster); size it to the worker's
                thread count plus a few.
            timeout_s: socket and connect timeout: a Redis that does not answer within it
                is a BackendError (default SIDELINE_REDIS_TIMEOUT_S, else 5 s).

        Raises:
            ConfigurationError: timeout_s (or SIDELINE_REDIS_TIMEOUT_S) is not > 0.
        """
        client: RedisClient
        options = _client_options(timeout_s)
        if cluster is None:
            cluster = os.environ.get("SIDELINE_REDIS_CLUSTER", "").lower() in ("1", "true", "yes")
        if cluster:
            client = _connect_cluster(lambda: RedisCluster.from_url(
                url or redis_url(), max_connections=max_connections, retry=_cluster_retry(),
                **options))
        else:
            pool = redis.ConnectionPool.from_url(url or redis_url(), max_connections=max_connections,
                                                 retry=Retry(NoBackoff(), 0), **options)
            client = redis.Redis(connection_pool=pool)
        return cls._owning(client, namespace=namespace, max_dead=max_dead,
                           dead_ttl_s=dead_ttl_s)

    @classmethod
    def from_cluster(cls, startup_nodes: Sequence[tuple[str, int]], *,
                     max_connections: int | None = None, namespace: str | None = None,
                     max_dead: int | None = None, dead_ttl_s: float | None = None,
                     timeout_s: float | None = None, **client_options: Any) -> RedisBackend:
        """A backend on a Redis Cluster, with a client of its own (closed by `close()`).

        Args:
            startup_nodes: (host, port) of one or more cluster nodes; the client discovers
                the rest and follows slot moves.
            max_connections: connections per node; size it to the worker's thread count
                plus a few.
            timeout_s: socket and connect timeout (default SIDELINE_REDIS_TIMEOUT_S, else 5 s).
            client_options: passed on to `redis.cluster.RedisCluster` (password, ssl, ...);
                they override the defaults above, except decode_responses and encoding_errors.
        """
        if not startup_nodes:
            raise ConfigurationError("from_cluster needs at least one (host, port) startup node")
        options: dict[str, Any] = {**_client_options(timeout_s), "retry": _cluster_retry(),
                                   **client_options, "decode_responses": True,
                                   "encoding_errors": "surrogateescape"}
        if max_connections is not None:
            options["max_connections"] = max_connections
        node: Any = ClusterNode  # redis-py leaves ClusterNode.__init__ unannotated
        client = _connect_cluster(lambda: RedisCluster(
            startup_nodes=[node(host, port) for host, port in startup_nodes], **options))
        return cls._owning(client, namespace=namespace, max_dead=max_dead,
                           dead_ttl_s=dead_ttl_s)

    @classmethod
    def _owning(cls, client: RedisClient, **options: Any) -> RedisBackend:
        """A backend that owns `client`; the client is closed if the backend is refused."""
        try:
            return cls(client, _owns_client=True, **options)
        except BaseException:
            client.close()
            raise

    def flush_namespace(self) -> int:
        """Delete every key of this namespace (tests and demos); return how many.

        On a cluster, SCAN runs on every master; the keys all live on one of them.
        """
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
