"""Results, job handles, progress and timeouts, on memory and real Redis."""

from __future__ import annotations

import json
import pickle
import threading
import time
from collections.abc import Iterator

import pytest

from sideline import App, Chain, ConfigurationError, Group, MemoryBackend, Workflow
from sideline.core.errors import SidelineError
from sideline.core.results import JobFailed, JobState
from sideline.runtime.handles import JobHandle
from sideline.runtime.middleware import current_job
from tests import isolation_jobs
from tests.support import real_redis_backend


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    if request.param == "memory":
        yield App(MemoryBackend())
    else:
        for backend in real_redis_backend():
            yield App(backend)


def test_a_handle_is_the_jid_as_a_str(app: App) -> None:
    @app.job(name="noop")
    def noop() -> None:
        return None

    handle = noop.enqueue()
    assert isinstance(handle, JobHandle)
    assert isinstance(handle, str)
    assert handle == handle.jid
    assert str(handle) == handle.jid
    assert json.loads(json.dumps({"jid": handle})) == {"jid": handle.jid}
    assert type(pickle.loads(pickle.dumps(handle))) is str
    assert [entry for entry in app.backend.peek("default") if handle.jid in entry]


def test_result_refuses_at_once_for_a_job_that_does_not_store_it(app: App) -> None:
    @app.job(name="forgetful")
    def forgetful() -> int:
        return 1

    handle = forgetful.enqueue()
    assert handle is not None
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="does not store its result"):
        handle.result(5)
    assert time.monotonic() - started < 1


def test_result_blocks_until_the_job_ends_then_returns_its_value(app: App) -> None:
    @app.job(name="slow_add", store_result=True)
    def slow_add(a: int, b: int) -> dict[str, int]:
        time.sleep(0.3)
        return {"sum": a + b}

    handle = slow_add.enqueue(2, 3)
    assert handle is not None
    assert handle.status() is JobState.PENDING
    with pytest.raises(TimeoutError, match="has no result yet"):
        handle.result(0.1)
    with app.worker(concurrency=1):
        assert handle.result(10) == {"sum": 5}
    info = handle.info()
    assert info.state is JobState.SUCCEEDED
    assert info.result is not None
    assert info.worker is not None
    assert info.started_at is not None
    assert app.admin.job(handle).result == info.result


