"""Real-process outage tests: Redis stopped, or stalled, for longer than the heartbeat TTL
while jobs run on two worker processes. Nobody may judge the others dead for an outage they
all shared: 0 jobs lost, 0 run twice."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from sideline import Payload
from sideline.adapters.redis import RedisBackend
from tests.redis.apps.outage_app import EVENTS
from tests.redis.helpers import RedisServer, WorkerProcess, spawn_worker, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

JOBS = 8
JOB_S = 3.0
OUTAGE_S = 5.0  # longer than the workers' heartbeat TTL (2 s, tests/redis/helpers.py)


@pytest.fixture(params=[1, 4], ids=["one-per-call", "four-per-call"])
def fleet(redis_server: RedisServer, tmp_path: Path,
          request: pytest.FixtureRequest) -> Iterator[tuple[RedisBackend, list[WorkerProcess]]]:
    """Two workers of 4 threads, taking one job per call, or four (their acks kept and
    written together: the outage must not lose or double those either)."""
    backend = RedisBackend.from_url(redis_server.url, namespace="outage", timeout_s=1.0)
    env = {"SIDELINE_REDIS_URL": redis_server.url, "SIDELINE_REDIS_TIMEOUT_S": "1"}
    args = ["-c", "4", "--jobs-per-call", str(request.param)]
    workers = [spawn_worker(backend, tmp_path, f"w{i}", args=args, env=env,
                            app="tests.redis.apps.outage_app:app") for i in range(2)]
    try:
        yield backend, workers
    finally:
        for worker in workers:
            worker.kill()
        backend.close()


def _events(url: str) -> Counter[str]:
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
    try:
        return Counter(entry.rsplit(":", 1)[0] for entry in client.smembers(EVENTS))
    finally:
        client.close()


def _run_through(server: RedisServer, backend: RedisBackend, workers: list[WorkerProcess],
                 outage: Callable[[], None]) -> None:
    backend.push([Payload(name="hold", jid=f"job{index}", queue="default",
                          args=[f"job{index}", JOB_S], created_at=time.time())
                  for index in range(JOBS)])
    wait_until(lambda: sum(1 for e in _events(server.url) if e.startswith("start:")) == JOBS,
               15, "every job to start")
    outage()
    wait_until(lambda: sum(1 for e in _events(server.url) if e.startswith("end:")) >= JOBS,
               60, "every job to end")
    time.sleep(4.0)  # two heartbeat TTLs: time for a wrong recovery to show up
    events = _events(server.url)
    logs = "\n".join(w.log() for w in workers)
    for index in range(JOBS):
        assert events[f"start:job{index}"] == 1, (index, events, logs)  # 0 duplicates
        assert events[f"end:job{index}"] == 1, (index, events, logs)    # 0 lost
    assert all(w.proc.poll() is None for w in workers), logs
    wait_until(lambda: sum(len(backend.in_progress(w.worker_id)) for w in workers) == 0, 10,
               "every job acked")
    assert backend.queue_sizes().get("default", 0) == 0
    assert backend.entries("dead") == []


def test_redis_stopped_longer_than_the_ttl_loses_and_doubles_nothing(
        redis_server: RedisServer, fleet: tuple[RedisBackend, list[WorkerProcess]]) -> None:
    backend, workers = fleet

    def outage() -> None:
        redis_server.stop()  # SIGTERM: the append-only file keeps every key
        time.sleep(OUTAGE_S)
        redis_server.start()

    _run_through(redis_server, backend, workers, outage)


def test_redis_stalled_longer_than_the_ttl_loses_and_doubles_nothing(
        redis_server: RedisServer, fleet: tuple[RedisBackend, list[WorkerProcess]]) -> None:
    backend, workers = fleet
    assert redis_server.proc is not None
    pid = redis_server.proc.pid

    def outage() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(OUTAGE_S)
        finally:
            os.kill(pid, signal.SIGCONT)

    _run_through(redis_server, backend, workers, outage)
