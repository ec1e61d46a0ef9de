"""The run state machine with plain data: releases, idempotence, failure, revive, cancel."""

from __future__ import annotations

import pytest

from sideline.core.errors import WorkflowError
from sideline.core.jobs import Signature
from sideline.core.run import (
    RUN_TTL_HEADROOM,
    Begin,
    FailedNode,
    NodeError,
    NodeStatus,
    Release,
    RunPlan,
    RunState,
    RunStatus,
    RunSummary,
    Transition,
    apply,
    next_expiry,
    plan_begin,
    plan_cancel,
    plan_complete,
    plan_fail,
    plan_revive,
    start,
    summarize,
)
from sideline.core.workflow import Chain, Group, Step, WithDelay, compile

S, Q, P, D, K = (NodeStatus.SUCCEEDED, NodeStatus.QUEUED, NodeStatus.PENDING, NodeStatus.DEAD,
                 NodeStatus.SKIPPED)


def sig(label: str, allow_failure: bool = False) -> Signature:
    return Signature("job", (label,), allow_failure=allow_failure)


def new_run(tree: Step) -> RunState:
    graph = compile(tree)
    plan = RunPlan("r1", graph, tuple("{}" for _ in graph.nodes), '{"cb": "s"}', '{"cb": "f"}')
    state, transition = start(plan, 0.0)
    apply(state, transition, 0.0)
    return state


def step(state: RunState, transition_fn: object, *args: int) -> object:
    transition = transition_fn(state, *args)  # type: ignore[operator]
    apply(state, transition, 1.0)
    return transition


def diamond() -> RunState:
    return new_run(Chain(sig("A"), Group(sig("B"), sig("C")), sig("D")))


def test_start_releases_entry_nodes_with_their_delays() -> None:
    graph = compile(Group(sig("A"), WithDelay(sig("B"), 30)))
    plan = RunPlan("r", graph, ("{}", "{}"))
    state, transition = start(plan, 0.0)
    assert transition.releases == (Release(0, 0), Release(1, 30))
    assert transition.nodes == {0: NodeStatus.QUEUED, 1: NodeStatus.SCHEDULED}
    assert state.remaining == [0, 0]


def test_group_releases_its_successor_only_after_every_member() -> None:
    state = diamond()
    assert step(state, plan_complete, 0).releases == (Release(1, 0), Release(2, 0))
    assert step(state, plan_complete, 1).releases == ()
    assert state.remaining[3] == 1
    final = step(state, plan_complete, 2)
    assert final.releases == (Release(3, 0),)
    assert step(state, plan_complete, 3).callback == "success"
    assert state.status is RunStatus.SUCCEEDED
    assert state.finished_at == 1.0


def test_completing_twice_counts_once_and_never_releases_early() -> None:
    state = diamond()
    step(state, plan_complete, 0)
    step(state, plan_complete, 1)
    again = step(state, plan_complete, 1)
    assert again.noop  # type: ignore[attr-defined]
    assert state.remaining[3] == 1
    assert state.nodes[3] is NodeStatus.PENDING


def test_empty_run_succeeds_at_start_and_fires_success() -> None:
    graph = compile(Chain())
    _state, transition = start(RunPlan("r", graph, ()), 0.0)
    assert (transition.status, transition.callback, transition.finished) == (
        RunStatus.SUCCEEDED, "success", True)


def test_death_fails_the_run_skips_dependants_and_fires_failure_once() -> None:
    state = new_run(Chain(sig("A"), Group(sig("B"), sig("C")), sig("D")))
    step(state, plan_complete, 0)
    died = step(state, plan_fail, 1)
    assert died.callback == "failure"  # type: ignore[attr-defined]
    assert state.status is RunStatus.FAILED
    assert state.nodes == [S, D, Q, K]
    assert state.finished_at is None  # C still runs
    step(state, plan_complete, 2)
    assert state.remaining[3] == 1
    assert state.nodes[3] is K
    assert state.finished_at == 1.0
    assert step(state, plan_fail, 1).noop  # type: ignore[attr-defined]


