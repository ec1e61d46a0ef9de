"""Shared plumbing of the Redis adapter: the client, keys, scripts and error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from sideline.adapters.redis._keys import Keys
from sideline.adapters.redis._scripts import Scripts
from sideline.core.errors import BackendError, ConfigurationError, WorkflowError

__all__ = ["RedisBase", "num", "translate"]


def num(value: float) -> str:
    """A float as the JSON number text Lua and Python both read back exactly."""
    return repr(float(value))


@contextmanager
def translate(operation: str) -> Iterator[None]:
    """Turn redis-py errors into sideline errors that say what failed and what to check."""
    try:
        yield
    except redis.exceptions.MaxConnectionsError as exc:
        raise BackendError(
            f"Redis connection pool exhausted during {operation}: {exc} (size max_connections "
            "to at least the worker's concurrency + 2)") from exc
    except redis.exceptions.ConnectionError as exc:
        raise BackendError(
            f"Redis unreachable during {operation}: {exc} (is the server running? "
            "check SIDELINE_REDIS_URL)") from exc
    except redis.exceptions.TimeoutError as exc:
        raise BackendError(f"Redis timed out during {operation}: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        message = str(exc)
        if "run already exists" in message or "has no node" in message:
            raise WorkflowError(f"{operation}: {message}") from exc
        raise BackendError(f"Redis refused {operation}: {message}") from exc


class RedisBase:
    """The state every part of RedisBackend shares."""

    def __init__(self, client: redis.Redis, *, namespace: str, owns_client: bool,
                 max_dead: int, dead_ttl_s: float) -> None:
        kwargs: dict[str, Any] = client.get_connection_kwargs()
        if not kwargs.get("decode_responses"):
            raise ConfigurationError(
                "RedisBackend needs a client created with decode_responses=True "
                "(or use RedisBackend.from_url)")
        # Typed Any: redis-py's stubs return bytes | str unions whatever decode_responses
        # says; this client always decodes (checked above).
        self.client: Any = client
        self.keys = Keys(namespace)
        self.prefix = self.keys.prefix
        self.scripts = Scripts(client)
        self.max_dead = max_dead
        self.dead_ttl_s = dead_ttl_s
        self._owns_client = owns_client

    def close(self) -> None:
        """Close the connection pool if this backend created it (never a client it was handed)."""
        if self._owns_client:
            self.client.close()
            self.client.connection_pool.disconnect()

    def _queues(self) -> list[str]:
        with translate("listing queues"):
            return sorted(self.client.smembers(self.keys("queues")))
