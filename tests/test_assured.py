"""Assured execution: poison pills, incarnations, continuous recovery, unique jobs.

Run on every adapter (memory, fakeredis, real Redis).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sideline import App, Chain, RunStatus, Workflow
from sideline.core.payload import decode
from sideline.core.ports import Backend
from tests.contract.conftest import ADAPTERS, make_backend


@pytest.fixture(params=ADAPTERS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from make_backend(request.param)


def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_job_recovered_more_than_max_recoveries_is_a_poison_pill(backend: Backend) -> None:
    app = App(backend, testing="collect", max_recoveries=3)
    ran: list[int] = []
    crasher = app.job(name="crasher")(ran.append)
    crasher.enqueue(1)
    for _ in range(4):  # the job kills its worker four times
        assert backend.fetch("doomed", ["default"], 0) is not None
        assert backend.recover("doomed") == 1
    assert decode(backend.peek("default")[0]).recoveries == 4
    app.drain()
    assert ran == []
    [dead] = backend.entries("dead")
    assert dead.payload.dead_reason == "poison pill: recovered 4 times"
    assert dead.payload.error_class == "PoisonPill"


def test_job_recovered_max_recoveries_times_still_runs(backend: Backend) -> None:
    app = App(backend, testing="collect", max_recoveries=3)
    ran: list[int] = []
    app.job(name="crasher")(ran.append)
    app.enqueue("crasher", [1])
    for _ in range(3):
        backend.fetch("doomed", ["default"], 0)
        backend.recover("doomed")
    app.drain()
    assert ran == [1]


def test_poison_pill_in_a_workflow_fails_the_run(backend: Backend) -> None:
    app = App(backend, testing="collect", max_recoveries=0)
    step = app.job(name="step")(lambda: None)
    run_id = Workflow(Chain(step.s(), step.s())).run()
    backend.fetch("doomed", ["default"], 0)
    backend.recover("doomed")
    app.drain()
    info = app.status(run_id)
    assert info.status is RunStatus.FAILED
    assert [str(n.status) for n in info.nodes] == ["dead", "skipped"]


def test_restarted_instance_recovers_its_previous_incarnation_at_once(backend: Backend) -> None:
    app = App(backend)
    ran: list[str] = []
    app.job(name="rec")(ran.append)
    app.enqueue("rec", ["held by the dead incarnation"])
    now = app.clock.now()
    # The previous incarnation fetched the job, then was killed; its heartbeat is still fresh.
    backend.heartbeat("web-1#old", {"instance": "web-1"}, 600.0, now)
    assert backend.fetch("web-1#old", ["default"], 0) is not None
    with app.worker(instance_id="web-1", concurrency=1, fetch_timeout_s=0.05) as worker:
        assert worker.worker_id.startswith("web-1#")
        assert worker.worker_id != "web-1#old"
        wait_until(lambda: ran == ["held by the dead incarnation"])
    assert backend.in_progress("web-1#old") == []
    assert "web-1#old" not in {w.worker_id for w in backend.workers(app.clock.now())}


def test_recovery_runs_continuously_soon_after_a_heartbeat_expires(backend: Backend) -> None:
    app = App(backend)
    ran: list[str] = []
    app.job(name="rec")(ran.append)
    app.enqueue("rec", ["orphan"])
    now = app.clock.now()
    backend.heartbeat("crashed", {"instance": "crashed"}, 0.5, now)  # expires in 0.5 s
    assert backend.fetch("crashed", ["default"], 0) is not None
    with app.worker(concurrency=1, recovery_interval_s=30.0, poll_interval_s=0.02,
                    fetch_timeout_s=0.05) as worker:
        started = time.monotonic()
        wait_until(lambda: ran == ["orphan"], 5.0)
        # Well before the 30 s interval: the pass is scheduled at the heartbeat's expiry.
        assert time.monotonic() - started < 3.0
        # the poller counts the pass after it returns; a job thread may run the job first
        wait_until(lambda: worker.recovered == 1, 5.0)


def test_two_recovery_passes_never_move_a_job_twice(backend: Backend) -> None:
    app = App(backend)
    app.job(name="rec")(lambda n: None)
    app.enqueue_bulk("rec", [[n] for n in range(20)])
    now = app.clock.now()
    backend.heartbeat("gone", {"instance": "gone"}, 0.01, now - 1)
    assert len(backend.fetch_many("gone", ["default"], 20)) == 20
    first, second = app.worker(worker_id="a"), app.worker(worker_id="b")
    token = backend.acquire_lock("recovery", 30.0, app.clock.now())
    assert token is not None
    assert second.recover_dead_workers() == 0  # the lock is held: this pass does nothing
    assert backend.release_lock("recovery", token)
    assert first.recover_dead_workers() == 20
    assert second.recover_dead_workers() == 0
    assert sorted(decode(r).args[0] for r in backend.peek("default", 100)) == list(range(20))
    # Without the lock, moving the same jobs twice is still impossible: each move is atomic.
    assert backend.recover("gone") == 0


def test_unique_job_is_pushed_once_until_it_succeeds(backend: Backend) -> None:
    app = App(backend, testing="collect")
    ran: list[int] = []
    report = app.job(name="report", unique_for=60)(ran.append)
    first = report.enqueue(7)
    assert first is not None
    assert report.enqueue(7) is None  # an identical job is pending
    assert report.enqueue(8) is not None  # other arguments: another job
    assert app.drain() == 2
    assert sorted(ran) == [7, 8]
    assert report.enqueue(7) is not None  # released on success


def test_unique_lock_is_kept_by_a_recovered_job_and_expires(backend: Backend) -> None:
    app = App(backend, testing="collect")
    # 1 s: the first four steps must fit inside the lock's life on a loaded machine
    app.job(name="sync", unique_for=1.0)(lambda: None)
    assert app.enqueue("sync") is not None
    backend.fetch("crashed", ["default"], 0)
    backend.recover("crashed")  # the recovered copy still holds the lock
    assert app.enqueue("sync") is None
    time.sleep(1.1)
    assert app.enqueue("sync") is not None  # the lock expired


def test_orphan_view_lists_retries_and_deletes_jobs_of_dead_workers(backend: Backend) -> None:
    app = App(backend, testing="collect")
    ran: list[int] = []
    app.job(name="rec")(ran.append)
    app.enqueue_bulk("rec", [[1], [2], [3]])
    backend.push_raw("default", "not a payload")  # type: ignore[attr-defined]
    now = app.clock.now()
    backend.heartbeat("crashed#1", {"instance": "crashed"}, 1.0, now - 5)  # expired at now - 4
    assert len(backend.fetch_many("crashed#1", ["default"], 4)) == 4
    orphans = app.orphans()
    assert [(o.worker_id, o.instance, o.orphaned_at) for o in orphans] == [
        ("crashed#1", "crashed", now - 4)] * 4
    assert [o.payload.args if o.payload else None for o in orphans] == [[1], [2], [3], None]
    assert orphans[3].error is not None
    assert orphans[3].error.startswith("payload is not valid JSON")
    assert app.retry_orphans([orphans[0]]) == 1  # retry one
    assert app.delete_orphans([orphans[1], orphans[3]]) == 2  # delete some
    assert app.retry_orphans() == 1  # bulk: the rest
    assert app.orphans() == []
    assert "crashed#1" not in {w.worker_id for w in backend.workers(app.clock.now())}
    app.drain()
    assert sorted(ran) == [1, 3]
    log = app.recovered()
    assert [(r.jid is not None, r.args, r.instance, r.recoveries) for r in log] == [
        (True, [3], "crashed", 1), (True, [1], "crashed", 1)]
    assert log[0].orphaned_at == now - 4