def test_revived_dead_node_that_succeeds_resumes_the_run() -> None:
    state = new_run(Chain(sig("A"), sig("B"), sig("C")))
    step(state, plan_complete, 0)
    step(state, plan_fail, 1)
    revived = step(state, plan_revive, 1)
    assert revived.status is RunStatus.RUNNING  # type: ignore[attr-defined]
    assert state.nodes == [S, Q, P]
    assert state.finished_at is None
    assert step(state, plan_complete, 1).releases == (Release(2, 0),)  # type: ignore[attr-defined]
    assert step(state, plan_complete, 2).callback == "success"  # type: ignore[attr-defined]


def test_second_death_does_not_fire_failure_again() -> None:
    state = new_run(Group(sig("A"), sig("B")))
    assert step(state, plan_fail, 0).callback == "failure"  # type: ignore[attr-defined]
    assert step(state, plan_fail, 1).callback is None  # type: ignore[attr-defined]


def test_revive_keeps_nodes_skipped_that_another_dead_node_still_blocks() -> None:
    state = new_run(Chain(Group(sig("A"), sig("B")), sig("C")))
    step(state, plan_fail, 0)
    step(state, plan_fail, 1)
    step(state, plan_revive, 0)
    assert state.nodes == [Q, D, K]
    assert state.status is RunStatus.FAILED


def test_allowed_failure_lets_the_run_continue_and_succeed() -> None:
    state = new_run(Chain(sig("A", allow_failure=True), sig("B")))
    died = step(state, plan_fail, 0)
    assert died.releases == (Release(1, 0),)  # type: ignore[attr-defined]
    assert state.status is RunStatus.RUNNING
    assert step(state, plan_complete, 1).callback == "success"  # type: ignore[attr-defined]


def test_cancel_stops_waiting_nodes_and_later_completions_release_nothing() -> None:
    state = new_run(Chain(sig("A"), sig("B")))
    assert plan_begin(state, 0)[0] is Begin.RUN
    step(state, plan_begin_transition, 0)
    cancelled = step(state, plan_cancel)
    assert cancelled.status is RunStatus.CANCELLED  # type: ignore[attr-defined]
    assert state.nodes == [NodeStatus.RUNNING, NodeStatus.CANCELLED]
    assert step(state, plan_complete, 0).releases == ()  # type: ignore[attr-defined]
    assert plan_begin(state, 1)[0] is Begin.SKIP
    assert plan_cancel(state).noop


def test_begin_skips_a_node_that_already_succeeded() -> None:
    state = new_run(Chain(sig("A"), sig("B")))
    step(state, plan_complete, 0)
    assert plan_begin(state, 0) == (Begin.SKIP, Transition())


def plan_begin_transition(state: RunState, node_id: int) -> object:
    return plan_begin(state, node_id)[1]


def test_allowed_failure_retried_by_hand_does_not_release_successors_twice() -> None:
    state = new_run(Chain(sig("A", allow_failure=True), sig("B")))
    step(state, plan_fail, 0)
    assert step(state, plan_revive, 0).noop  # type: ignore[attr-defined]
    late = step(state, plan_complete, 0)
    assert late.releases == ()  # type: ignore[attr-defined]
    assert state.nodes[0] is S
    assert state.remaining[1] == 0


# -- expiry, linger and the summary -------------------------------------------------------


def timed_run(tree: Step, ttl_s: int = 60, finished_ttl_s: int = 10) -> tuple[RunState, float]:
    graph = compile(tree)
    plan = RunPlan("r1", graph, tuple("{}" for _ in graph.nodes), ttl_s=ttl_s,
                   finished_ttl_s=finished_ttl_s)
    state, transition = start(plan, 0.0)
    apply(state, transition, 0.0)
    return state, next_expiry(state, transition, 0.0 + ttl_s, 0.0)


