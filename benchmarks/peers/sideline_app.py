"""The sideline app of the peer benchmark: `sideline worker --app benchmarks.peers.sideline_app:app`.

Its namespace comes from PEERBENCH_NAMESPACE, its Redis from SIDELINE_REDIS_URL (read by
RedisBackend). Two jobs, the same as in dramatiq_app.py:

- `peer.noop()` does nothing (the drain measurement);
- `peer.stamp(sent_at)` RPUSHes `time.time() - sent_at` (seconds) onto the Redis list
  "<namespace>:peer:latency" as soon as it starts (the latency measurement).

Retries are off for both, as `max_retries=0` is for the dramatiq actors.
"""

from __future__ import annotations

import os
import time

import redis

from sideline import App
from sideline.adapters.redis import RedisBackend, redis_url

__all__ = ["ENV_NAMESPACE", "NOOP", "NOTE", "STAMP", "app", "build_app", "callback_key",
           "latency_key"]

ENV_NAMESPACE = "PEERBENCH_NAMESPACE"
NOOP = "peer.noop"
STAMP = "peer.stamp"
NOTE = "peer.note"

_client: redis.Redis | None = None
_client_pid = 0


def latency_key(namespace: str) -> str:
    """The Redis list the stamp job of `namespace` reports its delays on."""
    return f"{namespace}:peer:latency"


def callback_key(namespace: str) -> str:
    """The Redis list the note job of `namespace` records its start times on."""
    return f"{namespace}:peer:callback"


def _redis() -> redis.Redis:
    """One plain redis-py client per process (created on first use)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(redis_url())
        _client_pid = os.getpid()
    return _client


def build_app(namespace: str) -> App:
    """An App on Redis namespace `namespace` with the two benchmark jobs."""
    app = App(RedisBackend.from_url(namespace=namespace))
    key = latency_key(namespace)

    @app.job(name=NOOP, retry=False)
    def noop() -> None:
        """Does nothing."""

    @app.job(name=STAMP, retry=False)
    def stamp(sent_at: float) -> None:
        """Reports how long ago `sent_at` (an epoch time from the enqueuer) was."""
        _redis().rpush(key, time.time() - sent_at)

    @app.job(name=NOTE, retry=False)
    def note(bid: str) -> None:
        """A batch callback (benchmarks/batches.py): records when it started."""
        _redis().rpush(callback_key(namespace), f"{bid} {time.time()!r}")

    return app


app = build_app(os.environ.get(ENV_NAMESPACE, "peerbench"))
