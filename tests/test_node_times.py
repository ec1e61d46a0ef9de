"""Per-node times, attempts and errors in a run's status; the runs index; `sideline status`.

Each test runs on the memory backend and on a fakeredis-backed one: the Lua scripts
must record what core.run.apply and the memory backend's begin_node record.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator

import pytest

from sideline import App, Chain, RunStatus, Workflow
from sideline.cli import _print_run, main
from sideline.core.ports import Backend
from sideline.core.run import NodeStatus, RunSummary
from sideline.runtime.workflows import runs
from tests.conftest import FakeClock
from tests.support import memory_or_fake_backend


@pytest.fixture(params=["memory", "fakeredis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from memory_or_fake_backend(request.param)


def _failing_run(backend: Backend) -> tuple[App, str]:
    """Chain(flaky, ok, bad): flaky fails once then succeeds (2 attempts), bad dies. Each
    job takes 2 s of the fake clock; the run fails and so keeps its per-node state."""
    clock = FakeClock(1_000.0)
    app = App(backend, testing="collect", clock=clock)
    calls: list[str] = []

    @app.job(name="flaky")
    def flaky() -> None:
        calls.append("flaky")
        clock.advance(2)
        if calls.count("flaky") == 1:
            raise RuntimeError("first try fails")

    @app.job(name="ok")
    def ok() -> None:
        clock.advance(2)

    @app.job(name="bad", retry=False)
    def bad() -> None:
        clock.advance(2)
        raise KeyError("customer_id")

    run_id = Workflow(Chain(flaky.s(), ok.s(), bad.s(), ok.s()), app=app).run()
    app.drain()
    return app, run_id


def test_times_attempts_and_errors_after_a_retry_and_a_death(backend: Backend) -> None:
    app, run_id = _failing_run(backend)
    info = app.status(run_id)
    assert (info.status, info.compacted) == (RunStatus.FAILED, False)
    flaky, ok, bad, never = info.nodes
    # flaky began at 1000, failed at 1002 (still running: a retry), succeeded at 1004
    assert (flaky.status, flaky.attempts, flaky.started_at, flaky.ended_at) == (
        NodeStatus.SUCCEEDED, 2, 1_000.0, 1_004.0)
    assert flaky.duration_s == 4.0
    assert (flaky.error_class, flaky.error_message) == (None, None)
    assert (ok.attempts, ok.started_at, ok.ended_at, ok.duration_s) == (1, 1_004.0, 1_006.0, 2.0)
    assert (bad.status, bad.attempts, bad.started_at, bad.ended_at) == (
        NodeStatus.DEAD, 1, 1_006.0, 1_008.0)
    assert (bad.error_class, bad.error_message) == ("KeyError", "'customer_id'")
    assert (never.status, never.attempts, never.started_at, never.ended_at,
            never.duration_s) == (NodeStatus.SKIPPED, 0, None, None, None)


def test_a_revived_node_starts_again_and_counts_the_attempt(backend: Backend) -> None:
    clock = FakeClock(1_000.0)
    app = App(backend, testing="collect", clock=clock)
    broken = {"now": True}

    @app.job(name="load", retry=False)
    def load() -> None:
        clock.advance(1)
        if broken["now"]:
            raise ValueError("bad row")

    @app.job(name="bad", retry=False)
    def bad() -> None:
        raise KeyError("x")  # keeps the run failed (not compacted) after the revive

    run_id = Workflow(Chain(load.s(), bad.s()), app=app).run()
    app.drain()
    dead = app.status(run_id).nodes[0]
    assert (dead.attempts, dead.started_at, dead.ended_at) == (1, 1_000.0, 1_001.0)
    assert (dead.error_class, dead.error_message) == ("ValueError", "bad row")
    broken["now"] = False
    clock.advance(10)
    assert app.retry_dead(f"{run_id}.0")
    queued = app.status(run_id).nodes[0]  # revived: queued, its last run's times kept
    assert (queued.status, queued.attempts, queued.started_at, queued.ended_at) == (
        NodeStatus.QUEUED, 1, 1_000.0, 1_001.0)
    assert (queued.error_class, queued.duration_s) == (None, 1.0)  # only the dead report it
    app.drain()
    load_node, bad_node = app.status(run_id).nodes
    assert (load_node.status, load_node.attempts, load_node.started_at, load_node.ended_at) == (
        NodeStatus.SUCCEEDED, 2, 1_011.0, 1_012.0)
    assert (bad_node.status, bad_node.attempts, bad_node.error_class) == (
        NodeStatus.DEAD, 1, "KeyError")


def test_the_runs_index_lists_newest_first_with_pages_and_a_status_filter(
        backend: Backend) -> None:
    clock = FakeClock(1_000.0)
    app = App(backend, testing="collect", clock=clock)
    ok = app.job(name="ok")(lambda: None)

    @app.job(name="bad", retry=False)
    def bad() -> None:
        raise KeyError("x")

    created = []
    for i in range(7):
        clock.advance(1)
        created.append(Workflow((bad if i % 3 == 0 else ok).s(), app=app).run())
    app.drain()
    newest_first = created[::-1]
    assert [r.run_id for r in runs(app)] == newest_first
    assert [r.run_id for r in runs(app, page=1, per_page=3)] == newest_first[:3]
    assert [r.run_id for r in runs(app, page=3, per_page=3)] == newest_first[6:]
    failed = [created[i] for i in (6, 3, 0)]
    assert [r.run_id for r in runs(app, status="failed")] == failed
    assert [r.run_id for r in runs(app, RunStatus.FAILED, page=2, per_page=2)] == failed[2:]
    succeeded = runs(app, status=RunStatus.SUCCEEDED)
    assert [r.compacted for r in succeeded] == [True] * 4
    with pytest.raises(ValueError, match="page"):
        runs(app, page=0)


def test_runs_that_are_gone_are_dropped_from_the_index(backend: Backend) -> None:
    clock = FakeClock(1_000.0)
    app = App(backend, testing="collect", clock=clock, finished_ttl_s=10)
    ok = app.job(name="ok")(lambda: None)
    for _ in range(3):
        Workflow(ok.s(), app=app).run()
    app.drain()  # the three succeed: their summaries linger 10 s
    clock.advance(60)
    fresh = Workflow(ok.s(), app=app).run()
    [only] = backend.recent_runs(0, 10, clock.now())  # the three old ones are dropped
    assert not isinstance(only, RunSummary)
    assert only.plan.run_id == fresh
    assert backend.recent_runs(1, 10, clock.now()) == []
    assert [r.run_id for r in runs(app)] == [fresh]


def test_cli_status_prints_attempts_times_and_errors(
        backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    app, run_id = _failing_run(backend)
    _print_run(app.status(run_id))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[1:5]] == [
        ["node", "0", "succeeded"], ["node", "1", "succeeded"], ["node", "2", "dead"],
        ["node", "3", "skipped"]]
    assert "attempts=2  started=1970-01-01T00:16:40.000+00:00  " \
           "ended=1970-01-01T00:16:44.000+00:00  (4.00 s)" in lines[1]
    assert lines[3].endswith("attempts=1  started=1970-01-01T00:16:46.000+00:00  "
                             "ended=1970-01-01T00:16:48.000+00:00  (2.00 s)  "
                             "error=KeyError: 'customer_id'")
    assert lines[4].endswith("attempts=0")
    assert lines[5:] == ["  failed node   2  bad  KeyError: 'customer_id'"]


def test_cli_status_json_has_the_node_details(
        backend: Backend, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    module = types.ModuleType("node_times_cliapp")
    app, run_id = _failing_run(backend)
    module.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert main(["status", run_id, "--app", f"{module.__name__}:app", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["nodes"] == {"0": "succeeded", "1": "succeeded", "2": "dead", "3": "skipped"}
    assert data["node_details"]["0"] == {
        "status": "succeeded", "started_at": 1_000.0, "ended_at": 1_004.0, "duration_s": 4.0,
        "attempts": 2, "error_class": None, "error_message": None}
    assert data["node_details"]["2"]["error_class"] == "KeyError"
    assert data["node_details"]["3"]["attempts"] == 0