def advance(state: RunState, transition: Transition, expires_at: float, now: float) -> float:
    apply(state, transition, now)
    return next_expiry(state, transition, expires_at, now)


def test_an_advance_pushes_the_expiry_back_but_never_forward() -> None:
    state, expires = timed_run(Group(sig("A"), sig("B"), sig("C")), ttl_s=2)
    expires = max(expires, 0.0 + 30)  # extend_run_ttl(30) from inside a member
    expires = advance(state, plan_complete(state, 0), expires, 3.0)
    assert expires == 30.0  # not 3 + 2
    expires = advance(state, plan_complete(state, 1), expires, 40.0)
    assert expires == pytest.approx(40.0 + 2 * (1 + RUN_TTL_HEADROOM))


def test_a_change_with_a_whole_ttl_left_keeps_the_expiry() -> None:
    # The headroom: pushed back to now + 1.1 x ttl, the expiry is left alone by every
    # change until less than ttl remains, so steps in a row write no TTLs.
    state, expires = timed_run(Chain(sig("A"), sig("B"), sig("C")), ttl_s=100)
    assert expires == 100.0
    expires = advance(state, plan_begin(state, 0)[1], expires, 1.0)
    assert expires == pytest.approx(1.0 + 110.0)  # found 99 left: pushed back
    for now in (2.0, 5.0, 11.0):
        expires = advance(state, plan_begin(state, 0)[1], expires, now)
        assert expires == pytest.approx(111.0)  # found >= 100 left: kept
    expires = advance(state, plan_complete(state, 0), expires, 11.5)
    assert expires == pytest.approx(11.5 + 110.0)  # found 99.5 left


def test_finishing_sets_the_linger_and_touching_a_finished_run_keeps_it() -> None:
    state, expires = timed_run(Chain(sig("A"), sig("B")), ttl_s=600, finished_ttl_s=10)
    expires = advance(state, plan_fail(state, 0), expires, 5.0)  # failed, all settled
    assert (state.finished_at, expires) == (5.0, 15.0)  # the linger replaces the 660
    expires = advance(state, plan_begin(state, 0)[1], expires, 8.0)  # a stray copy
    assert expires == 15.0
    expires = advance(state, plan_revive(state, 0), expires, 9.0)  # open again
    assert expires == 9.0 + 600 * (1 + RUN_TTL_HEADROOM)


def test_only_a_succeeded_or_cancelled_finish_compacts() -> None:
    state = new_run(Chain(sig("A"), sig("B")))
    assert not step(state, plan_complete, 0).compacts  # type: ignore[attr-defined]
    assert step(state, plan_complete, 1).compacts  # type: ignore[attr-defined]
    failed = new_run(sig("A"))
    died = step(failed, plan_fail, 0)
    assert died.finished  # type: ignore[attr-defined]
    assert not died.compacts  # type: ignore[attr-defined]
    assert step(failed, plan_cancel).compacts  # type: ignore[attr-defined]


def test_summary_counts_nodes_and_lists_the_dead_with_their_errors() -> None:
    state = new_run(Chain(Group(sig("A", allow_failure=True), sig("B")), sig("C")))
    died = plan_fail(state, 0, NodeError("KeyError", "'sku'"))
    assert died.errors == {0: NodeError("KeyError", "'sku'")}
    apply(state, died, 1.0)
    step(state, plan_complete, 1)
    apply(state, plan_complete(state, 2), 2.0)
    assert summarize(state) == RunSummary(
        "r1", RunStatus.SUCCEEDED, 0.0, 2.0, 2.0, {"dead": 1, "succeeded": 2},
        (FailedNode(0, "job", "KeyError", "'sku'"),))


def test_a_late_death_records_no_error() -> None:
    state = new_run(sig("A"))
    step(state, plan_complete, 0)
    assert plan_fail(state, 0, NodeError("E", "late")).noop


def test_an_unfinished_run_has_no_summary() -> None:
    with pytest.raises(WorkflowError, match="has not finished"):
        summarize(new_run(sig("A")))
