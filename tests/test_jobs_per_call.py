"""A worker whose threads take several jobs per call (`jobs_per_call`): every job runs
once, plain acks are written together (fewer calls), other settlements at once, and
quiet, stop and reconcile account for what a thread took."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from sideline import App, Chain, ConfigurationError, Observer, Payload, Worker, Workflow
from sideline.adapters.memory import MemoryBackend
from sideline.core.settlement import Settlement
from sideline.runtime.config import WorkerSettings
from tests.support import real_redis_backend, wait_until

KINDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=KINDS)
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    if request.param == "memory":
        yield App(MemoryBackend())
    else:
        for backend in real_redis_backend():
            yield App(backend)


class Settles(Observer):
    def __init__(self) -> None:
        self.jids: list[str] = []
        self.lock = threading.Lock()

    def after_settle(self, payload: Payload, settlement: Settlement) -> None:
        with self.lock:
            self.jids.append(payload.jid)


def _counting(app: App) -> tuple[Any, Counter[int]]:
    """A job `count(number)` declared on `app`, and how many times each number ran."""
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @app.job(name="count", retry=False)
    def count(number: int) -> None:
        with lock:
            runs[number] += 1

    return count, runs


def test_every_job_runs_once_and_every_settle_is_observed(app: App) -> None:
    count, runs = _counting(app)
    settles = Settles()
    app.observers.append(settles)
    count.enqueue_bulk([[i] for i in range(500)])
    with app.worker(concurrency=3, jobs_per_call=8) as worker:
        assert [(w.concurrency, w.jobs_per_call) for w in app.admin.workers()] == [(3, 8)]
        wait_until(lambda: worker.processed == 500, 20)
        wait_until(lambda: len(settles.jids) == 500, 5)  # written, then observed
    assert runs == Counter(range(500))
    assert app.backend.in_progress(worker.worker_id) == []
    assert app.backend.stats(["processed"]) == {"processed": 500}
    assert sorted(settles.jids) == sorted(set(settles.jids))


def test_retries_burials_and_workflows_are_settled_as_with_one_job_per_call(app: App) -> None:
    attempts: Counter[int] = Counter()

    @app.job(name="flaky", retry_in=lambda count, exc: 0.01)
    def flaky(number: int) -> None:
        attempts[number] += 1
        if number % 3 == 0 and attempts[number] == 1:
            raise ValueError("once")

    @app.job(name="doomed", retry=False)
    def doomed() -> None:
        raise RuntimeError("always")

    @app.job(name="step")
    def step(label: str) -> str:
        return label

    flaky.enqueue_bulk([[i] for i in range(60)])
    doomed.enqueue()
    run_id = Workflow(Chain(*(step.s(f"s{i}") for i in range(5))), app=app).run()
    with app.worker(concurrency=2, jobs_per_call=8, poll_interval_s=0.01):
        assert app.wait(run_id, timeout_s=20).status == "succeeded"
        wait_until(lambda: len(attempts) == 60 and sum(attempts.values()) == 80, 20)
        wait_until(lambda: len(app.backend.entries("dead")) == 1, 10)
    assert [entry.payload.name for entry in app.backend.entries("dead")] == ["doomed"]
    assert app.backend.entries("retry") == []


def test_quiet_hands_back_the_jobs_a_thread_took_and_has_not_started(app: App) -> None:
    started = threading.Event()
    release = threading.Event()
    done: list[int] = []

    @app.job(name="slow", retry=False)
    def slow(number: int) -> None:
        if number == 0:
            started.set()
            release.wait(10)
        done.append(number)

    slow.enqueue_bulk([[i] for i in range(6)])
    worker = app.worker(concurrency=1, jobs_per_call=6).start()
    try:
        assert started.wait(10)
        assert worker.holding() == 6  # one running, five taken
        assert worker.reconcile() == 0  # all accounted for, even checked twice
        worker.reconcile_interval_s = 0.0
        assert worker.reconcile() == 0
        worker.quiet()
        release.set()
        wait_until(lambda: done == [0], 5)
    finally:
        release.set()
        worker.stop(5)
    assert done == [0]
    assert app.backend.queue_sizes() == {"default": 5}
    assert app.backend.in_progress(worker.worker_id) == []
    with app.worker(concurrency=1) as again:
        wait_until(lambda: again.processed == 5, 10)
    assert sorted(done) == list(range(6))


def test_stop_writes_the_acks_of_a_thread_still_running(app: App) -> None:
    release = threading.Event()

    @app.job(name="mixed", retry=False)
    def mixed(number: int) -> None:
        if number == 3:
            release.wait(10)

    settles = Settles()
    app.observers.append(settles)
    mixed.enqueue_bulk([[i] for i in range(6)])
    worker = app.worker(concurrency=1, jobs_per_call=6).start()
    try:
        wait_until(lambda: worker.processed == 3, 10)  # 0-2 done, their acks kept; 3 runs
        time.sleep(0.05)
        assert app.backend.stats(["processed"]) == {"processed": 0}
        worker.stop(0.2)  # the thread is still in job 3 at the deadline
    finally:
        release.set()
    assert app.backend.stats(["processed"])["processed"] == 3
    assert len(settles.jids) == 3  # observers see the acks stop() wrote
    left = sorted(item for item in _queued_numbers(app))
    assert left == [3, 4, 5]  # the running one and the two not started, back in the queue
    assert app.backend.in_progress(worker.worker_id) == []


def _queued_numbers(app: App) -> list[Any]:
    from sideline.core.payload import decode  # noqa: PLC0415

    return [decode(raw).args[0] for raw in app.backend.peek("default")]


@pytest.mark.redis
def test_plain_jobs_cost_one_call_per_several_jobs() -> None:
    """With 8 jobs per call a thread writes 8 acks and takes 8 jobs in one function call."""
    for backend in real_redis_backend():
        app = App(backend)

        @app.job(name="noop", retry=False)
        def noop() -> None:
            """Does nothing."""

        noop.enqueue_bulk([[] for _ in range(800)])

        def calls(client: Any = backend.client) -> int:
            stats = client.info("commandstats")
            return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                       for name in ("fcall", "evalsha"))

        before = calls()
        with app.worker(concurrency=1, jobs_per_call=8) as worker:
            wait_until(lambda: worker.processed == 800, 20)
        spent = calls() - before
        assert spent < 800 / 4, spent  # one job per call would be 800 and more


def test_bad_sizes_are_refused() -> None:
    app = App()
    with pytest.raises(ConfigurationError, match="jobs_per_call must be >= 1"):
        Worker(app, jobs_per_call=0)
    with pytest.raises(ConfigurationError, match="jobs_per_call and prefetch"):
        Worker(app, jobs_per_call=4, prefetch=2)


def test_the_setting_comes_from_the_environment() -> None:
    settings = WorkerSettings.resolve({}, {"SIDELINE_JOBS_PER_CALL": "8"})
    assert settings.jobs_per_call == 8
    assert WorkerSettings.resolve({"jobs_per_call": 2}, {"SIDELINE_JOBS_PER_CALL": "8"}
                                  ).jobs_per_call == 2
    with pytest.raises(ConfigurationError, match="jobs_per_call 'eight' is not an integer"):
        WorkerSettings.resolve({}, {"SIDELINE_JOBS_PER_CALL": "eight"})


def test_an_idle_thread_runs_what_a_busy_one_took(app: App) -> None:
    release = threading.Event()
    done: list[int] = []

    @app.job(name="first_blocks", retry=False)
    def first_blocks(number: int) -> None:
        if number == 0:
            release.wait(10)
        done.append(number)

    first_blocks.enqueue_bulk([[i] for i in range(4)])
    worker = app.worker(concurrency=2, jobs_per_call=4, fetch_timeout_s=0.1).start()
    try:
        wait_until(lambda: sorted(done) == [1, 2, 3], 10)  # while job 0 still blocks
        assert 0 not in done
        release.set()
        wait_until(lambda: len(done) == 4, 10)
    finally:
        release.set()
        worker.stop(5)
    assert app.backend.stats(["processed"]) == {"processed": 4}
    assert app.backend.in_progress(worker.worker_id) == []


def test_lost_fetch_replies_are_pushed_back_and_every_job_runs_once() -> None:
    """A fetch whose reply is lost (the jobs moved, the thread never told) while threads
    take several jobs per call: reconcile pushes those back; each job runs once."""
    backend = MemoryBackend()
    app = App(backend)
    count, runs = _counting(app)
    backend.faults.inject("fetch", "after", times=3)  # three replies lost
    count.enqueue_bulk([[i] for i in range(40)])
    with app.worker(concurrency=2, jobs_per_call=4, fetch_timeout_s=0.05,
                    reconcile_interval_s=0.2) as worker:
        wait_until(lambda: sum(runs.values()) >= 40, 10)
        wait_until(lambda: backend.in_progress(worker.worker_id) == [], 5)
    assert backend.faults.fired[("fetch", "after")] == 3
    assert runs == Counter(range(40))  # each exactly once
