"""Crashes, redeliveries and duplicate deliveries, interleaved deterministically by Hypothesis.

A manual loop plays several workers against one MemoryBackend in "collect" mode: it
fetches deliveries, holds them, and processes them in a drawn order with
`sideline.runtime.executor.process`, while Hypothesis decides where faults are injected
(begin_node / settle, before or after the atomic step), when a worker dies
with jobs in hand, when a dead worker's jobs are recovered, and which deliveries are
duplicated. Whatever happens, completions count once, each node's payload is pushed
once by the workflow machinery, no node starts before its predecessors completed,
and the run ends succeeded.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from property_tests.reference import leaves
from property_tests.strategies import (
    CALLBACK_JOB,
    FakeClock,
    dag_workflows,
    leaf,
    recording_app,
    workflow_trees,
)
from sideline.adapters.memory import InjectedFault, MemoryBackend
from sideline.core.jobs import Signature
from sideline.core.payload import decode
from sideline.core.ports import Delivery
from sideline.core.run import NodeStatus, RunState, RunStatus, RunSummary
from sideline.core.verify import Event, order_violations
from sideline.core.workflow import Dag, Graph, Step
from sideline.runtime.app import App
from sideline.runtime.executor import process
from sideline.runtime.workflows import Workflow

WORKERS = ("w0", "w1", "w2")
QUEUES = ("default",)
CALM = ("fetch", "process", "tick", "recover")
"""After the chaos budget is spent only these run, so every example terminates."""


class _Harness:
    """The loop's bookkeeping, and the checks made after every step."""

    def __init__(self, tree: Step) -> None:
        self.clock = FakeClock()
        self.backend = MemoryBackend()
        # The loop recovers the same job as often as it likes; the poison-pill rule (a job
        # recovered more than max_recoveries times is buried) would then rightly fail the
        # run, so it is set out of reach: this test is about counting, not about pills.
        self.app, self.recorder = recording_app(backend=self.backend, testing="collect",
                                                clock=self.clock, max_recoveries=1_000_000)
        self.workflow = Workflow(tree, app=self.app,
                                 on_success=Signature(CALLBACK_JOB, ("success",)))
        self.graph: Graph = self.workflow.graph
        self.preds: list[set[int]] = [set() for _ in self.graph.nodes]
        for node in self.graph.nodes:
            for succ in node.successors:
                self.preds[succ].add(node.id)
        self.in_flight: list[tuple[str, Delivery]] = []
        self.crashed: set[str] = set()
        self.fresh_fetches: Counter[str] = Counter()
        """Fetched payloads never recovered (recoveries == 0), by jid: machinery pushes + our copies."""
        self.fresh_copies: Counter[str] = Counter()
        """Duplicates this loop pushed of never-recovered payloads, by jid."""
        self.problems: list[str] = []
        self.succeeded_at: dict[int, int] = {}
        """Node id -> the loop step at which the run state first showed it succeeded."""
        self.effective: list[Event] = []
        """Start and end of the one execution that completed each node, in loop order."""
        self.step = 0
        self.recorder.on_start = self._check_start
        self.run_id = self.workflow.run()

    def state(self) -> RunState | RunSummary:
        """The run's state, or its summary once it succeeded (and was compacted)."""
        state = self.backend.get_run(self.run_id, self.clock.now())
        assert state is not None, "run state vanished"
        return state

    def statuses(self, state: RunState | RunSummary) -> list[NodeStatus]:
        """Each node's status. A compacted run kept only node counts: it must have
        succeeded with every node succeeded, which makes each node's status known."""
        if isinstance(state, RunState):
            return list(state.nodes)
        size = len(self.graph.nodes)
        assert state.status is RunStatus.SUCCEEDED, f"run compacted as {state.status}"
        assert state.counts == {str(NodeStatus.SUCCEEDED): size}, state.counts
        return [NodeStatus.SUCCEEDED] * size

    def _check_start(self, run_id: str, node_id: int) -> None:
        # Called by the middleware as a node's job starts: every predecessor must have
        # completed in the run state by now (no early release, even after crashes).
        state = self.backend.get_run(run_id, self.clock.now())
        assert state is not None
        nodes = self.statuses(state)
        early = [p for p in self.preds[node_id] if nodes[p] is not NodeStatus.SUCCEEDED]
        if early:
            self.problems.append(f"node {node_id} started before predecessors {early} completed")

    def fetch(self, worker: str) -> None:
        delivery = self.backend.fetch(worker, QUEUES, 0)
        assert delivery is not None
        payload = decode(delivery.raw)
        if payload.recoveries == 0:
            self.fresh_fetches[payload.jid] += 1
        self.in_flight.append((worker, delivery))

    def process(self, index: int, fault: tuple[str, str] | None) -> None:
        worker, delivery = self.in_flight.pop(index)
        node_id = decode(delivery.raw).node_id
        before = self.statuses(self.state())
        if fault is not None:
            self.backend.faults.inject(*fault)
        try:
            process(self.app.runtime, worker, delivery)
        except InjectedFault:
            self.crash(worker)  # the worker died mid-settle; its jobs wait for recovery
        finally:
            self.backend.faults.clear()  # a fault the job's path never reached is disarmed
        after = self.statuses(self.state())
        if node_id is not None and before[node_id] is not NodeStatus.SUCCEEDED and (
                after[node_id] is NodeStatus.SUCCEEDED):
            # This delivery's execution completed the node: it is the effective one.
            self.effective += [Event("start", node_id), Event("end", node_id)]

    def crash(self, worker: str) -> None:
        self.in_flight = [(w, d) for w, d in self.in_flight if w != worker]
        self.crashed.add(worker)

    def recover(self, worker: str) -> None:
        self.backend.recover(worker)
        self.crashed.discard(worker)

    def duplicate(self, index: int) -> None:
        _worker, delivery = self.in_flight[index]
        payload = decode(delivery.raw)
        if payload.recoveries == 0:
            self.fresh_copies[payload.jid] += 1
        self.backend.push_raw(delivery.queue, delivery.raw)

    def tick(self) -> None:
        due = self.backend.next_due()
        assert due is not None
        self.backend.move_due(due)

    def choices(self, calm: bool) -> list[str]:
        options = []
        if any(self.backend.queue_sizes().values()):
            options.append("fetch")
        if self.in_flight:
            options += ["process", "process_with_fault", "duplicate"]
        if self.backend.next_due() is not None:
            options.append("tick")
        if self.crashed:
            options.append("recover")
        if self.in_flight:
            options.append("crash")
        return [o for o in options if o in CALM] if calm else options

    def check_step(self) -> None:
        """Invariants after every step of the loop."""
        self.step += 1
        state = self.state()
        nodes = self.statuses(state)
        for node_id, status in enumerate(nodes):
            if node_id in self.succeeded_at:
                assert status is NodeStatus.SUCCEEDED, f"node {node_id} left succeeded: {status}"
            elif status is NodeStatus.SUCCEEDED:
                self.succeeded_at[node_id] = self.step
            if not isinstance(state, RunState):
                continue  # compacted: the barriers went with the graph (all nodes succeeded)
            done = sum(1 for p in self.preds[node_id] if nodes[p] is NodeStatus.SUCCEEDED)
            assert state.remaining[node_id] == len(self.preds[node_id]) - done, (
                f"node {node_id}: remaining {state.remaining[node_id]}, "
                f"{len(self.preds[node_id]) - done} predecessors unfinished")
        assert state.status in (RunStatus.RUNNING, RunStatus.SUCCEEDED), state.status
        assert self.problems == []


