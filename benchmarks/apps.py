"""The app the benchmark's worker process runs: `sideline worker --app benchmarks.apps:app`.

Configured by the environment the driver (benchmarks/run.py) sets: the namespace, the
number of acks that close the throughput window, the pool size. For the memory backend
the driver embeds a worker in its own process instead (memory cannot be shared across
processes); SIDELINE_BENCH_BACKEND=memory exists so this module imports without Redis.
"""

from __future__ import annotations

import logging
import os

from benchmarks.common import (
    ENV_BACKEND,
    ENV_EXPECT_ACKS,
    ENV_MAX_CONNECTIONS,
    ENV_NAMESPACE,
    ENV_QUIET_LOGS,
    TimedMemoryBackend,
    TimedRedisBackend,
    build_app,
    timed_redis_backend,
)

__all__ = ["app"]


def _backend() -> TimedRedisBackend | TimedMemoryBackend:
    backend: TimedRedisBackend | TimedMemoryBackend
    if os.environ.get(ENV_BACKEND, "redis") == "memory":
        backend = TimedMemoryBackend()
    else:
        backend = timed_redis_backend(os.environ.get(ENV_NAMESPACE, "sideline-bench"),
                                      int(os.environ.get(ENV_MAX_CONNECTIONS, "32")))
    backend.expect_acks = int(os.environ.get(ENV_EXPECT_ACKS, "0"))
    return backend


if os.environ.get(ENV_QUIET_LOGS) == "1":
    logging.getLogger("sideline.worker").setLevel(logging.WARNING)

app = build_app(_backend())
