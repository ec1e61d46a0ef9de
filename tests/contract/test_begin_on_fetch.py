"""A workflow step begun by the call that fetches it (QueuePort.fetch's `begin_at`,
SettlePort.settle's `begin_next`): the same effects as a separate begin_node, one round
trip fewer per step. Every adapter."""

from __future__ import annotations

import pytest

from sideline.core.errors import RunExpired, WorkflowError
from sideline.core.payload import decode, encode
from sideline.core.ports import Backend, Delivery, begun
from sideline.core.run import Begin, NodeStatus, RunState
from sideline.core.settlement import Action, NodeEvent, Settlement
from sideline.core.workflow import Chain, Group

from .helpers import new_run, payload, sig


def state(backend: Backend, run_id: str, now: float) -> RunState:
    stored = backend.get_run(run_id, now)
    assert isinstance(stored, RunState)
    return stored


def test_fetch_begins_a_workflow_step_at_the_clock(backend: Backend) -> None:
    run, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(run, transition, 100.0)
    delivery = backend.fetch("w", ["default"], 0, begin_at=lambda: 100.5)
    assert delivery is not None
    assert delivery.begun == "run"
    stored = state(backend, "run1", 100.5)
    assert stored.nodes[0] is NodeStatus.RUNNING
    assert stored.attempts == {0: 1}
    assert stored.started_at.get(0) == 100.5


def test_fetch_without_a_clock_begins_nothing(backend: Backend) -> None:
    run, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(run, transition, 100.0)
    delivery = backend.fetch("w", ["default"], 0)
    assert delivery is not None
    assert delivery.begun is None
    assert state(backend, "run1", 100.5).nodes[0] is NodeStatus.QUEUED


def test_a_plain_job_is_not_begun(backend: Backend) -> None:
    backend.push([payload("j1")])
    [delivery] = backend.fetch_many("w", ["default"], 1, 0, lambda: 100.0)
    assert delivery.begun is None


def test_a_copy_of_a_succeeded_step_is_to_be_skipped(backend: Backend) -> None:
    run, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(run, transition, 100.0)
    delivery = backend.fetch("w", ["default"], 0, begin_at=lambda: 100.5)
    assert delivery is not None
    backend.complete_node("w", delivery, "run1", 0, 101.0)
    backend.push_raw("default", delivery.raw)  # a redelivered copy
    backend.fetch("w", ["default"], 0)  # node 1, not begun here
    copy = backend.fetch("w", ["default"], 0, begin_at=lambda: 101.5)
    assert copy is not None
    assert (decode(copy.raw).node_id, copy.begun) == (0, "skip")
    assert state(backend, "run1", 101.5).attempts == {0: 1}


def test_an_expired_run_and_a_missing_node_are_reported_not_applied(backend: Backend) -> None:
    run, transition = new_run(Chain(sig("A"), sig("B")), ttl_s=60)
    backend.create_run(run, transition, 100.0)
    backend.push([payload("forged", run_id="run1", node_id=7)])
    backend.fetch("w", ["default"], 0)  # node 0
    forged = backend.fetch("w", ["default"], 0, begin_at=lambda: 100.5)
    assert forged is not None
    assert forged.begun == "missing"
    backend.push([payload("late", run_id="run1", node_id=1)])
    late = backend.fetch("w", ["default"], 0, begin_at=lambda: 1000.0)
    assert late is not None
    assert late.begun == "expired"


def test_prefetched_jobs_are_not_begun(backend: Backend) -> None:
    run, transition = new_run(Group(sig("A"), sig("B"), sig("C")))
    backend.create_run(run, transition, 100.0)
    found = backend.fetch_many("w", ["default"], 1, 2, lambda: 100.5)
    assert [(d.prefetched, d.begun) for d in found] == [(False, "run"), (True, None),
                                                        (True, None)]
    assert state(backend, "run1", 100.5).nodes == [NodeStatus.RUNNING, NodeStatus.QUEUED,
                                                   NodeStatus.QUEUED]


def test_settle_begins_the_next_step_even_of_another_run(backend: Backend) -> None:
    first, transition = new_run(Chain(sig("A"), sig("B")), run_id="r1")
    backend.create_run(first, transition, 100.0)
    delivery = backend.fetch("w", ["default"], 0, begin_at=lambda: 100.0)
    assert delivery is not None
    second, transition = new_run(Chain(sig("X"), sig("Y")), run_id="r2")
    backend.create_run(second, transition, 100.0)  # queued behind nothing: r2.0 is next
    settlement = Settlement(Action.ACK, decode(delivery.raw), node=NodeEvent.SUCCEEDED)
    settled = backend.settle("w", delivery, settlement, 101.0, ["default"], begin_next=True)
    assert settled.next is not None
    taken = decode(settled.next.raw)
    assert (taken.run_id, taken.node_id, settled.next.begun) == ("r2", 0, "run")
    assert state(backend, "r2", 101.0).nodes[0] is NodeStatus.RUNNING
    assert state(backend, "r1", 101.0).nodes == [NodeStatus.SUCCEEDED, NodeStatus.QUEUED]
    plain = backend.settle("w", settled.next, Settlement(Action.ACK, taken,
                                                         node=NodeEvent.SUCCEEDED),
                           102.0, ["default"])
    assert plain.next is not None
    assert plain.next.begun is None  # not asked to begin it


def test_begun_is_not_part_of_a_deliverys_identity() -> None:
    raw = encode(payload("j1"))
    assert Delivery(raw, "default", begun="run") == Delivery(raw, "default")
    assert hash(Delivery(raw, "default", begun="run")) == hash(Delivery(raw, "default"))


@pytest.mark.parametrize(("said", "expected"), [(None, None), ("run", Begin.RUN),
                                                ("skip", Begin.SKIP)])
def test_begun_reads_the_fetching_calls_outcome(said: str | None, expected: Begin | None) -> None:
    assert begun(Delivery("{}", "q", begun=said), "r", 0) is expected


def test_begun_raises_for_an_expired_run_or_a_missing_node() -> None:
    with pytest.raises(RunExpired):
        begun(Delivery("{}", "q", begun="expired"), "r", 0)
    with pytest.raises(WorkflowError, match="has no node 3"):
        begun(Delivery("{}", "q", begun="missing"), "r", 3)