_trees = st.one_of(workflow_trees(max_leaves=8, max_steps=14, min_root_width=3),
                   dag_workflows(max_entries=5, max_leaves=7)).filter(lambda tree: len(leaves(tree)) >= 3)
_faults = st.sampled_from([("settle", "before"), ("settle", "after"),
                           ("begin_node", "before"), ("begin_node", "after")])


# Each example is a few milliseconds of pure bookkeeping: afford five times the profile's count.
@settings(max_examples=5 * settings().max_examples)
@given(tree=_trees, data=st.data())
def test_crashes_and_redeliveries_count_each_completion_once(tree: Step, data: st.DataObject) -> None:
    run = _Harness(tree)
    size = len(run.graph.nodes)
    chaos_budget = data.draw(st.integers(2 * size, 8 * size), label="chaos steps")
    for _ in range(10_000):
        options = run.choices(calm=run.step >= chaos_budget)
        if not options:
            break
        action = data.draw(st.sampled_from(options), label="action")
        if action == "fetch":
            run.fetch(data.draw(st.sampled_from(WORKERS), label="worker"))
        elif action == "process":
            run.process(data.draw(st.integers(0, len(run.in_flight) - 1), label="delivery"), None)
        elif action == "process_with_fault":
            index = data.draw(st.integers(0, len(run.in_flight) - 1), label="delivery")
            run.process(index, data.draw(_faults, label="fault"))
        elif action == "duplicate":
            run.duplicate(data.draw(st.integers(0, len(run.in_flight) - 1), label="delivery"))
        elif action == "crash":
            run.crash(data.draw(st.sampled_from(sorted({w for w, _d in run.in_flight})), label="dies"))
        elif action == "recover":
            run.recover(data.draw(st.sampled_from(sorted(run.crashed)), label="recovered"))
        else:
            run.tick()
        run.check_step()
    else:  # pragma: no cover (the calm phase always drains the run)
        pytest.fail("the loop did not settle")

    # Statistics (pytest --hypothesis-show-statistics) show the chaos really happens.
    event(f"faults fired: {min(sum(run.backend.faults.fired.values()), 3)}+")
    event(f"nodes run more than once: {sum(1 for c in run.recorder.runs.values() if c > 1) > 0}")
    event(f"duplicates pushed: {sum(run.fresh_copies.values()) > 0}")
    event(f"nodes: {min(len(run.graph.nodes), 5)}+")

    final = run.app.status(run.run_id)
    assert final.status is RunStatus.SUCCEEDED, final.counts()
    assert final.compacted, "a succeeded run is compacted to its summary"
    assert final.counts() == {"succeeded": len(run.graph.nodes)}
    # The effective executions form a valid trace: each node completed once, edges respected.
    assert order_violations(run.graph, run.effective) == []
    # Each continuation was pushed exactly once by the workflow machinery: fresh (never
    # recovered) fetches minus the copies this loop pushed itself.
    pushes = run.fresh_fetches - run.fresh_copies
    expected = Counter({f"{run.run_id}.{n.id}": 1 for n in run.graph.nodes})
    expected[f"{run.run_id}.success"] = 1
    assert pushes == expected
    assert run.recorder.runs.keys() == {str(n.args[0]) for n in run.graph.nodes}
    assert run.recorder.callbacks["success"] >= 1
    assert run.backend.workers_with_jobs() == []
    assert run.backend.next_due() is None


