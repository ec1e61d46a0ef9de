"""Blocking fetch on real Redis: an idle worker starts a pushed job at once (it waits on the
queue's wake list, it does not poll), and strict queue order takes the first queue first."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from sideline import App
from sideline.adapters.redis import RedisBackend
from tests.redis.helpers import in_progress_keys, wait_until

pytestmark = pytest.mark.redis

PUSHES = 20


def test_an_idle_worker_starts_a_pushed_job_promptly(redis_ns: RedisBackend) -> None:
    app = App(redis_ns)
    started: dict[int, float] = {}
    lock = threading.Lock()

    @app.job(name="mark")
    def mark(index: int) -> None:
        with lock:
            started[index] = time.monotonic()

    pushed: dict[int, float] = {}
    worker = app.worker(concurrency=2)  # default fetch_timeout_s: a poller would lag ~0.5 s
    assert worker.fetch_timeout_s == 1.0
    with worker:
        time.sleep(0.3)  # both threads are now blocked in their fetch
        for index in range(PUSHES):
            pushed[index] = time.monotonic()
            mark.enqueue(index)
            time.sleep(0.05)
        wait_until(lambda: len(started) == PUSHES, 10, "every job to start")
    latencies = sorted(started[i] - pushed[i] for i in range(PUSHES))
    median = statistics.median(latencies)
    print(f"\npush->start over {PUSHES} pushes: median {median * 1000:.1f} ms, "
          f"min {latencies[0] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    assert median < 0.2  # a functional bound (the fetch woke up), not a performance claim
    assert in_progress_keys(redis_ns) == {}


def test_strict_queue_order_takes_high_before_low(redis_ns: RedisBackend) -> None:
    app = App(redis_ns)
    seen: list[str] = []
    app.job(name="rec")(seen.append)
    for index in range(3):
        app.enqueue("rec", [f"low{index}"], queue="low")
        app.enqueue("rec", [f"high{index}"], queue="high")
    with app.worker(concurrency=1, queues=["high", "low"], fetch_timeout_s=0.2) as worker:
        wait_until(lambda: worker.processed == 6, 10, "six jobs to run")
    assert seen == ["high0", "high1", "high2", "low0", "low1", "low2"]
    assert redis_ns.queue_sizes() == {"high": 0, "low": 0}


def test_stop_wakes_blocked_fetches_at_once(redis_ns: RedisBackend) -> None:
    app = App(redis_ns)
    worker = app.worker(concurrency=2, fetch_timeout_s=3.0).start()
    time.sleep(0.3)  # both threads are now blocked in BLPOP
    stopping = time.monotonic()
    worker.stop(10)
    took = time.monotonic() - stopping
    print(f"\nstop of an idle worker (fetch_timeout_s=3): {took:.2f} s")
    assert took < 1.0
