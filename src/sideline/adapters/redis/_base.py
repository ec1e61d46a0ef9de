"""Shared plumbing of the Redis adapter: the client, keys, scripts and error translation."""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any, TypeAlias

import redis
from redis.cluster import RedisCluster

from sideline.adapters.redis._keys import Keys
from sideline.adapters.redis._scripts import Scripts
from sideline.core.errors import BackendError, ConfigurationError, SidelineError, WorkflowError

__all__ = ["RedisBase", "RedisClient", "block_limit", "num", "translate"]

RedisClient: TypeAlias = "redis.Redis | RedisCluster"
"""What RedisBackend accepts: a client of one server, or of a Redis Cluster."""

# The first redis-py whose RedisCluster runs pipeline(transaction=True) as MULTI/EXEC on
# the slot's node (redis-py 6.1.0, PR #3611); older ones refuse transactional pipelines.
_CLUSTER_MULTI_SINCE = (6, 1)


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def block_limit(socket_timeout_s: float) -> float:
    """How long a blocking command may ask Redis to wait on a socket that times out after
    `socket_timeout_s`: the rest (at most 1 s, at least half) is left for the reply to arrive.
    """
    return socket_timeout_s - min(1.0, socket_timeout_s / 2)


def num(value: float) -> str:
    """A float as the JSON number text Lua and Python both read back exactly."""
    return repr(float(value))


class translate:  # noqa: N801 (used as `with translate("settle"):`, like a function)
    """Turn redis-py errors into sideline errors that say what failed and what to check.

    A class, not a generator: every backend call enters one, settle included.
    """

    __slots__ = ("operation",)

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and (error := _translated(self.operation, exc)) is not None:
            raise error from exc


def _translated(operation: str, exc: BaseException) -> SidelineError | None:
    """The sideline error for redis-py's `exc` (None for any other exception)."""
    errors = redis.exceptions
    if isinstance(exc, errors.ClusterDownError):  # before ResponseError: it is one
        return BackendError(
            f"Redis Cluster is down during {operation}: {exc} (a slot has no reachable "
            "master; check CLUSTER INFO)")
    if isinstance(exc, errors.ClusterError):  # redirections or node errors, retries spent
        return BackendError(
            f"Redis Cluster unreachable during {operation}: {exc} (are its nodes running?)")
    if isinstance(exc, errors.RedisClusterException):  # not a RedisError subclass
        return BackendError(f"Redis Cluster refused {operation}: {exc}")
    if isinstance(exc, errors.MaxConnectionsError):
        return BackendError(
            f"Redis connection pool exhausted during {operation}: {exc} (size max_connections "
            "to at least the worker's concurrency + 2)")
    if isinstance(exc, errors.ConnectionError):
        return BackendError(
            f"Redis unreachable during {operation}: {exc} (is the server running? "
            "check SIDELINE_REDIS_URL)")
    if isinstance(exc, errors.TimeoutError):
        return BackendError(f"Redis timed out during {operation}: {exc}")
    if isinstance(exc, errors.ResponseError):
        message = str(exc)
        if "run already exists" in message or "has no node" in message:
            return WorkflowError(f"{operation}: {message}")
        return BackendError(f"Redis refused {operation}: {message}")
    return None


class RedisBase:
    """The state every part of RedisBackend shares."""

    def __init__(self, client: RedisClient, *, namespace: str, owns_client: bool,
                 max_dead: int, dead_ttl_s: float) -> None:
        # A Redis client reads its pool's connection kwargs; a RedisCluster those its
        # nodes' connections are made with. Either carries decode_responses.
        kwargs: dict[str, Any] = client.get_connection_kwargs()
        decode, errors = kwargs.get("decode_responses"), kwargs.get("encoding_errors", "strict")
        if not decode or errors != "surrogateescape":
            # surrogateescape: any bytes read as str and are written back byte-identical
            # (LREM of a job that is not valid UTF-8); "strict" raises inside redis-py.
            raise ConfigurationError(
                "RedisBackend needs a client created with decode_responses=True and "
                f'encoding_errors="surrogateescape" (this one has decode_responses={decode!r}, '
                f"encoding_errors={errors!r}; or use RedisBackend.from_url / "
                "RedisBackend.from_cluster)")
        self.cluster = isinstance(client, RedisCluster)
        if self.cluster and _version(redis.__version__) < _CLUSTER_MULTI_SINCE:
            raise ConfigurationError(
                f"RedisBackend on a Redis Cluster needs redis-py 6.1 or newer (found "
                f"{redis.__version__}): older RedisCluster clients cannot run MULTI/EXEC")
        # Typed Any: redis-py's stubs return bytes | str unions whatever decode_responses
        # says; this client always decodes (checked above).
        self.client: Any = client
        self.keys = Keys(namespace)
        self.prefix = self.keys.prefix
        self.scripts = Scripts(client, cluster=self.cluster)
        self.max_dead = max_dead
        self.dead_ttl_s = dead_ttl_s
        self._owns_client = owns_client
        socket_timeout = kwargs.get("socket_timeout")
        self.block_limit_s = math.inf if socket_timeout is None else block_limit(socket_timeout)
        """The longest a blocking command (BLPOP) may wait: below the socket timeout."""

    def close(self) -> None:
        """Close the connection pool if this backend created it (never a client it was handed).

        A RedisCluster client closes the pools of all its nodes.
        """
        if not self._owns_client:
            return
        self.client.close()
        if not self.cluster:
            self.client.connection_pool.disconnect()

    def _queues(self) -> list[str]:
        with translate("listing queues"):
            return sorted(self.client.smembers(self.keys("queues")))
