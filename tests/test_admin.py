"""The runtime Admin (app.admin) on the memory backend, with an injected clock."""

from __future__ import annotations

import datetime

import pytest

from sideline import App, Chain, RunStatus, Signature, Workflow
from sideline.core.admin import day_buckets, latency_s, minute_buckets, page_window
from sideline.core.payload import Payload, encode
from tests.conftest import FakeClock

NOON = datetime.datetime(2026, 11, 29, 12, 0, 30, tzinfo=datetime.UTC).timestamp()


@pytest.fixture
def app(clock: FakeClock) -> App:
    clock.current = NOON
    app = App(testing="collect", clock=clock)

    @app.job(name="ok")
    def ok(x: int) -> int:
        return x

    @app.job(name="boom", retry=False)
    def boom() -> None:
        raise RuntimeError("boom")

    @app.job(name="flaky", retry=3)
    def flaky() -> None:
        raise RuntimeError("again")

    return app


def _run(app: App, ok: int = 0, failed: int = 0) -> None:
    for i in range(ok):
        app.enqueue("ok", [i])
    for _ in range(failed):
        app.enqueue("boom")
    app.drain(run_scheduled=False)


def test_stats_count_totals_today_sizes_and_busy(app: App, clock: FakeClock) -> None:
    _run(app, ok=3, failed=1)
    app.enqueue("ok", [9])
    app.enqueue("ok", [10], at=clock.now() + 60)
    app.backend.heartbeat("w1", {"busy": "2"}, 30.0, clock.now())
    app.backend.heartbeat("w2", {"busy": "5"}, -1.0, clock.now())  # dead: not counted
    stats = app.admin.stats()
    assert (stats.processed, stats.failed) == (4, 1)
    assert (stats.processed_today, stats.failed_today) == (4, 1)
    assert (stats.enqueued, stats.scheduled, stats.retries, stats.dead) == (1, 1, 0, 1)
    assert (stats.busy, stats.workers) == (2, 1)
    clock.advance(24 * 3600)
    tomorrow = app.admin.stats()
    assert (tomorrow.processed, tomorrow.processed_today, tomorrow.failed_today) == (4, 0, 0)


def test_history_by_day_and_by_minute(app: App, clock: FakeClock) -> None:
    _run(app, ok=2)
    clock.advance(60)
    _run(app, ok=1, failed=1)
    assert [(p.bucket, p.processed, p.failed) for p in app.admin.history_minutes(3)] == [
        ("2026-11-29T12:01", 2, 1), ("2026-11-29T12:00", 2, 0), ("2026-11-29T11:59", 0, 0)]
    clock.advance(24 * 3600)
    _run(app, ok=1)
    days = app.admin.history(days=3)
    assert [(p.bucket, p.processed, p.failed) for p in days] == [
        ("2026-11-30", 1, 0), ("2026-11-29", 4, 1), ("2026-11-28", 0, 0)]
    # minute buckets are kept 8 hours: yesterday's are gone
    assert [(p.bucket, p.processed) for p in app.admin.history_minutes(minutes=2)] == [
        ("2026-11-30T12:01", 1), ("2026-11-30T12:00", 0)]


def test_queues_and_their_pages(app: App, clock: FakeClock) -> None:
    for i in range(5):
        app.enqueue("ok", [i])
    clock.advance(12.5)
    [queue] = app.admin.queues()
    assert (queue.name, queue.size, queue.latency_s) == ("default", 5, pytest.approx(12.5))
    page = app.admin.queue_jobs("default", page=2, per_page=2)
    assert (page.total, page.page, [job.payload.args for job in page.jobs if job.payload]) == (
        5, 2, [[2], [3]])
    jid = page.jobs[0].jid
    assert jid is not None
    assert app.admin.delete_job("default", jid) is True
    assert app.admin.delete_job("default", jid) is False
    assert app.admin.clear_queue("default") == 4
    assert app.admin.queues()[0].size == 0


