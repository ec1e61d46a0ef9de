"""Batches through the App, on the memory backend, fakeredis and the real Redis: each
callback rule, nesting, additions from inside a job, invalidation, empty batches, expiry,
refusals, and a workflow step that waits for the batch it opened (dynamic fan-out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sideline import (
    App,
    BatchError,
    BatchFinished,
    Chain,
    NodeStatus,
    RunStatus,
    Workflow,
    current_job,
)
from tests.conftest import FakeClock
from tests.support import memory_or_fake_backend, real_redis_backend


@pytest.fixture(params=["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def app(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[App]:
    if request.param == "redis":
        backends: Iterator[Any] = real_redis_backend()
    else:
        backends = memory_or_fake_backend(request.param)
    for backend in backends:
        yield App(backend, clock=clock)


class Events:
    """What the jobs of a test did, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def __call__(self, *event: Any) -> None:
        self.seen.append(event)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [event for event in self.seen if event[0] == name]


@pytest.fixture
def events() -> Events:
    return Events()


def declare(app: App, events: Events) -> dict[str, Any]:
    """The jobs most tests use: work(n) records n; flaky(n) fails its first run; doomed()
    always fails without retries; callback(bid, tag) records which callback ran."""
    attempts: dict[int, int] = {}

    @app.job(name="work")
    def work(n: int) -> None:
        events("work", n)

    @app.job(name="flaky")
    def flaky(n: int) -> None:
        attempts[n] = attempts.get(n, 0) + 1
        if attempts[n] == 1:
            raise RuntimeError(f"flaky {n} fails once")
        events("flaky", n)

    @app.job(name="doomed", retry=False)
    def doomed(n: int) -> None:
        raise ValueError(f"doomed {n}")

    @app.job(name="callback")
    def callback(bid: str, tag: str) -> None:
        batch = current_job().batch
        assert batch is not None
        events("callback", tag, bid, batch.event, batch.options)

    return {"work": work, "flaky": flaky, "doomed": doomed, "callback": callback}


def callbacks_of(events: Events) -> list[str]:
    return [event[1] for event in events.named("callback")]


def with_all_callbacks(app: App, jobs: dict[str, Any], description: str = "") -> Any:
    batch = app.batch(description)
    for event in ("complete", "success", "death"):
        batch.on(event, jobs["callback"].s(event), options={"tag": event})
    return batch


# -- the callback rules ---------------------------------------------------------------------


