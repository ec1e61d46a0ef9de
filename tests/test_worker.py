"""The threaded worker: concurrency, queue order, retries, hooks, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from sideline import App, ConfigurationError, JobContext, Payload, Worker
from tests.support import wait_until


def test_jobs_run_on_several_threads_at_once() -> None:
    app = App()
    barrier = threading.Barrier(4, timeout=5)
    names: set[str] = set()

    @app.job(name="meet")
    def meet() -> None:
        names.add(threading.current_thread().name)
        barrier.wait()  # only passes if 4 jobs run concurrently

    with app.worker(concurrency=4) as worker:
        meet.enqueue_bulk([[]] * 4)
        wait_until(lambda: worker.processed == 4)
    assert len(names) == 4


def test_strict_queue_order_drains_the_first_queue_first() -> None:
    app = App()
    seen: list[str] = []
    app.job(name="rec")(seen.append)
    for index in range(3):
        app.enqueue("rec", [f"low{index}"], queue="low")
        app.enqueue("rec", [f"high{index}"], queue="high")
    with app.worker(concurrency=1, queues=["high", "low"]) as worker:
        wait_until(lambda: worker.processed == 6)
    assert seen == ["high0", "high1", "high2", "low0", "low1", "low2"]


def test_weighted_order_follows_the_draw() -> None:
    class Fixed:
        def __init__(self, draws: list[float]) -> None:
            self.draws = draws

        def random(self) -> float:
            return self.draws.pop(0)

    app = App(random=Fixed([0.1, 0.5, 0.9, 0.5]))
    worker = Worker(app, queues={"a": 1, "b": 3, "c": 0})
    # draw 0.1 * 4 = 0.4 falls in a's interval [0, 1); then only b is left; c (weight 0) last
    assert worker.queue_order() == ["a", "b", "c"]
    # draw 0.9 * 4 = 3.6 falls in b's interval [1, 4); then a
    assert worker.queue_order() == ["b", "a", "c"]


def test_bad_worker_options_are_refused() -> None:
    app = App()
    with pytest.raises(ConfigurationError, match="concurrency must be >= 1"):
        Worker(app, concurrency=0)
    with pytest.raises(ConfigurationError, match="at least one queue"):
        Worker(app, queues=[])
    with pytest.raises(ConfigurationError, match="queue name"):
        Worker(app, queues=["no spaces"])


def test_failing_job_is_retried_with_backoff_then_succeeds() -> None:
    app = App()
    attempts: list[int] = []

    @app.job(name="flaky", retry_in=lambda count, exc: 0.02)
    def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")

    with app.worker(concurrency=2, poll_interval_s=0.01):
        flaky.enqueue()
        wait_until(lambda: len(attempts) == 3 and not app.backend.entries("retry"))
    assert app.backend.entries("dead") == []


def test_exhausted_job_calls_hooks_then_lands_in_the_dead_set(clock: Any) -> None:
    app = App(testing="collect", clock=clock)
    calls: list[tuple[str, str, int]] = []

    def hook(payload: Payload, exc: BaseException) -> None:
        calls.append(("exhausted", str(exc), payload.retry_count))

    def death(payload: Payload, exc: BaseException) -> None:
        calls.append(("death", type(exc).__name__, payload.retry_count))

    def broken_handler(payload: Payload, exc: BaseException) -> None:
        raise RuntimeError("a broken handler must not lose the job")

    app.death_handlers.extend([broken_handler, death])

    @app.job(name="doomed", retry=2, on_exhausted=hook)
    def doomed() -> None:
        raise ValueError("always")

    doomed.enqueue()
    assert app.drain() == 3  # first run + 2 retries
    assert calls == [("exhausted", "always", 2), ("death", "ValueError", 2)]
    [dead] = app.backend.entries("dead")
    assert dead.payload.dead_reason == "retries exhausted (2) after ValueError: always"
    assert (dead.payload.error_class, dead.payload.error_message) == ("ValueError", "always")


def test_retry_schedule_uses_sidekiq_backoff_from_the_injected_random(clock: Any) -> None:
    class Half:
        def random(self) -> float:
            return 0.5

    app = App(testing="collect", clock=clock, random=Half())

    @app.job(name="fails")
    def fails() -> None:
        raise ValueError("x")

    fails.enqueue()
    app.drain(run_scheduled=False)
    [entry] = app.backend.entries("retry")
    assert entry.at == clock.now() + 0**4 + 15 + int(0.5 * 10)
    assert entry.payload.retry_count == 1


def test_dead_false_drops_the_job_after_its_retries() -> None:
    app = App(testing="inline")

    @app.job(name="noisy", retry=False, dead=False)
    def noisy() -> None:
        raise ValueError("ignored")

    noisy.enqueue()
    assert app.backend.entries("dead") == []


def test_server_middleware_wraps_the_job_outermost_first() -> None:
    app = App(testing="inline")
    events: list[str] = []

    def outer(context: JobContext, call_next: Callable[[], Any]) -> Any:
        events.append(f"outer>{context.payload.args[0]}")
        result = call_next()
        events.append(f"outer<{result}")
        return result

    def inner(context: JobContext, call_next: Callable[[], Any]) -> Any:
        events.append("inner>")
        return call_next()

    app.server_middleware.extend([outer, inner])

    @app.job(name="double")
    def double(n: int) -> int:
        events.append("run")
        return n * 2

    double.enqueue(21)
    assert events == ["outer>21", "inner>", "run", "outer<42"]


def test_graceful_stop_waits_for_running_jobs() -> None:
    app = App()
    finished: list[str] = []

    @app.job(name="slow")
    def slow() -> None:
        time.sleep(0.2)
        finished.append("done")

    worker = app.worker(concurrency=1).start()
    slow.enqueue()
    wait_until(lambda: worker.busy == 1)
    worker.stop(timeout_s=5)
    assert finished == ["done"]
    assert app.backend.queue_sizes()["default"] == 0


def test_stop_timeout_pushes_unfinished_jobs_back_to_their_queue() -> None:
    app = App()
    release = threading.Event()

    @app.job(name="stuck")
    def stuck() -> None:
        release.wait(5)

    worker = app.worker(concurrency=1, worker_id="w1").start()
    stuck.enqueue()
    wait_until(lambda: worker.busy == 1)
    worker.stop(timeout_s=0.1)
    assert app.backend.queue_sizes()["default"] == 1  # pushed back, not lost
    assert app.backend.in_progress("w1") == []
    release.set()


def test_quiet_stops_fetching_new_jobs() -> None:
    app = App()
    ran: list[int] = []
    app.job(name="rec")(ran.append)
    worker = app.worker(concurrency=2, fetch_timeout_s=0.05).start()
    worker.quiet()
    time.sleep(0.15)  # let every thread observe quiet and leave its fetch loop
    app.enqueue("rec", [1])
    time.sleep(0.1)
    assert ran == []
    worker.stop()
    assert app.backend.queue_sizes()["default"] == 1


def test_scheduled_job_runs_when_due_with_sub_second_precision() -> None:
    app = App()
    ran_at: list[float] = []
    app.job(name="at")(lambda: ran_at.append(time.time()))
    with app.worker(concurrency=1, poll_interval_s=0.02):
        due = time.time() + 0.3
        app.enqueue("at", at=due)
        wait_until(lambda: bool(ran_at))
    assert due <= ran_at[0] < due + 0.5