def test_many_waiters_on_one_job_all_get_its_result(app: App) -> None:
    @app.job(name="answer", store_result=True)
    def answer() -> int:
        time.sleep(0.2)
        return 42

    handle = answer.enqueue()
    assert handle is not None
    got: list[int] = []
    waiters = [threading.Thread(target=lambda: got.append(app.handle(handle).result(10)))
               for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    with app.worker(concurrency=1):
        for waiter in waiters:
            waiter.join(10)
    assert got == [42] * 4


def test_a_dead_job_raises_job_failed_with_its_error(app: App) -> None:
    @app.job(name="fails", store_result=True, retry=0)
    def fails() -> None:
        raise KeyError("missing")

    handle = fails.enqueue()
    assert handle is not None
    with app.worker(concurrency=1), pytest.raises(JobFailed) as caught:
        handle.result(10)
    assert (caught.value.error_class, caught.value.jid) == ("KeyError", handle.jid)
    assert handle.status() is JobState.FAILED


def test_a_non_json_result_is_a_recorded_failure_not_a_crash(app: App) -> None:
    @app.job(name="returns_a_set", store_result=True, retry=0)
    def returns_a_set() -> set[int]:
        return {1, 2}

    @app.job(name="after", store_result=True)
    def after() -> str:
        return "still running jobs"

    bad, good = returns_a_set.enqueue(), after.enqueue()
    assert bad is not None
    assert good is not None
    with app.worker(concurrency=1):
        with pytest.raises(JobFailed, match="SerializationError: the result of returns_a_set"):
            bad.result(10)
        assert good.result(10) == "still running jobs"
    [entry] = app.admin.dead().entries
    assert entry.payload.error_class == "SerializationError"


def test_a_retrying_job_reads_as_retrying(app: App) -> None:
    @app.job(name="later", store_result=True, retry=3, retry_in=lambda count, error: 3600)
    def later() -> None:
        raise RuntimeError("not yet")

    handle = later.enqueue()
    assert handle is not None
    with app.worker(concurrency=1):
        deadline = time.monotonic() + 10
        while handle.status() is not JobState.RETRYING and time.monotonic() < deadline:
            time.sleep(0.02)
    info = handle.info()
    assert (info.state, info.retry_count) == (JobState.RETRYING, 1)


def test_results_expire_after_result_ttl(app: App) -> None:
    @app.job(name="brief", store_result=True, result_ttl=1)
    def brief() -> int:
        return 7

    handle = brief.enqueue()
    assert handle is not None
    with app.worker(concurrency=1):
        assert handle.result(10) == 7
    time.sleep(1.2)
    assert handle.status() is JobState.PENDING
    assert app.backend.get_results([handle.jid]) == [None]


def test_progress_and_meta_are_readable_while_the_job_runs(app: App) -> None:
    release = threading.Event()

    @app.job(name="pages", store_result=True)
    def pages() -> str:
        current_job().progress(0.25, "page 1 of 4", meta={"page": 1})
        release.wait(10)
        current_job().progress(1.0, "done")
        return "ok"

    handle = pages.enqueue()
    assert handle is not None
    with app.worker(concurrency=1):
        deadline = time.monotonic() + 10
        while handle.info().progress is None and time.monotonic() < deadline:
            time.sleep(0.01)
        info = handle.info()
        assert (info.state, info.progress, info.message, info.meta) == (
            JobState.RUNNING, 0.25, "page 1 of 4", {"page": 1})
        release.set()
        assert handle.result(10) == "ok"
    assert handle.info().progress == 1.0


def test_progress_refuses_a_fraction_outside_0_to_1() -> None:
    app = App(testing="collect")
    seen: list[str] = []

    @app.job(name="bad_progress", retry=0)
    def bad_progress() -> None:
        try:
            current_job().progress(1.5)
        except SidelineError as exc:
            seen.append(str(exc))

    bad_progress.enqueue()
    app.drain()
    assert seen == ["progress takes a fraction from 0.0 to 1.0, got 1.5"]


def test_a_thread_job_past_its_timeout_is_settled_as_a_timeout_and_retried(app: App) -> None:
    attempts: list[bool] = []

    @app.job(name="long_loop", timeout=0.2, retry=1, store_result=True,
             retry_in=lambda count, error: 0.01)
    def long_loop() -> str:
        while not current_job().should_stop():
            time.sleep(0.01)
        attempts.append(current_job().should_stop())
        return "returned after the deadline"

    handle = long_loop.enqueue()
    assert handle is not None
    with app.worker(concurrency=1, poll_interval_s=0.02), pytest.raises(
            JobFailed, match=r"JobTimeout: the job ran past its timeout of 0\.2 s"):
        handle.result(10)
    assert attempts == [True, True]
    [entry] = app.admin.dead().entries
    assert entry.payload.retry_count == 1


def test_node_outputs_are_readable_from_the_run_status(app: App) -> None:
    @app.job(name="square", store_result=True)
    def square(n: int) -> int:
        return n * n

    @app.job(name="quiet")
    def quiet() -> None:
        return None

    run_id = Workflow(Chain(square.s(3), Group(square.s(4), quiet.s())), app=app).run()
    with app.worker(concurrency=2):
        info = app.wait(run_id, timeout_s=10)
    assert info.status == "succeeded"
    assert info.compacted
    detailed = app.status(run_id, results=True)
    assert {node: record.value for node, record in detailed.outputs.items()} == {0: 9, 1: 16}
    assert detailed.output(1) == 16
    with pytest.raises(KeyError):
        detailed.output(2)


def test_wait_returns_as_soon_as_the_run_finishes(app: App) -> None:
    @app.job(name="pause")
    def pause() -> None:
        time.sleep(0.5)

    run_id = Workflow(Chain(pause.s()), app=app).run()
    with app.worker(concurrency=1):
        started = time.monotonic()
        info = app.wait(run_id, timeout_s=10)
        waited = time.monotonic() - started
    assert info.status == "succeeded"
    assert 0.4 < waited < 1.5


def test_isolation_is_refused_for_async_and_typed_jobs() -> None:
    app = App()

    async def coro() -> None:
        return None

    with pytest.raises(ConfigurationError, match="is async"):
        app.job(coro, name="coro", isolation="process")
    with pytest.raises(ConfigurationError, match="isolation must be one of"):
        app.job(lambda: None, name="x", isolation="fork")


def test_drain_runs_an_isolated_job_in_the_calling_thread() -> None:
    app = App(testing="inline", store_results=True)
    ran_in: list[str] = []

    def record(n: int) -> int:
        ran_in.append(threading.current_thread().name)
        return n

    job = app.job(record, name="record", isolation="process")
    handle = job.enqueue(3)
    assert handle is not None
    assert handle.result(1) == 3
    assert ran_in == [threading.current_thread().name]


def test_an_isolated_job_that_raises_dies_with_the_childs_error_class() -> None:
    app = App(store_results=True)
    failing = app.job(isolation_jobs.fail, name="isolated_fail", isolation="process", retry=0)
    doubling = app.job(isolation_jobs.double, name="isolated_double", isolation="process")
    with app.worker(concurrency=1):
        handle, good = failing.enqueue("from the child"), doubling.enqueue(2)
        assert handle is not None
        assert good is not None
        with pytest.raises(JobFailed) as caught:
            handle.result(30)
        assert good.result(30) == {"args": [4], "kwargs": {}}
    assert caught.value.error_class == "ValueError"
    [entry] = app.admin.dead().entries
    assert (entry.payload.error_class, entry.payload.error_message) == (
        "ValueError", "from the child")
    assert any("ValueError" in line for line in entry.payload.error_backtrace)


def test_a_running_steps_progress_shows_in_the_run_status(app: App) -> None:
    release = threading.Event()

    @app.job(name="crawl")
    def crawl() -> None:
        current_job().progress(0.75, "3 of 4 sites")
        release.wait(10)

    run_id = Workflow(Chain(crawl.s()), app=app).run()
    with app.worker(concurrency=1):
        deadline = time.monotonic() + 10
        while 0 not in app.status(run_id, results=True).running and time.monotonic() < deadline:
            time.sleep(0.01)
        while (app.status(run_id, results=True).running[0].progress is None
               and time.monotonic() < deadline):
            time.sleep(0.01)
        step = app.status(run_id, results=True).running[0]
        release.set()
        assert app.wait(run_id, timeout_s=10).status == "succeeded"
    assert (step.progress, step.message) == (0.75, "3 of 4 sites")
