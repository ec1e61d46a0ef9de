"""Blocking fetch on real Redis: an idle worker starts a pushed job at once (it waits on the
queue's wake list, it does not poll), and strict queue order takes the first queue first."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from sideline.core.settlement import Action, Settlement
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


# -- wake tokens: one per job nobody took yet ---------------------------------------------

def _tokens(backend: RedisBackend, queue: str = "default") -> int:
    return int(backend.client.llen(backend.keys("wake", queue)))


def test_a_job_taken_uses_up_its_wake_token(redis_ns: RedisBackend) -> None:
    app = App(redis_ns)
    app.job(name="rec")(lambda _: None)
    for index in range(3):
        app.enqueue("rec", [index])
    assert _tokens(redis_ns) == 3
    assert redis_ns.fetch("w", ["default"], 0) is not None
    assert _tokens(redis_ns) == 2
    assert len(redis_ns.fetch_many("w", ["default"], 2)) == 2
    assert _tokens(redis_ns) == 0  # nothing left to wake a blocked fetch for


def test_a_blocked_fetch_woken_by_a_push_takes_one_token_only(redis_ns: RedisBackend) -> None:
    app = App(redis_ns)
    app.job(name="rec")(lambda _: None)
    got: list[object] = []
    fetching = threading.Thread(target=lambda: got.append(
        redis_ns.fetch("w", ["default"], 5.0)))
    fetching.start()
    time.sleep(0.3)  # blocked in BLPOP on the wake list
    app.enqueue_bulk("rec", [[1], [2]])
    fetching.join(5)
    assert got
    assert got[0] is not None
    # its BLPOP took one token, for the job it took; the other job's token still wakes
    # another idle fetch
    assert _tokens(redis_ns) == 1


def test_the_next_job_taken_by_a_settle_uses_up_its_token(redis_ns: RedisBackend) -> None:
    app = App(redis_ns)
    app.job(name="rec")(lambda _: None)
    app.enqueue("rec", [1])
    first = redis_ns.fetch("w", ["default"], 0)
    assert first is not None
    app.enqueue("rec", [2])
    assert _tokens(redis_ns) == 1
    settled = redis_ns.settle("w", first, Settlement(Action.ACK, decode(first.raw)), time.time(),
                              ["default"])
    assert settled.next is not None
    assert _tokens(redis_ns) == 0  # an idle thread is not woken for a job already taken