def test_all_succeed_complete_then_success_each_once(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = with_all_callbacks(app, jobs, "Upload images")
    with batch.jobs():
        for n in range(5):
            jobs["work"].enqueue(n)
    assert batch.status().pending == 5
    assert events.seen == []  # pushed, not run
    app.drain()
    assert sorted(e[1] for e in events.named("work")) == [0, 1, 2, 3, 4]
    assert callbacks_of(events) == ["complete", "success"]
    _, tag, bid, event, options = events.named("callback")[1]
    assert (tag, bid, event, options) == ("success", batch.bid, "success", {"tag": "success"})
    status = batch.status()
    assert (status.total, status.pending, status.failures, status.complete, status.success) == (
        5, 0, 0, True, True)
    assert status.description == "Upload images"
    assert status.callbacks == {"complete": "callback", "success": "callback", "death": "callback"}
    app.drain()
    assert callbacks_of(events) == ["complete", "success"]  # never again


def test_a_job_that_fails_then_succeeds_counts_as_success_after_complete(
        app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = with_all_callbacks(app, jobs)
    with batch.jobs():
        jobs["work"].enqueue(1)
        jobs["flaky"].enqueue(2)
    app.drain(run_scheduled=False)  # the flaky job failed once and waits for its retry
    assert callbacks_of(events) == ["complete"]
    status = batch.status()
    assert (status.pending, status.failures, status.complete, status.success) == (1, 1, True, False)
    [(error_class, message)] = status.failed.values()
    assert (error_class, message) == ("RuntimeError", "flaky 2 fails once")
    app.drain()  # the retry runs and succeeds
    assert callbacks_of(events) == ["complete", "success"]
    assert batch.status().failed == {}


def test_death_fires_once_and_blocks_success(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = with_all_callbacks(app, jobs)
    with batch.jobs():
        jobs["doomed"].enqueue(1)
        jobs["doomed"].enqueue(2)
        jobs["work"].enqueue(3)
    app.drain()
    assert sorted(callbacks_of(events)) == ["complete", "death"]
    status = batch.status()
    assert (status.pending, status.failures, len(status.dead)) == (2, 2, 2)
    assert status.death_at is not None
    assert not status.success


def test_an_empty_batch_fires_at_once(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = with_all_callbacks(app, jobs)
    with batch.jobs():
        pass
    app.drain()
    assert callbacks_of(events) == ["complete", "success"]


def test_callbacks_go_to_the_callback_queue(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = app.batch(callback_queue="callbacks").on("success", jobs["callback"].s("s"))
    with batch.jobs():
        jobs["work"].enqueue(1)
    app.drain()
    assert app.backend.queue_sizes().get("callbacks", 0) == 0
    assert callbacks_of(events) == ["s"]
    other = app.batch(callback_queue="callbacks").on("success", jobs["callback"].s("t"))
    with other.jobs():
        pass
    assert len(app.backend.peek("callbacks")) == 1


# -- building batches ---------------------------------------------------------------------


def test_a_block_that_raises_pushes_nothing(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = with_all_callbacks(app, jobs)
    def push_then_fail() -> None:
        with batch.jobs():
            jobs["work"].enqueue(1)
            raise KeyError("stop")

    with pytest.raises(KeyError):
        push_then_fail()
    assert app.drain() == 0
    with pytest.raises(BatchError, match="unknown"):
        batch.status()


def test_jobs_of_a_running_member_join_its_batch(app: App, events: Events) -> None:
    jobs = declare(app, events)

    @app.job(name="fan")
    def fan(n: int) -> None:
        batch = current_job().batch
        assert batch is not None
        with batch.jobs():
            for i in range(n):
                jobs["work"].enqueue(100 + i)

    batch = with_all_callbacks(app, jobs)
    with batch.jobs():
        fan.enqueue(3)
    app.drain()
    assert sorted(e[1] for e in events.named("work")) == [100, 101, 102]
    assert batch.status().total == 4
    assert callbacks_of(events) == ["complete", "success"]


def test_a_complete_batch_refuses_more_jobs_and_pushes_none(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = app.batch()
    with batch.jobs():
        jobs["work"].enqueue(1)
    app.drain()
    with pytest.raises(BatchFinished, match="complete"), app.open_batch(batch.bid).jobs():
        jobs["work"].enqueue(2)
    assert app.drain() == 0
    assert batch.status().total == 1


def test_callbacks_are_set_before_the_first_block(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = app.batch()
    with batch.jobs():
        jobs["work"].enqueue(1)
    with pytest.raises(BatchError, match="before"):
        batch.on("success", jobs["callback"].s("late"))
    with pytest.raises(BatchError, match="unknown batch callback"):
        app.batch().on("finished", jobs["callback"].s("x"))


def test_scheduled_jobs_join_the_batch(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = with_all_callbacks(app, jobs)
    with batch.jobs():
        jobs["work"].enqueue_in(60, 1)
    assert batch.status().pending == 1
    app.drain()
    assert callbacks_of(events) == ["complete", "success"]


def test_a_plain_job_has_no_batch(app: App, events: Events) -> None:
    seen: list[object] = []

    @app.job(name="plain")
    def plain() -> None:
        seen.append(current_job().batch)

    plain.enqueue()
    app.drain()
    assert seen == [None]


# -- nesting ----------------------------------------------------------------------------------


def test_a_parent_waits_for_its_child(app: App, events: Events) -> None:
    jobs = declare(app, events)

    @app.job(name="spawn")
    def spawn() -> None:
        parent = current_job().batch
        assert parent is not None
        with parent.jobs():
            child = app.batch("child").on("success", jobs["callback"].s("child success"))
            with child.jobs():
                jobs["work"].enqueue(1)
                jobs["flaky"].enqueue(2)
        events("spawned", child.bid)

    parent = app.batch("parent")
    parent.on("complete", jobs["callback"].s("parent complete"))
    parent.on("success", jobs["callback"].s("parent success"))
    with parent.jobs():
        spawn.enqueue()
    app.drain(run_scheduled=False)
    [(_, child_bid)] = events.named("spawned")
    assert parent.status().children == (child_bid,)
    assert app.open_batch(child_bid).status().parent == parent.bid
    assert callbacks_of(events) == ["parent complete"]  # every job ran; flaky will retry
    app.drain()
    assert callbacks_of(events) == ["parent complete", "child success", "parent success"]


def test_a_childs_death_is_the_parents(app: App, events: Events) -> None:
    jobs = declare(app, events)
    parent = app.batch().on("death", jobs["callback"].s("parent death"))
    with parent.jobs():
        child = app.batch().on("death", jobs["callback"].s("child death"))
        with child.jobs():
            jobs["doomed"].enqueue(1)
    assert child.status().parent == parent.bid
    app.drain()
    assert callbacks_of(events) == ["child death", "parent death"]


# -- invalidation, expiry, admin ---------------------------------------------------------------


def test_invalidated_jobs_skip_and_callbacks_still_fire(app: App, events: Events) -> None:
    jobs = declare(app, events)

    @app.job(name="careful")
    def careful(n: int) -> None:
        batch = current_job().batch
        assert batch is not None
        events("careful", n, batch.valid)

    batch = with_all_callbacks(app, jobs)
    with batch.jobs():
        careful.enqueue(1)
    batch.invalidate()
    app.drain()
    assert events.named("careful") == [("careful", 1, False)]
    assert batch.status().invalidated
    assert callbacks_of(events) == ["complete", "success"]


def test_a_pending_batch_expires_and_a_finished_one_lingers(
        app: App, events: Events, clock: FakeClock) -> None:
    jobs = declare(app, events)
    pending = app.batch(ttl_s=100)
    with pending.jobs():
        jobs["work"].enqueue(1)
    done = app.batch(ttl_s=1_000, linger_s=10)
    with done.jobs():
        pass
    clock.advance(50)
    assert pending.status().pending == 1
    clock.advance(11)
    with pytest.raises(BatchError, match="unknown"):
        done.status()  # lingered 10 s after its success
    clock.advance(40)
    with pytest.raises(BatchError, match="unknown"):
        pending.status()  # 100 s after its last addition
    app.drain()  # its job still runs, counted nowhere
    assert events.named("work") == [("work", 1)]


def test_killing_a_retry_entry_is_a_death(app: App, events: Events) -> None:
    jobs = declare(app, events)
    batch = with_all_callbacks(app, jobs)
    with batch.jobs():
        jobs["flaky"].enqueue(1)
    app.drain(run_scheduled=False)
    [entry] = app.admin.retries().entries
    assert app.admin.kill([entry.key]) == 1
    app.drain()
    assert sorted(callbacks_of(events)) == ["complete", "death"]


# -- dynamic fan-out in workflows ----------------------------------------------------------------


def declare_fan_out(app: App, events: Events) -> dict[str, Any]:
    jobs = declare(app, events)

    @app.job(name="split")
    def split(count: int, doomed: bool) -> None:
        batch = app.batch("map")
        with batch.jobs():
            for n in range(count):  # how many is known only now
                jobs["work"].enqueue_in(30, n)  # due after `after` would be, were it released
            if doomed:
                jobs["doomed"].enqueue(99)
        events("split", batch.bid)

    @app.job(name="after")
    def after() -> None:
        events("after", len(events.named("work")))

    return {**jobs, "split": split, "after": after}


def test_a_step_waits_for_the_batch_it_opened(app: App, events: Events) -> None:
    jobs = declare_fan_out(app, events)
    run_id = Workflow(Chain(jobs["split"].s(4, False), jobs["after"].s()), app=app).run()
    app.drain()
    assert events.named("after") == [("after", 4)]  # after every mapped job, never before
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    [(_, bid)] = events.named("split")
    status = app.open_batch(bid).status()
    assert (status.run_id, status.node_id) == (run_id, 0)


def test_a_step_waits_even_when_its_batch_is_empty(app: App, events: Events) -> None:
    jobs = declare_fan_out(app, events)
    run_id = Workflow(Chain(jobs["split"].s(0, False), jobs["after"].s()), app=app).run()
    app.drain()
    assert events.named("after") == [("after", 0)]
    assert app.status(run_id).status is RunStatus.SUCCEEDED


def test_a_dead_job_of_the_batch_fails_the_step_and_the_run(app: App, events: Events) -> None:
    jobs = declare_fan_out(app, events)
    run_id = Workflow(Chain(jobs["split"].s(2, True), jobs["after"].s()), app=app).run()
    app.drain()
    assert events.named("after") == []
    info = app.status(run_id)
    assert info.status is RunStatus.FAILED
    node = info.nodes[0]
    assert node.status is NodeStatus.DEAD
    assert node.error_class == "BatchJobDied"
    assert "doomed 99" in (node.error_message or "")


def test_a_childs_callback_belongs_to_the_parent_sidekiq_recipe(app: App, events: Events) -> None:
    # Sidekiq Pro's multi-step recipe: step 1's success callback re-opens the overall
    # batch (its parent) and adds step 2; the overall success runs once, after all of it.
    jobs = declare(app, events)

    @app.job(name="step_done")
    def step_done(bid: str, step: int) -> None:
        batch = current_job().batch
        assert batch is not None
        status = batch.status()
        events("step done", step, batch.bid == bid)
        if step == 1:
            assert status.parent is not None
            with app.open_batch(status.parent).jobs():
                step2 = app.batch("step 2").on("success", step_done.s(2))
                with step2.jobs():
                    jobs["work"].enqueue(2)
                    jobs["flaky"].enqueue(3)

    overall = app.batch("overall").on("success", jobs["callback"].s("shipped"))
    with overall.jobs():
        step1 = app.batch("step 1").on("success", step_done.s(1))
        with step1.jobs():
            jobs["work"].enqueue(1)
    app.drain()
    order = [e[0] if e[0] != "callback" else e[1] for e in events.seen]
    assert order.count("shipped") == 1
    assert order[-1] == "shipped"  # after step 2's callback, which ran after step 2's jobs
    assert [e for e in events.seen if e[0] == "step done"] == [
        ("step done", 1, True), ("step done", 2, True)]
    status = overall.status()
    assert status.success
    assert status.total == 2  # the two step callbacks were its members
    assert len(status.children) == 2