def test_set_pages_search_find_and_bulk(app: App, clock: FakeClock) -> None:
    jobs = [app.enqueue("ok", [i], at=clock.now() + 10 + i) for i in range(4)]
    app.enqueue("boom", at=clock.now() + 50)
    page = app.admin.scheduled(page=1, per_page=3)
    assert (page.total, [e.key for e in page.entries]) == (5, jobs[:3])
    assert [e.payload.name for e in app.admin.scheduled(per_page=10, search="BOO").entries] == [
        "boom"]
    found = app.admin.find("scheduled", jobs[1])
    assert found is not None
    assert found.payload.args == [1]
    assert app.admin.retry_now("scheduled", [jobs[0], jobs[1], "missing"]) == 2
    assert app.admin.queues()[0].size == 2
    assert app.admin.delete("scheduled", [jobs[2], jobs[2]]) == 1
    assert app.admin.scheduled().total == 2
    with pytest.raises(ValueError, match="page"):
        app.admin.scheduled(page=0)


def test_retries_kill_and_dead_retry(app: App) -> None:
    jid = app.enqueue("flaky")
    assert jid is not None
    app.drain(run_scheduled=False)
    assert app.admin.retries().total == 1
    assert app.admin.kill([jid, "missing"]) == 1
    [dead] = app.admin.dead().entries
    assert (dead.key, dead.payload.dead_reason) == (jid, "killed")
    assert app.admin.retry_now("dead", [jid]) == 1
    assert (app.admin.dead().total, app.admin.stats().enqueued) == (0, 1)


def test_workers_and_signals(app: App, clock: FakeClock) -> None:
    info = {"instance": "host:1", "incarnation": "abc", "host": "host", "pid": "1",
            "concurrency": "4", "busy": "1", "queues": "default,low", "started_at": "990.5"}
    app.backend.heartbeat("host:1#abc", info, 30.0, clock.now())
    [worker] = app.admin.workers()
    assert (worker.alive, worker.host, worker.pid, worker.concurrency, worker.queues,
            worker.busy, worker.started_at, worker.signal) == (
        True, "host", 1, 4, ("default", "low"), 1, 990.5, None)
    assert app.admin.quiet("host:1#abc") is True
    assert app.admin.workers()[0].signal == "quiet"
    assert app.admin.stop("host:1#abc") is True
    assert app.admin.quiet("nobody") is False
    clock.advance(60)
    assert [(w.alive, w.signal) for w in app.admin.workers()] == [(False, "stop")]


def test_orphans_delegate_to_recovery(app: App, clock: FakeClock) -> None:
    app.enqueue("ok", [1])
    app.backend.heartbeat("gone", {"instance": "gone"}, 5.0, clock.now())
    assert app.backend.fetch("gone", ["default"], 0) is not None
    clock.advance(10)
    [orphan] = app.admin.orphans()
    assert orphan.worker_id == "gone"
    assert app.admin.retry_orphans() == 1
    assert [r.worker_id for r in app.admin.recovery_log(5)] == ["gone"]
    assert app.admin.delete_orphans() == 0


def test_pure_helpers() -> None:
    assert page_window(3, 10) == (20, 10)
    assert day_buckets(NOON, 2) == ["2026-11-29", "2026-11-28"]
    assert minute_buckets(NOON, 2) == ["2026-11-29T12:00", "2026-11-29T11:59"]
    raw = encode(Payload(name="j", jid="1", queue="q", created_at=5.0))
    assert latency_s(raw, 7.5) == 2.5
    assert latency_s("{}", 7.5) == latency_s(None, 7.5) == 0.0


def test_killing_a_workflow_step_fails_its_run(app: App) -> None:
    run_id = Workflow(Chain(Signature("flaky"), Signature("ok", (1,))), app=app).run()
    app.drain(run_scheduled=False)
    [entry] = app.admin.retries().entries
    assert entry.payload.run_id == run_id
    assert app.admin.kill([entry.key]) == 1
    assert app.admin.retries().total == 0
    assert app.status(run_id).status is RunStatus.FAILED
    assert app.admin.dead().entries[0].payload.dead_reason == "killed"
    assert app.admin.retry_now("dead", [entry.key]) == 1  # the run revives
    assert app.status(run_id).status is RunStatus.RUNNING


def test_admin_lists_recent_runs_by_status() -> None:
    app = App(testing="collect")
    ok = app.job(name="ok")(lambda: None)

    @app.job(name="bad", retry=0)
    def bad() -> None:
        raise ValueError("no")

    first = Workflow(Chain(ok.s(), ok.s()), app=app).run()
    second = Workflow(Chain(bad.s(), ok.s()), app=app).run()
    app.drain()
    assert [info.run_id for info in app.admin.runs()] == [second, first]
    [failed] = app.admin.runs(status="failed")
    assert failed.run_id == second
    assert app.admin.run(first).counts() == {"succeeded": 2}
