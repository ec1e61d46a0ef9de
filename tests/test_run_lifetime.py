"""A run's lifetime seen from the App: extend_ttl against sibling advances, compaction of
finished runs (status, wait, memory, late copies), the finished_ttl_s setting.

Each test runs on the memory backend and on a fakeredis-backed one: the Lua scripts
must behave as the memory backend does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sideline import App, Chain, Group, RunStatus, Workflow, current_job
from sideline.core.errors import RunExpired
from sideline.core.payload import decode
from sideline.core.ports import Backend
from sideline.core.run import FailedNode
from sideline.runtime.executor import process
from tests.conftest import FakeClock
from tests.support import memory_or_fake_backend


@pytest.fixture(params=["memory", "fakeredis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from memory_or_fake_backend(request.param)


def test_group_members_that_extend_the_run_outlive_a_short_run_ttl(backend: Backend) -> None:
    # Three members start together and each extends the run by 30 s; they finish 3 s
    # apart with run_ttl_s=2. The first completion must not cut the run back to now + 2.
    clock = FakeClock()
    app = App(backend, testing="collect", clock=clock, run_ttl_s=2)
    extended: list[bool] = []

    @app.job(name="member")
    def member() -> None:
        extended.append(current_job().extend_ttl(30))

    run_id = Workflow(Group(member.s(), member.s(), member.s()), app=app).run()
    deliveries = backend.fetch_many("w", ["default"], 3)
    assert len(deliveries) == 3
    for delivery in deliveries:
        process(app.runtime, "w", delivery)
        clock.advance(3)
    assert extended == [True, True, True]
    assert backend.entries("dead") == []  # none buried as expired
    assert app.status(run_id).status is RunStatus.SUCCEEDED


def test_status_and_wait_answer_for_a_compacted_run(backend: Backend) -> None:
    app = App(backend, testing="collect")
    step = app.job(name="step")(lambda: None)

    @app.job(name="flaky", retry=False)
    def flaky() -> None:
        raise KeyError("sku")

    run_id = Workflow(Chain(Group(step.s(), flaky.s().set(allow_failure=True)), step.s()),
                      app=app).run()
    app.drain()
    info = app.wait(run_id, timeout_s=1)
    assert (info.status, info.finished, info.compacted) == (RunStatus.SUCCEEDED, True, True)
    assert info.nodes == ()  # per-node detail is gone with the graph
    assert info.counts() == {"dead": 1, "succeeded": 2}
    assert info.failed == (FailedNode(1, "flaky", "KeyError", "'sku'"),)
    assert info.created_at <= info.finished_at == info.updated_at  # type: ignore[operator]


def test_a_failed_run_keeps_its_nodes_and_their_errors(backend: Backend) -> None:
    app = App(backend, testing="collect")
    broken = {"now": True}

    @app.job(name="load", retry=False)
    def load() -> None:
        if broken["now"]:
            raise ValueError("bad row")

    after = app.job(name="after")(lambda: None)
    run_id = Workflow(Chain(load.s(), after.s()), app=app).run()
    app.drain()
    info = app.status(run_id)
    assert (info.status, info.finished, info.compacted) == (RunStatus.FAILED, True, False)
    assert [str(n.status) for n in info.nodes] == ["dead", "skipped"]
    assert info.failed == (FailedNode(0, "load", "ValueError", "bad row"),)
    broken["now"] = False
    assert app.retry_dead(f"{run_id}.0")  # the kept graph lets the run resume
    app.drain()
    assert app.status(run_id).status is RunStatus.SUCCEEDED


def test_memory_is_cleared_with_the_success_unless_kept(backend: Backend) -> None:
    for keep in (False, True):
        app = App(backend, testing="collect", keep_memory=keep)
        step = app.job(name="step")(lambda: None)
        run_id = Workflow(step.s(), app=app, memory={"seed": 1}).run()
        app.drain()
        assert app.memory(run_id) == ({"seed": 1} if keep else {})


def test_a_late_copy_of_a_step_of_a_compacted_run_is_skipped(backend: Backend) -> None:
    app = App(backend, testing="collect")
    calls: list[str] = []
    step = app.job(name="step")(calls.append)
    run_id = Workflow(Chain(step.s("a"), step.s("b")), app=app).run()
    copy = decode(backend.peek("default")[0])
    app.drain()
    backend.push([copy])  # redelivered after the run finished (a recovered duplicate)
    app.drain()
    assert calls == ["a", "b"]  # acked without running, not buried as expired
    assert backend.entries("dead") == []
    assert backend.in_progress("drain") == []
    assert app.status(run_id).compacted


def test_a_retrying_copy_of_a_step_of_a_compacted_run_is_skipped(backend: Backend) -> None:
    app = App(backend, testing="collect")
    calls: list[int] = []

    @app.job(name="once")
    def once() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("first copy fails")

    run_id = Workflow(once.s(), app=app).run()
    backend.push([decode(backend.peek("default")[0])])  # two copies of the step
    app.drain(run_scheduled=False)  # copy 1 fails (retry set), copy 2 finishes the run
    assert [e.payload.jid for e in backend.entries("retry")] == [f"{run_id}.0"]
    app.drain()  # the retry comes due after the run was compacted
    assert calls == [0, 1]
    assert backend.entries("dead") == []
    assert app.status(run_id).status is RunStatus.SUCCEEDED


def test_finished_ttl_s_sets_how_long_a_finished_run_lingers(
        backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDELINE_FINISHED_TTL_S", "40")
    clock = FakeClock()
    app = App(backend, testing="collect", clock=clock)
    assert (app.finished_ttl_s, App(backend, finished_ttl_s=5).finished_ttl_s) == (40, 5)
    step = app.job(name="step")(lambda: None)
    run_id = Workflow(step.s(), app=app).run()
    app.drain()
    clock.advance(39)
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    clock.advance(2)
    with pytest.raises(RunExpired):
        app.status(run_id)


def test_cancel_compacts_the_run_and_clears_its_memory(backend: Backend) -> None:
    app = App(backend, testing="collect")
    step = app.job(name="step")(lambda: None)
    run_id = Workflow(Chain(step.s(), step.s()), app=app, memory={"seed": 1}).run()
    assert app.cancel(run_id) is True
    info = app.status(run_id)
    assert (info.status, info.compacted, info.counts()) == (RunStatus.CANCELLED, True,
                                                            {"cancelled": 2})
    assert app.memory(run_id) == {}
    assert app.cancel(run_id) is False
    assert app.drain() == 1  # the queued step is acked without running
