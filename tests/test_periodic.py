"""Periodic jobs through the App: the scheduler of every worker, each tick once, missed
ticks, the admin API (list, pause, resume, run now), on memory and real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import attrs
import pytest

from sideline import App, MemoryBackend, UnknownJob
from sideline.core.errors import ConfigurationError
from sideline.core.jobs import Signature
from sideline.core.payload import Payload, decode
from sideline.runtime.periodic import Scheduler
from tests.conftest import FakeClock
from tests.support import real_redis_backend


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def app(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[App]:
    if request.param == "memory":
        yield App(MemoryBackend(), clock=clock)
    else:
        for backend in real_redis_backend():
            yield App(backend, clock=clock)


def _schedulers(app: App, count: int) -> list[Scheduler]:
    runtime = app.runtime
    return [Scheduler(runtime.backend, runtime.client, runtime.periodic,
                      runtime.registry.names()) for _ in range(count)]


def _queued(app: App) -> list[Payload]:
    return [decode(raw) for raw in app.backend.peek("default", 1000)]


def test_three_workers_fire_each_tick_exactly_once(app: App, clock: FakeClock) -> None:
    @app.job(name="beat")
    def beat(label: str) -> None:
        return None

    app.periodic("beat-every-5s", beat.s("x"), every_s=5)
    clock.current = 1_000.0
    workers = _schedulers(app, 3)
    for worker in workers:
        worker.start(clock.now())
    for _ in range(40):  # 20 s of passes, every worker each half second
        clock.advance(0.5)
        for worker in workers:
            worker.run_due(clock.now())
    jids = [payload.jid for payload in _queued(app)]
    assert jids == [f"periodic:beat-every-5s:{t * 1000}" for t in range(1005, 1021, 5)]
    assert sum(worker.fired for worker in workers) == 4
    assert all(payload.args == ["x"] for payload in _queued(app))


@pytest.mark.parametrize(("missed", "expected"), [
    ("latest", [1300]), ("all", [1240, 1260, 1280, 1300]), ("skip", [])])
def test_ticks_missed_while_no_worker_ran(app: App, clock: FakeClock, missed: str,
                                          expected: list[int]) -> None:
    @app.job(name="sweep")
    def sweep() -> None:
        return None

    app.periodic("sweep", sweep.s(), every_s=20, missed=missed, max_missed=4, grace_s=5)
    clock.current = 1_000.0
    [worker] = _schedulers(app, 1)
    worker.start(clock.now())
    clock.current = 1_010.0
    worker.run_due(clock.now())
    assert _queued(app) == []  # nothing due before 1020
    # every worker stopped at 1010; one starts again at 1310
    clock.current = 1_310.0
    [restarted] = _schedulers(app, 1)
    restarted.start(clock.now())
    restarted.run_due(clock.now())
    assert [p.jid for p in _queued(app)] == [f"periodic:sweep:{t * 1000}" for t in expected]
    clock.current = 1_320.0
    restarted.run_due(clock.now())
    assert _queued(app)[-1].jid == "periodic:sweep:1320000"  # on schedule again


def test_admin_lists_pauses_resumes_and_runs_now(app: App, clock: FakeClock) -> None:
    @app.job(name="report")
    def report(kind: str) -> None:
        return None

    app.periodic("daily-report", report.s("sales"), cron="0 6 * * *", tz="Europe/Warsaw")
    clock.current = 1_790_000_000.0
    [worker] = _schedulers(app, 1)
    worker.start(clock.now())
    [view] = app.admin.periodic()
    assert (view.name, view.job, view.schedule, view.tz, view.missed, view.paused) == (
        "daily-report", "report", "0 6 * * *", "Europe/Warsaw", "latest", False)
    assert view.next_run is not None
    assert 0 < view.next_run - clock.now() <= 86_400
    assert app.admin.pause_periodic("daily-report")
    assert app.admin.periodic()[0].paused
    clock.current += 2 * 86_400
    worker.run_due(clock.now())
    assert _queued(app) == []  # paused: no tick fired
    assert app.admin.resume_periodic("daily-report")
    worker.run_due(clock.now())
    assert _queued(app) == []  # the ticks missed while paused do not fire
    jid = app.admin.run_periodic("daily-report")
    assert jid is not None
    assert [(p.jid, p.args) for p in _queued(app)] == [(jid, ["sales"])]
    assert app.admin.run_periodic("nope") is None
    assert not app.admin.pause_periodic("nope")


def test_client_middleware_sees_each_ticks_job(app: App, clock: FakeClock) -> None:
    @app.job(name="tagged")
    def tagged() -> None:
        return None

    app.client_middleware.append(lambda payload: attrs.evolve(payload, tags=["from-middleware"]))
    app.periodic("tagged", tagged.s(), every_s=10)
    clock.current = 1_000.0
    [worker] = _schedulers(app, 1)
    worker.start(clock.now())
    clock.current = 1_010.0
    worker.run_due(clock.now())
    assert [p.tags for p in _queued(app)] == [["from-middleware"]]


def test_an_entry_needs_a_declared_job_and_a_unique_name() -> None:
    app = App()

    @app.job(name="known")
    def known() -> None:
        return None

    with pytest.raises(UnknownJob):
        app.periodic("x", Signature("unknown"), every_s=5)
    app.periodic("x", known.s(), every_s=5)
    with pytest.raises(ConfigurationError, match="declared twice"):
        app.periodic("x", known.s(), every_s=6)


def test_a_job_option_declares_an_entry_and_a_worker_fires_it() -> None:
    app = App()
    ran: list[float] = []

    @app.job(name="heartbeat", every_s=1)
    def heartbeat() -> None:
        ran.append(time.time())

    assert list(app.periodic_entries) == ["heartbeat"]
    with app.worker(concurrency=1, instance_id="a"), app.worker(concurrency=1, instance_id="b"):
        deadline = time.monotonic() + 10
        while len(ran) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(ran) >= 3
    seconds = [round(t) for t in ran]
    assert len(seconds) == len(set(seconds))  # two workers, never one tick twice
