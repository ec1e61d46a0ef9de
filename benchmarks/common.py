"""Shared pieces of the benchmarks: the benchmark job, and backends that time themselves.

The timing backends are the library's own backends with a thin layer that records,
from inside the process that runs the jobs (so process start-up and imports never
count):

- the start of the first fetch that returned a job, and the end of the ack that made
  `expect_acks` acks: the no-op throughput window ("throughput" channel);
- the moment complete_node/fail_node finished a workflow run ("run" channel);
- for the recovery benchmark, the moment a `bench.block` job started, and in which
  process ("recovery" channel); the job then blocks until the driver posts on "release".

They publish these as JSON messages. On Redis a message is RPUSHed to
"{namespace}:bench:<channel>", so the benchmark driver (another process) BLPOPs it;
in memory it goes on a queue.Queue. `wait_message` reads them on either.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sideline import App, Job, MemoryBackend
from sideline.adapters.redis import RedisBackend
from sideline.core.ports import Delivery, Settled
from sideline.core.run import Transition
from sideline.core.settlement import Settlement

__all__ = [
    "BLOCK",
    "ENV_BACKEND",
    "ENV_EXPECT_ACKS",
    "ENV_MAX_CONNECTIONS",
    "ENV_NAMESPACE",
    "ENV_QUIET_LOGS",
    "NOOP",
    "TimedMemoryBackend",
    "TimedRedisBackend",
    "build_app",
    "noop_job",
    "timed_redis_backend",
]

ENV_NAMESPACE = "SIDELINE_BENCH_NAMESPACE"
"""The Redis namespace the worker process uses (a fresh one per benchmark run)."""
ENV_BACKEND = "SIDELINE_BENCH_BACKEND"
"""'redis' (default) or 'memory'."""
ENV_EXPECT_ACKS = "SIDELINE_BENCH_EXPECT_ACKS"
"""How many acks close the throughput window."""
ENV_MAX_CONNECTIONS = "SIDELINE_BENCH_MAX_CONNECTIONS"
"""The worker's Redis pool size."""
ENV_QUIET_LOGS = "SIDELINE_BENCH_QUIET_LOGS"
"""When '1', the worker process logs sideline.worker at WARNING (no per-job INFO line)."""

NOOP = "bench.noop"
BLOCK = "bench.block"
BLOCK_MAX_S = 600.0
"""A `bench.block` job gives up waiting for its release after this long."""


def noop(*_args: Any) -> None:
    """The job every benchmark runs: it does nothing."""


def blocker(backend: Any) -> Callable[[], None]:
    """The `bench.block` job of `backend` (a timing backend): say on the "recovery" channel
    that it started (when, in which process), then wait for a message on "release"."""

    def block() -> None:
        backend.publish("recovery", {"pid": os.getpid(), "started_at": time.time()})
        deadline = time.monotonic() + BLOCK_MAX_S
        while (left := deadline - time.monotonic()) > 0:
            if backend.receive("release", min(left, 1.0)) is not None:
                return

    return block


def build_app(backend: Any) -> App:
    """An App on `backend` with the benchmark jobs declared under fixed names."""
    app = App(backend)
    app.job(name=NOOP)(noop)
    app.job(name=BLOCK, retry=False)(blocker(backend))
    return app


def noop_job(app: App) -> Job[Any, None]:
    """The declared no-op job of an app from `build_app` (for `.s()` and `.enqueue`)."""
    return Job(app, app.registry.get(NOOP))


