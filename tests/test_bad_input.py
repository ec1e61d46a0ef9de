"""Bad input gets a clear error and loses nothing: malformed payloads, unknown jobs, dead steps."""

from __future__ import annotations

import time

import pytest

from sideline import App, Chain, Group, MemoryBackend, NodeStatus, RunExpired, RunStatus, Workflow

from .conftest import FakeClock


def test_garbage_on_a_queue_goes_to_the_dead_set_and_the_worker_keeps_going() -> None:
    backend = MemoryBackend()
    app = App(backend)
    ran: list[int] = []
    app.job(name="rec")(ran.append)
    backend.push_raw("default", "this is not json")
    backend.push_raw("default", '{"name": "rec"}')
    app.enqueue("rec", [7])
    with app.worker(concurrency=1, fetch_timeout_s=0.05) as worker:
        deadline = time.monotonic() + 5
        while worker.processed < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert ran == [7]
    dead = [e.payload for e in backend.entries("dead")]
    assert [p.name for p in dead] == ["<undecodable>", "<undecodable>"]
    assert dead[0].args == ["this is not json"]  # the original text is kept
    assert dead[0].dead_reason is not None
    assert dead[0].dead_reason.startswith("undecodable payload: payload is not valid JSON")
    assert dead[1].dead_reason == (
        "undecodable payload: payload lacks string field(s) jid, queue: '{\"name\": \"rec\"}'")
    assert backend.in_progress(worker.worker_id) == []


def test_unknown_job_name_goes_to_the_dead_set_without_importing_anything() -> None:
    app = App(testing="collect")
    app.backend.push_raw(  # type: ignore[attr-defined]
        "default", '{"name": "os.system", "jid": "j1", "queue": "default", "args": ["echo pwned"]}')
    assert app.drain() == 1
    [entry] = app.backend.entries("dead")
    assert entry.payload.args == ["echo pwned"]
    assert entry.payload.dead_reason == (
        "unknown job 'os.system': no job of that name is declared in this worker's app "
        "(declare it with @app.job, and make sure the worker imports that module)")
    assert entry.payload.error_class == "UnknownJob"


def test_step_that_keeps_failing_fails_the_run_and_dependants_never_run() -> None:
    app = App(testing="collect")
    ran: list[str] = []
    failures: list[str] = []

    @app.job(name="ok")
    def ok(label: str) -> None:
        ran.append(label)

    @app.job(name="bad", retry=2)
    def bad(label: str) -> None:
        ran.append(label)
        raise RuntimeError(f"{label} cannot work")

    @app.job(name="on_failure")
    def on_failure(run_id: str) -> None:
        failures.append(run_id)

    run_id = Workflow(Chain(ok.s("A"), Group(bad.s("B"), ok.s("C")), ok.s("D")),
                      on_failure=on_failure.s()).run()
    app.drain()
    assert sorted(ran) == ["A", "B", "B", "B", "C"]  # B: first try + 2 retries; D never
    info = app.status(run_id)
    assert info.status is RunStatus.FAILED
    assert [n.status for n in info.nodes] == [
        NodeStatus.SUCCEEDED, NodeStatus.DEAD, NodeStatus.SUCCEEDED, NodeStatus.SKIPPED]
    assert info.finished
    assert failures == [run_id]
    [dead] = app.backend.entries("dead")
    assert (dead.payload.run_id, dead.payload.node_id, dead.payload.dead_reason) == (
        run_id, 1, "retries exhausted (2) after RuntimeError: B cannot work")


def test_dead_step_retried_by_hand_resumes_the_run() -> None:
    app = App(testing="collect")
    state = {"broken": True}

    @app.job(name="step")
    def step(label: str) -> None:
        if label == "B" and state["broken"]:
            raise RuntimeError("not yet")

    run_id = Workflow(Chain(step.s("A"), step.s("B"), step.s("C"))).run()
    app.drain()
    assert app.status(run_id).status is RunStatus.FAILED
    state["broken"] = False
    [dead] = app.backend.entries("dead")
    assert app.backend.retry_dead(dead.payload.jid, app.clock.now())
    assert app.status(run_id).status is RunStatus.RUNNING
    app.drain()
    info = app.status(run_id)
    assert info.status is RunStatus.SUCCEEDED
    assert info.counts() == {"succeeded": 3}


def test_job_of_an_expired_run_is_buried_with_the_reason_never_run(clock: FakeClock) -> None:
    app = App(testing="collect", clock=clock, run_ttl_s=60)
    ran: list[str] = []
    rec = app.job(name="rec")(ran.append)
    run_id = Workflow(Chain(rec.s("A"), rec.s("B"))).run()
    clock.advance(61)
    app.drain()
    assert ran == []
    [dead] = app.backend.entries("dead")
    assert dead.payload.dead_reason == (
        f"run {run_id!r} has no state: it expired or never existed "
        "(its jobs are not treated as succeeded)")
    with pytest.raises(RunExpired):
        app.status(run_id)

