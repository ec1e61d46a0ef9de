"""The dramatiq app of the peer benchmark: `dramatiq benchmarks.peers.dramatiq_app -p P -t T`.

A RedisBroker with dramatiq's default middleware, on namespace PEERBENCH_NAMESPACE and the
Redis at SIDELINE_REDIS_URL (default redis://127.0.0.1:6379/0). Two actors, the same as in
sideline_app.py, both with max_retries=0:

- `noop()` does nothing (the drain measurement);
- `stamp(sent_at)` RPUSHes `time.time() - sent_at` (seconds) onto the Redis list
  "<namespace>:peer:latency" as soon as it starts (the latency measurement).
"""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

__all__ = ["ENV_NAMESPACE", "NOOP", "QUEUE", "STAMP", "broker", "make_broker", "noop", "stamp"]

ENV_NAMESPACE = "PEERBENCH_NAMESPACE"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
NOOP = "noop"
STAMP = "stamp"
QUEUE = "default"

_client: redis.Redis | None = None
_client_pid = 0


def redis_url() -> str:
    return os.environ.get("SIDELINE_REDIS_URL") or DEFAULT_URL


def namespace() -> str:
    return os.environ.get(ENV_NAMESPACE, "peerbench")


def make_broker(name: str) -> RedisBroker:
    """A RedisBroker on namespace `name` with the default middleware."""
    return RedisBroker(url=redis_url(), namespace=name)


def _redis() -> redis.Redis:
    """One plain redis-py client per process (created on first use: dramatiq forks)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(redis_url())
        _client_pid = os.getpid()
    return _client


broker = make_broker(namespace())
dramatiq.set_broker(broker)
_latency_key = f"{namespace()}:peer:latency"


@dramatiq.actor(actor_name=NOOP, queue_name=QUEUE, max_retries=0, broker=broker)
def noop() -> None:
    """Does nothing."""


@dramatiq.actor(actor_name=STAMP, queue_name=QUEUE, max_retries=0, broker=broker)
def stamp(sent_at: float) -> None:
    """Reports how long ago `sent_at` (an epoch time from the enqueuer) was."""
    _redis().rpush(_latency_key, time.time() - sent_at)