def test_retrying_an_allowed_failure_by_hand_does_not_release_a_join_early() -> None:
    # End-to-end form of a bug the state machine found (since fixed): the hand-retried job
    # of an allowed failure ran, and its success counted the node a second time.
    clock = FakeClock()
    app, _recorder = recording_app(testing="collect", clock=clock)
    broken = {"now": True}

    @app.job(name="prop.flaky", retry=False)
    def flaky() -> None:
        if broken["now"]:
            raise RuntimeError("flaky failed")

    dag = Dag()
    first = dag.add(Signature("prop.flaky").set(allow_failure=True))
    other = dag.add(leaf("other"))
    dag.add(leaf("join"), after=[first, other])
    run_id = Workflow(dag, app=app).run()
    process(app.runtime, "w", _fetch(app))  # node 0 dies, allowed: the join now waits for node 1 only
    held = _fetch(app)  # node 1 is fetched but not finished yet
    assert decode(held.raw).node_id == 1
    broken["now"] = False
    assert app.backend.retry_dead(f"{run_id}.0", clock.now())  # retried by hand from the dead set
    process(app.runtime, "w", _fetch(app))
    statuses = [node.status for node in app.status(run_id).nodes]
    assert statuses[2] is NodeStatus.PENDING, f"join released before node 1 finished: {statuses}"


def _fetch(app: App) -> Delivery:
    delivery = app.backend.fetch("w", QUEUES, 0)
    assert delivery is not None
    return delivery
