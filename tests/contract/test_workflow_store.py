"""WorkflowStore contract: atomic create/advance/fail/cancel with the pushes they cause."""

from __future__ import annotations

import attrs
import pytest

from sideline.core.errors import RunExpired
from sideline.core.payload import decode
from sideline.core.ports import Backend, Delivery
from sideline.core.run import (
    Begin,
    FailedNode,
    NodeError,
    NodeStatus,
    RunState,
    RunStatus,
    RunSummary,
    Transition,
)
from sideline.core.workflow import Chain, Group, Step, WithDelay

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


# -- expiry: an advance never shortens it (extend_run_ttl stays in force) -------------------


def run_of(tree: Step, ttl_s: int = 60, finished_ttl_s: int = 86_400,
           keep_memory: bool = False) -> tuple[RunState, Transition]:
    """new_run, with the plan's linger and memory settings."""
    state, transition = new_run(tree, ttl_s=ttl_s)
    state.plan = attrs.evolve(state.plan, finished_ttl_s=finished_ttl_s, keep_memory=keep_memory)
    return state, transition


def _key_ttls(backend: Backend, run_id: str) -> list[int]:
    """The Redis TTL (s) of each run key that exists; [] on the memory backend."""
    client = getattr(backend, "client", None)
    if client is None:
        return []
    keys = backend.keys.run(run_id)  # type: ignore[attr-defined]
    return [ttl for ttl in (client.ttl(key) for key in keys) if ttl != -2]


def test_an_advance_never_shortens_an_extended_expiry(backend: Backend) -> None:
    # A Group whose members each extend the run: the first to finish must not bring the
    # expiry back to now + ttl_s and bury its slower siblings as expired.
    state, transition = run_of(Group(sig("A"), sig("B"), sig("C")), ttl_s=2)
    backend.create_run(state, transition, 100.0)
    assert backend.extend_run_ttl("run1", 30, 100.0) is True  # expires at 130
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 103.0)  # once: expiry 105
    assert all(ttl >= 25 for ttl in _key_ttls(backend, "run1"))  # the keys' EXPIRE too
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 106.0)
    delivery, node = fetch_node(backend)
    assert backend.begin_node("run1", node, 109.0) is Begin.RUN  # not RunExpired
    final = backend.complete_node("w", delivery, "run1", node, 109.0)
    assert final.status is RunStatus.SUCCEEDED


def test_extend_never_shortens_and_advances_push_back_to_ttl(backend: Backend) -> None:
    state, transition = run_of(Chain(sig("A"), sig("B"), sig("C")), ttl_s=60)
    backend.create_run(state, transition, 100.0)
    assert backend.extend_run_ttl("run1", 10, 100.0) is True  # 110 < 160: no change
    assert backend.get_run("run1", 150.0) is not None
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 150.0)  # pushed back to 150 + 66
    assert backend.get_run("run1", 215.0) is not None
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 155.0)  # 61 left >= ttl: kept
    assert backend.get_run("run1", 215.5) is not None
    assert backend.get_run("run1", 216.5) is None


# -- finished runs: compacted to a summary, or (failed) kept whole while they linger --------


def finish_chain(backend: Backend, steps: int, now: float) -> float:
    for _ in range(steps):
        delivery, node = fetch_node(backend)
        backend.begin_node("run1", node, now)
        backend.complete_node("w", delivery, "run1", node, now)
        now += 1.0
    return now - 1.0


def test_a_succeeded_run_keeps_only_its_summary_for_finished_ttl(backend: Backend) -> None:
    state, transition = run_of(Chain(sig("A"), sig("B")), ttl_s=600, finished_ttl_s=50)
    backend.create_run(state, transition, 100.0)
    backend.write("run1", {"out": 1}, 10_000, 100.0)
    finished = finish_chain(backend, 2, 101.0)
    summary = backend.get_run("run1", finished)
    assert summary == RunSummary("run1", RunStatus.SUCCEEDED, 100.0, finished, finished,
                                 {"succeeded": 2})
    assert backend.read("run1", None, finished) == {}  # cleared in the same atomic step
    client = getattr(backend, "client", None)
    if client is not None:  # only the run hash is left, expiring with the linger
        keys = backend.keys.run("run1")  # type: ignore[attr-defined]
        assert [bool(client.exists(key)) for key in keys] == [True, False, False, False, False]
        assert 50 < client.ttl(keys[0]) <= 110
        assert not client.exists(backend.keys.memory("run1"))  # type: ignore[attr-defined]
    assert backend.get_run("run1", finished + 49.0) is not None
    assert backend.get_run("run1", finished + 51.0) is None  # not run_ttl_s (600)


