"""WorkflowStore contract: atomic create/advance/fail/cancel with the pushes they cause."""

from __future__ import annotations

import pytest

from sideline.core.errors import RunExpired
from sideline.core.payload import decode
from sideline.core.ports import Backend, Delivery
from sideline.core.run import Begin, NodeStatus, RunStatus
from sideline.core.workflow import Chain, Group, WithDelay

from .helpers import new_run, payload, sig


def fetch_node(backend: Backend, worker: str = "w", queue: str = "default") -> tuple[Delivery, int]:
    delivery = backend.fetch(worker, [queue], 0)
    assert delivery is not None
    node_id = decode(delivery.raw).node_id
    assert node_id is not None
    return delivery, node_id


def queued_jids(backend: Backend, queue: str = "default") -> list[str]:
    return [decode(raw).jid for raw in backend.peek(queue)]


def test_create_run_pushes_entry_nodes_and_schedules_delayed_ones(backend: Backend) -> None:
    state, transition = new_run(Group(sig("A"), WithDelay(sig("B"), 1500)))
    backend.create_run(state, transition, 100.0)
    assert queued_jids(backend) == ["run1.0"]
    [scheduled] = backend.entries("scheduled")
    assert (scheduled.at, scheduled.payload.jid) == (101.5, "run1.1")
    stored = backend.get_run("run1", 100.0)
    assert stored is not None
    assert stored.nodes == [NodeStatus.QUEUED, NodeStatus.SCHEDULED]


def test_complete_acks_counts_once_and_releases_after_the_whole_group(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), Group(sig("B"), sig("C")), sig("D")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 101.0)
    assert backend.in_progress("w") == []
    assert queued_jids(backend) == ["run1.1", "run1.2"]
    b_delivery, b_node = fetch_node(backend)
    backend.complete_node("w", b_delivery, "run1", b_node, 102.0)
    again = backend.complete_node("w", b_delivery, "run1", b_node, 102.5)  # redelivered copy
    assert again.noop
    assert queued_jids(backend) == ["run1.2"]  # D not released by the duplicate
    c_delivery, c_node = fetch_node(backend)
    backend.complete_node("w", c_delivery, "run1", c_node, 103.0)
    assert queued_jids(backend) == ["run1.3"]
    d_delivery, d_node = fetch_node(backend)
    final = backend.complete_node("w", d_delivery, "run1", d_node, 104.0)
    assert final.callback == "success"
    assert queued_jids(backend, "callbacks") == ["run1.success"]
    stored = backend.get_run("run1", 104.0)
    assert stored is not None
    assert stored.status is RunStatus.SUCCEEDED


def test_released_node_payload_is_the_stored_one_with_enqueued_at(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 107.0)
    released = decode(backend.peek("default")[0])
    assert (released.args, released.run_id, released.node_id, released.enqueued_at) == (
        ["B"], "run1", 1, 107.0)


def test_begin_marks_running_and_skips_succeeded_nodes(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    assert backend.begin_node("run1", node, 100.5) is Begin.RUN
    stored = backend.get_run("run1", 100.5)
    assert stored is not None
    assert stored.nodes[0] is NodeStatus.RUNNING
    backend.complete_node("w", delivery, "run1", node, 101.0)
    assert backend.begin_node("run1", node, 101.5) is Begin.SKIP


def test_fail_buries_the_job_fails_the_run_and_fires_failure_once(backend: Backend) -> None:
    state, transition = new_run(Chain(Group(sig("A"), sig("B")), sig("C")))
    backend.create_run(state, transition, 100.0)
    a_delivery, a_node = fetch_node(backend)
    b_delivery, b_node = fetch_node(backend)
    first = backend.fail_node("w", a_delivery, payload("run1.0", run_id="run1", node_id=a_node,
                                                       dead_reason="boom"), 101.0)
    second = backend.fail_node("w", b_delivery, payload("run1.1", run_id="run1", node_id=b_node,
                                                        dead_reason="boom"), 102.0)
    assert (first.callback, second.callback) == ("failure", None)
    assert queued_jids(backend, "callbacks") == ["run1.failure"]
    assert backend.in_progress("w") == []
    assert sorted(e.payload.jid for e in backend.entries("dead")) == ["run1.0", "run1.1"]
    stored = backend.get_run("run1", 102.0)
    assert stored is not None
    assert stored.status is RunStatus.FAILED
    assert stored.nodes == [NodeStatus.DEAD, NodeStatus.DEAD, NodeStatus.SKIPPED]
    assert queued_jids(backend) == []


def test_retrying_a_dead_node_revives_the_run(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.fail_node("w", delivery, payload("run1.0", run_id="run1", node_id=node), 101.0)
    assert backend.retry_dead("run1.0", 102.0) is True
    stored = backend.get_run("run1", 102.0)
    assert stored is not None
    assert (stored.status, stored.nodes) == (RunStatus.RUNNING,
                                             [NodeStatus.QUEUED, NodeStatus.PENDING])
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 103.0)
    assert queued_jids(backend) == ["run1.1"]


def test_cancel_stops_queued_and_scheduled_nodes(backend: Backend) -> None:
    state, transition = new_run(Group(sig("A"), WithDelay(sig("B"), 5000)))
    backend.create_run(state, transition, 100.0)
    assert backend.cancel_run("run1", 100.5) is True
    assert backend.cancel_run("run1", 100.6) is False
    assert backend.entries("scheduled") == []
    _delivery, node = fetch_node(backend)
    assert backend.begin_node("run1", node, 101.0) is Begin.SKIP
    stored = backend.get_run("run1", 101.0)
    assert stored is not None
    assert stored.status is RunStatus.CANCELLED


def test_expired_run_is_an_error_never_a_release(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")), ttl_s=60)
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    assert backend.get_run("run1", 159.0) is not None
    with pytest.raises(RunExpired, match="run 'run1' has no state"):
        backend.complete_node("w", delivery, "run1", node, 161.0)
    assert backend.in_progress("w") == [delivery.raw]  # nothing acked, nothing released
    assert queued_jids(backend) == []
    assert backend.get_run("run1", 161.0) is None
    with pytest.raises(RunExpired):
        backend.begin_node("run1", node, 161.0)


def test_advancing_refreshes_the_ttl_and_extend_pushes_it_back(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B"), sig("C")), ttl_s=60)
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 150.0)
    assert backend.get_run("run1", 200.0) is not None  # 150 + 60 > 200
    assert backend.extend_run_ttl("run1", 600, 200.0) is True
    assert backend.get_run("run1", 700.0) is not None
    assert backend.get_run("run1", 801.0) is None
    assert backend.extend_run_ttl("run1", 600, 801.0) is False
