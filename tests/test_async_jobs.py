"""Async jobs: declared with the same decorator, run on the worker's event loop many at
once, awaited (never "succeeded" without running), with workflows, typed steps, retries,
batches, timeouts and the testing modes working as for thread jobs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import attrs
import pytest

from sideline import App, Chain, ConfigurationError, Group, MemoryBackend, Workflow
from sideline.core.results import JobFailed, JobState
from tests.support import real_redis_backend


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    if request.param == "memory":
        yield App(MemoryBackend(), store_results=True)
    else:
        for backend in real_redis_backend():
            yield App(backend, store_results=True)


class FetchPage:
    async def perform(self, url: str) -> str:
        await asyncio.sleep(0)
        return url.upper()


class AsyncCallable:
    async def __call__(self, n: int) -> int:
        await asyncio.sleep(0)
        return n + 1


def test_every_async_kind_is_awaited_by_drain() -> None:
    app = App(testing="collect", store_results=True)
    ran: list[str] = []

    @app.job(name="fn")
    async def fn(n: int) -> int:
        await asyncio.sleep(0)
        ran.append("fn")
        return n * 2

    page = app.job(FetchPage, name="page")
    callable_job = app.job(AsyncCallable(), name="callable")
    handles = [fn.enqueue(21), page.enqueue("a"), callable_job.enqueue(1)]
    assert app.drain(raise_errors=True) == 3
    assert ran == ["fn"]
    assert [h.result(1) for h in handles if h is not None] == [42, "A", 2]


def test_an_async_generator_is_refused() -> None:
    app = App()

    async def stream(url: str) -> AsyncIterator[str]:
        yield url

    with pytest.raises(ConfigurationError, match="async generator"):
        app.job(stream, name="stream")


def test_inline_mode_runs_an_async_job_at_once_even_inside_a_running_loop() -> None:
    app = App(testing="inline", store_results=True)

    @app.job(name="twice")
    async def twice(n: int) -> int:
        return n * 2

    async def caller() -> int:
        handle = await twice.enqueue_async(5)
        assert handle is not None
        value: int = handle.result(1)
        return value

    assert asyncio.run(caller()) == 10


def test_calling_an_async_job_directly_returns_its_coroutine() -> None:
    app = App()

    @app.job(name="direct")
    async def direct(n: int) -> int:
        return n + 1

    assert asyncio.run(direct(1)) == 2


def test_async_jobs_run_concurrently_on_one_loop(app: App) -> None:
    @app.job(name="nap")
    async def nap(n: int) -> int:
        await asyncio.sleep(0.3)
        return n

    with app.worker(concurrency=2, async_concurrency=50):
        started = time.monotonic()
        handles = [nap.enqueue(i) for i in range(40)]
        assert sorted(h.result(10) for h in handles if h is not None) == list(range(40))
        elapsed = time.monotonic() - started
    # 40 sleeps of 0.3 s on 2 threads would take 6 s; on the loop they overlap
    assert elapsed < 3.0, elapsed


def test_async_concurrency_bounds_the_coroutines_at_once(app: App) -> None:
    now_running, peak = [0], [0]
    lock = threading.Lock()

    @app.job(name="count")
    async def count() -> None:
        with lock:
            now_running[0] += 1
            peak[0] = max(peak[0], now_running[0])
        await asyncio.sleep(0.05)
        with lock:
            now_running[0] -= 1

    with app.worker(concurrency=4, async_concurrency=3):
        handles = [count.enqueue() for _ in range(20)]
        for handle in handles:
            assert handle is not None
            handle.result(10)
    assert peak[0] == 3


def test_a_blocking_async_job_does_not_stop_thread_jobs(app: App) -> None:
    @app.job(name="blocks_the_loop", retry=0)
    async def blocks_the_loop() -> None:
        time.sleep(1.5)  # wrong in async code, and it must not stall thread jobs

    @app.job(name="plain")
    def plain(n: int) -> int:
        return n

    with app.worker(concurrency=2):
        blocker = blocks_the_loop.enqueue()
        time.sleep(0.1)
        started = time.monotonic()
        assert [h.result(5) for h in [plain.enqueue(i) for i in range(5)] if h] == list(range(5))
        assert time.monotonic() - started < 1.0
        assert blocker is not None
        assert blocker.result(5) is None


def test_an_async_job_is_retried_and_then_succeeds(app: App) -> None:
    attempts = [0]

    @app.job(name="flaky", retry=3, retry_in=lambda count, error: 0.01)
    async def flaky() -> str:
        attempts[0] += 1
        if attempts[0] < 3:
            raise RuntimeError(f"attempt {attempts[0]}")
        return "ok"

    with app.worker(concurrency=2, poll_interval_s=0.02):
        handle = flaky.enqueue()
        assert handle is not None
        assert handle.result(10) == "ok"
    assert attempts[0] == 3


def test_an_async_job_that_dies_raises_job_failed(app: App) -> None:
    @app.job(name="broken", retry=0)
    async def broken() -> None:
        raise ValueError("bad input")

    with app.worker(concurrency=1):
        handle = broken.enqueue()
        assert handle is not None
        with pytest.raises(JobFailed, match="ValueError: bad input") as caught:
            handle.result(5)
    assert caught.value.error_class == "ValueError"
    assert handle.status() is JobState.FAILED
    assert [entry.payload.name for entry in app.admin.dead().entries] == ["broken"]


def test_an_async_job_is_cancelled_at_its_timeout_and_retried(app: App) -> None:
    cancelled = []
    attempts = [0]

    @app.job(name="hangs", timeout=0.2, retry=1, retry_in=lambda count, error: 0.01)
    async def hangs() -> None:
        attempts[0] += 1
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(attempts[0])
            raise

    with app.worker(concurrency=1, poll_interval_s=0.02):
        handle = hangs.enqueue()
        assert handle is not None
        started = time.monotonic()
        with pytest.raises(JobFailed, match=r"JobTimeout: the job ran past its timeout of 0\.2 s"):
            handle.result(10)
        assert time.monotonic() - started < 5
    assert cancelled == [1, 2]  # cancelled at the deadline, retried once, cancelled again


@attrs.frozen
class Doc:
    doc_id: int


@attrs.frozen
class Text:
    text: str


@attrs.frozen
class Words:
    words: int


def test_async_typed_steps_in_a_workflow_share_run_memory(app: App) -> None:
    @app.job(name="load", input=Doc, output=Text)
    async def load(doc: Doc) -> Text:
        await asyncio.sleep(0.01)
        return Text(f"document {doc.doc_id} has four words")

    @app.job(name="count_words", input=Text, output=Words)
    async def count_words(text: Text) -> Words:
        return Words(len(text.text.split()))

    @app.job(name="sync_step")
    def sync_step() -> None:
        return None

    run_id = Workflow(Chain(load.s(doc_id=7), Group(count_words.s(), sync_step.s())),
                      app=app).run()
    app.backend.write(run_id, {}, 60, time.time())
    with app.worker(concurrency=2):
        info = app.wait(run_id, timeout_s=10)
    assert info.status == "succeeded"
    outputs = app.status(run_id, results=True).outputs
    assert outputs[1].value == {"words": 5}


def test_a_batch_of_async_jobs_fires_its_success_callback(app: App) -> None:
    fired: list[str] = []

    @app.job(name="member")
    async def member(n: int) -> None:
        await asyncio.sleep(0.01)

    @app.job(name="done")
    def done(bid: str) -> None:
        fired.append(bid)

    batch = app.batch("async members")
    batch.on("success", done.s())
    with batch.jobs():
        for n in range(10):
            member.enqueue(n)
    with app.worker(concurrency=2):
        deadline = time.monotonic() + 10
        while not fired and time.monotonic() < deadline:
            time.sleep(0.02)
    assert fired == [batch.bid]