def test_keep_memory_keeps_a_succeeded_runs_memory(backend: Backend) -> None:
    state, transition = run_of(sig("A"), keep_memory=True)
    backend.create_run(state, transition, 100.0)
    backend.write("run1", {"out": 1}, 10_000, 100.0)
    finish_chain(backend, 1, 101.0)
    assert backend.read("run1", None, 102.0) == {"out": 1}


def test_a_late_copy_of_a_compacted_runs_node_is_acked_and_ignored(backend: Backend) -> None:
    state, transition = run_of(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.push([decode(delivery.raw)])  # a duplicate of step A, as after a recovery
    backend.complete_node("w", delivery, "run1", node, 101.0)
    copy, copy_node = fetch_node(backend)
    b_delivery, b_node = fetch_node(backend)
    backend.complete_node("w", b_delivery, "run1", b_node, 102.0)  # the run succeeds
    assert isinstance(backend.get_run("run1", 103.0), RunSummary)
    assert backend.begin_node("run1", copy_node, 103.0) is Begin.SKIP
    late = backend.complete_node("w", copy, "run1", copy_node, 103.0)
    assert late.noop
    assert backend.in_progress("w") == []  # acked, not left for recovery
    assert queued_jids(backend, "callbacks") == ["run1.success"]  # not fired twice
    redelivered = backend.fetch("w", ["default"], 0) or copy
    dying = payload("run1.0", run_id="run1", node_id=0, dead_reason="late")
    assert backend.fail_node("w", redelivered, dying, 104.0).noop
    assert [e.payload.jid for e in backend.entries("dead")] == ["run1.0"]
    assert backend.cancel_run("run1", 104.0) is False
    assert backend.extend_run_ttl("run1", 600, 104.0) is True


def test_the_summary_lists_dead_nodes_with_their_errors(backend: Backend) -> None:
    state, transition = run_of(Chain(sig("A", allow_failure=True), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.fail_node("w", delivery, payload("run1.0", run_id="run1", node_id=node,
                                             error_class="KeyError", error_message="'sku'"),
                      101.0)
    finish_chain(backend, 1, 102.0)
    summary = backend.get_run("run1", 102.0)
    assert isinstance(summary, RunSummary)
    assert (summary.status, summary.counts) == (RunStatus.SUCCEEDED,
                                                {"dead": 1, "succeeded": 1})
    assert summary.failed == (FailedNode(0, "job", "KeyError", "'sku'"),)


def test_a_failed_run_keeps_its_graph_lingers_and_a_revive_restores_its_ttl(
        backend: Backend) -> None:
    state, transition = run_of(Chain(sig("A"), sig("B")), ttl_s=600, finished_ttl_s=50)
    backend.create_run(state, transition, 100.0)
    backend.write("run1", {"out": 1}, 10_000, 100.0)
    delivery, node = fetch_node(backend)
    backend.fail_node("w", delivery, payload("run1.0", run_id="run1", node_id=node,
                                             error_class="ValueError", error_message="bad"),
                      110.0)
    stored = backend.get_run("run1", 110.0)
    assert isinstance(stored, RunState)
    assert (stored.status, stored.finished_at) == (RunStatus.FAILED, 110.0)
    assert stored.errors == {0: NodeError("ValueError", "bad")}
    assert backend.read("run1", None, 110.0) == {"out": 1}  # a revive needs it
    assert backend.begin_node("run1", 1, 130.0) is Begin.RUN  # touching: no refresh
    assert backend.get_run("run1", 159.0) is not None
    assert backend.retry_dead("run1.0", 159.0) is True  # reopened: 159 + 660
    assert backend.get_run("run1", 818.0) is not None
    assert backend.get_run("run1", 819.5) is None


def test_an_empty_run_is_compacted_at_creation(backend: Backend) -> None:
    state, transition = run_of(Chain())
    backend.write("run1", {"seed": 1}, 10_000, 100.0)
    backend.create_run(state, transition, 100.0)
    assert backend.get_run("run1", 100.0) == RunSummary("run1", RunStatus.SUCCEEDED, 100.0,
                                                        100.0, 100.0, {})
    assert queued_jids(backend, "callbacks") == ["run1.success"]
    assert backend.read("run1", None, 100.0) == {}


# -- cancel removes its nodes' waiting jobs, never its callbacks ----------------------------


def test_cancel_keeps_a_callback_waiting_to_retry(backend: Backend) -> None:
    state, transition = run_of(Group(sig("A"), sig("B"), WithDelay(sig("C"), 9000)))
    backend.create_run(state, transition, 100.0)
    a_delivery, a_node = fetch_node(backend)
    b_delivery, b_node = fetch_node(backend)
    backend.begin_node("run1", b_node, 100.5)
    backend.retry_later("w", b_delivery, decode(b_delivery.raw), 200.0)  # B waits to retry
    backend.fail_node("w", a_delivery, payload("run1.0", run_id="run1", node_id=a_node), 101.0)
    callback = backend.fetch("w", ["callbacks"], 0)
    assert callback is not None
    backend.retry_later("w", callback, decode(callback.raw), 300.0)  # so does the callback
    backend.write("run1", {"out": 1}, 10_000, 101.0)
    assert backend.cancel_run("run1", 102.0) is True
    assert backend.entries("scheduled") == []  # C
    assert [e.payload.jid for e in backend.entries("retry")] == ["run1.failure"]  # not B
    assert isinstance(backend.get_run("run1", 102.0), RunSummary)
    assert backend.read("run1", None, 102.0) == {}


def test_requeue_of_a_step_no_longer_held_pushes_nothing(backend: Backend) -> None:
    state, transition = run_of(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.complete_node("w", delivery, "run1", node, 101.0)
    assert backend.requeue("w", delivery) is False  # a second copy would run A twice
    assert queued_jids(backend) == ["run1.1"]
    held, _node = fetch_node(backend)
    assert backend.requeue("w", held) is True
    assert queued_jids(backend) == ["run1.1"]
    assert backend.in_progress("w") == []


def _run_ids(runs: list[RunState | RunSummary]) -> list[str]:
    return [r.run_id if isinstance(r, RunSummary) else r.plan.run_id for r in runs]


def test_recent_runs_are_newest_first_in_windows(backend: Backend) -> None:
    for i, run_id in enumerate(["b", "a", "c", "d"]):
        state, transition = new_run(Chain(sig("A")), run_id=run_id, now=100.0 + i // 2)
        backend.create_run(state, transition, 100.0 + i // 2)
    # c and d at 101, then a and b at 100: equal times in reverse run id order
    assert _run_ids(backend.recent_runs(0, 10, 102.0)) == ["d", "c", "b", "a"]
    assert _run_ids(backend.recent_runs(1, 2, 102.0)) == ["c", "b"]
    assert backend.recent_runs(4, 2, 102.0) == []
    assert backend.recent_runs(0, 0, 102.0) == []


def test_recent_runs_list_summaries_and_drop_runs_that_are_gone(backend: Backend) -> None:
    for i, run_id in enumerate(["old", "done", "live"]):
        state, transition = new_run(Chain(sig("A")), run_id=run_id, now=100.0 + i,
                                    ttl_s=5 if run_id == "old" else 60)
        backend.create_run(state, transition, 100.0 + i)
    assert backend.cancel_run("done", 103.0)
    # at 110 "old" (ttl 5 s) is gone: reading past it drops it and goes on
    found = backend.recent_runs(1, 5, 110.0)
    assert _run_ids(found) == ["done"]
    assert isinstance(found[0], RunSummary)
    assert _run_ids(backend.recent_runs(0, 5, 110.0)) == ["live", "done"]
    assert _run_ids(backend.recent_runs(0, 1, 110.0)) == ["live"]


def test_node_times_and_attempts_follow_begin_complete_and_fail(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    assert backend.begin_node("run1", node, 101.0) is Begin.RUN
    assert backend.begin_node("run1", node, 102.0) is Begin.RUN  # a retry: still running
    backend.complete_node("w", delivery, "run1", node, 103.0)
    b_delivery, b_node = fetch_node(backend)
    assert backend.begin_node("run1", b_node, 104.0) is Begin.RUN
    dead = attrs.evolve(decode(b_delivery.raw), dead_reason="died", error_class="Boom",
                        error_message="broke")
    backend.fail_node("w", b_delivery, dead, 105.0)
    assert backend.begin_node("run1", node, 106.0) is Begin.SKIP  # not an attempt
    stored = backend.get_run("run1", 106.0)
    assert isinstance(stored, RunState)
    assert (stored.started_at, stored.ended_at, stored.attempts) == (
        {0: 101.0, 1: 104.0}, {0: 103.0, 1: 105.0}, {0: 2, 1: 1})
    assert stored.errors == {1: NodeError("Boom", "broke")}