class _Timing:
    """Mixin over a backend: records the throughput window and run completions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expect_acks = 0
        self._timing_lock = threading.Lock()
        self._acks = 0
        self._first_fetch: float | None = None

    # -- recording (runs in the worker's threads) ----------------------------------------

    def _fetched(self, at: float) -> None:
        with self._timing_lock:
            if self._first_fetch is None or at < self._first_fetch:
                self._first_fetch = at

    def fetch_many(self, worker_id: str, queues: Sequence[str], limit: int,
                   prefetch: int = 0,
                   begin_at: Callable[[], float] | None = None) -> list[Delivery]:
        began = time.time()
        found: list[Delivery] = super().fetch_many(  # type: ignore[misc]
            worker_id, queues, limit, prefetch, begin_at)
        if found:
            self._fetched(began)
        return found

    def fetch(self, worker_id: str, queues: Sequence[str], timeout_s: float,
              begin_at: Callable[[], float] | None = None) -> Delivery | None:
        # A blocking fetch may wait before a job arrives: count from when it returned one.
        found: Delivery | None = super().fetch(  # type: ignore[misc]
            worker_id, queues, timeout_s, begin_at)
        if found is not None:
            self._fetched(time.time())
        return found

    def settle(self, worker_id: str, delivery: Delivery, settlement: Settlement, now: float,
               fetch_from: Sequence[str] = (), *, begin_next: bool = False) -> Settled:
        result: Settled = super().settle(  # type: ignore[misc]
            worker_id, delivery, settlement, now, fetch_from, begin_next=begin_next)
        if result.next is not None:
            self._fetched(time.time())
        if settlement.node is None:
            self._acked()
        else:
            self._run_settled(settlement.payload.run_id or "-", result.transition)
        return result

    def _acked(self) -> None:
        done = time.time()
        with self._timing_lock:
            self._acks += 1
            closes = self._acks == self.expect_acks
            first = self._first_fetch
        if closes:
            self._publish("throughput", {"first_fetch": first, "last_ack": done,
                                         "acks": self.expect_acks})

    def _run_settled(self, run_id: str, transition: Transition) -> None:
        if transition.finished:
            self._publish("run", {"run_id": run_id, "finished_at": time.time(),
                                  "status": str(transition.status)})

    # -- the channel ----------------------------------------------------------------------

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Post `message` on `channel` (any process of the namespace can receive it)."""
        self._publish(channel, message)

    def receive(self, channel: str, timeout_s: float) -> dict[str, Any] | None:
        """The next message on `channel`, or None after `timeout_s`."""
        return self._receive(channel, timeout_s)

    def _publish(self, channel: str, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def _receive(self, channel: str, timeout_s: float) -> dict[str, Any] | None:
        raise NotImplementedError

    def wait_message(self, channel: str, timeout_s: float,
                     check: Callable[[], None] | None = None) -> dict[str, Any]:
        """The next message on `channel`; `check()` runs about every second (it raises
        when the worker died). Raises TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            message = self._receive(channel, min(left, 1.0))
            if message is not None:
                return message
            if check is not None:
                check()
        raise TimeoutError(f"no {channel!r} message within {timeout_s} s")


class TimedRedisBackend(_Timing, RedisBackend):
    """RedisBackend that publishes timings to Redis lists of its namespace."""

    def _publish(self, channel: str, message: dict[str, Any]) -> None:
        self.client.rpush(self.keys("bench", channel), json.dumps(message))

    def _receive(self, channel: str, timeout_s: float) -> dict[str, Any] | None:
        found = self.client.blpop([self.keys("bench", channel)], timeout=max(timeout_s, 0.01))
        return None if found is None else dict(json.loads(found[1]))


def timed_redis_backend(namespace: str, max_connections: int) -> TimedRedisBackend:
    """A TimedRedisBackend on SIDELINE_REDIS_URL with its own connection pool."""
    backend = TimedRedisBackend.from_url(namespace=namespace, max_connections=max_connections)
    assert isinstance(backend, TimedRedisBackend)  # from_url builds cls(...)
    return backend


class TimedMemoryBackend(_Timing, MemoryBackend):
    """MemoryBackend that publishes timings on in-process queues."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._channels: dict[str, queue.Queue[dict[str, Any]]] = {
            name: queue.Queue() for name in ("throughput", "run", "recovery", "release")}

    def _publish(self, channel: str, message: dict[str, Any]) -> None:
        self._channels[channel].put(message)

    def _receive(self, channel: str, timeout_s: float) -> dict[str, Any] | None:
        try:
            return self._channels[channel].get(timeout=timeout_s)
        except queue.Empty:
            return None
