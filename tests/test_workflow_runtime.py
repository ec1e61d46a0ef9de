"""Workflow runtime: callbacks, cancel, client middleware on steps, app.retry_dead."""

from __future__ import annotations

import time

import attrs
import pytest

from sideline import (
    App,
    Chain,
    ConfigurationError,
    Group,
    JobRejected,
    NodeStatus,
    Payload,
    RunStatus,
    Signature,
    UnknownJob,
    WithDelay,
    Workflow,
    WorkflowError,
)


def test_success_callback_gets_the_run_id_once() -> None:
    app = App(testing="inline")
    calls: list[tuple[str, str]] = []
    step = app.job(name="step")(lambda: None)
    done = app.job(name="done")(lambda run_id, note: calls.append((run_id, note)))
    run_id = Workflow(Chain(step.s(), Group(step.s(), step.s())), on_success=done.s("ok")).run()
    assert calls == [(run_id, "ok")]
    assert app.status(run_id).status is RunStatus.SUCCEEDED


def test_empty_workflow_succeeds_at_once_and_fires_success() -> None:
    app = App(testing="inline")
    calls: list[str] = []
    done = app.job(name="done")(calls.append)
    run_id = Workflow(Chain(Group(), Chain()), app=app, on_success=done.s()).run()
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    assert calls == [run_id]


def test_workflow_without_app_is_refused() -> None:
    with pytest.raises(WorkflowError, match="Workflow needs an app"):
        Workflow(Chain())


def test_unknown_job_in_a_tree_fails_at_definition() -> None:
    app = App()
    with pytest.raises(UnknownJob, match="unknown job 'ghost'"):
        Workflow(Signature("ghost"), app=app)


def test_cancel_stops_the_run_and_removes_delayed_steps() -> None:
    app = App(testing="collect")
    ran: list[str] = []
    step = app.job(name="step")(ran.append)
    run_id = Workflow(Chain(step.s("A"), WithDelay(step.s("B"), 60_000))).run()
    app.drain(run_scheduled=False)
    assert ran == ["A"]
    # Per-node state is there while the run can progress; a cancelled run is compacted.
    before = app.status(run_id)
    assert [n.status for n in before.nodes] == [NodeStatus.SUCCEEDED, NodeStatus.SCHEDULED]
    assert app.cancel(run_id) is True
    assert app.cancel(run_id) is False
    app.drain()
    assert ran == ["A"]
    info = app.status(run_id)
    assert info.status is RunStatus.CANCELLED
    assert info.compacted
    assert info.nodes == ()
    # A had succeeded, so the one cancelled node is the delayed B.
    assert info.counts() == {"succeeded": 1, "cancelled": 1}


def test_client_middleware_sees_every_workflow_step_and_callback() -> None:
    app = App(testing="collect")
    step = app.job(name="step")(lambda: None)
    done = app.job(name="done")(lambda run_id: None)

    def tag(payload: Payload) -> Payload:
        return attrs.evolve(payload, tags=[*payload.tags, "audited"])

    app.client_middleware.append(tag)
    run_id = Workflow(Chain(step.s(), step.s()), on_success=done.s()).run()
    seen: list[list[str]] = []
    app.server_middleware.append(lambda ctx, call_next: (seen.append(ctx.payload.tags),
                                                         call_next())[1])
    app.drain()
    assert seen == [["audited"]] * 3
    assert app.status(run_id).status is RunStatus.SUCCEEDED


def test_client_middleware_cannot_drop_a_step_but_can_refuse_the_run() -> None:
    app = App(testing="collect")
    step = app.job(name="step")(lambda n: None)
    app.client_middleware.append(lambda p: None if p.args == [2] else p)
    with pytest.raises(WorkflowError, match="cannot skip a step"):
        Workflow(Chain(step.s(1), step.s(2))).run()

    def refuse(payload: Payload) -> Payload:
        raise JobRejected("maintenance window")

    app.client_middleware[:] = [refuse]
    with pytest.raises(JobRejected, match="maintenance window"):
        Workflow(Chain(step.s(1))).run()
    assert app.backend.queue_sizes() == {}  # nothing was stored or pushed


def test_app_retry_dead_revives_the_run_and_runs_inline() -> None:
    app = App(testing="inline")
    broken = {"B": True}

    @app.job(name="step", retry=False)
    def step(label: str) -> None:
        if broken.get(label):
            raise RuntimeError(f"{label} broken")

    run_id = Workflow(Chain(step.s("A"), step.s("B"), step.s("C"))).run()
    assert app.status(run_id).status is RunStatus.FAILED
    broken["B"] = False
    [dead] = app.backend.entries("dead")
    assert app.retry_dead(dead.payload.jid) is True
    assert app.status(run_id).status is RunStatus.SUCCEEDED
    assert app.retry_dead(dead.payload.jid) is False


def test_stopping_an_idle_worker_does_not_wait_for_the_fetch_timeout() -> None:
    app = App()
    worker = app.worker(concurrency=4, fetch_timeout_s=10).start()
    time.sleep(0.05)
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < 5  # woken, not waiting out the 10 s fetch


def test_a_stopped_worker_cannot_start_again() -> None:
    worker = App().worker(concurrency=1, fetch_timeout_s=0.05).start()
    worker.stop()
    with pytest.raises(ConfigurationError, match="cannot start again"):
        worker.start()
