"""Random workflows run on a real threaded Worker (memory backend): once each, in order, succeeded."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from property_tests.reference import leaves
from property_tests.strategies import CALLBACK_JOB, dag_workflows, recording_app, workflow_trees
from sideline.adapters.memory import MemoryBackend
from sideline.core.jobs import Signature
from sideline.core.run import NodeStatus, RunStatus
from sideline.core.verify import order_violations
from sideline.core.workflow import Graph, Step
from sideline.runtime.workflows import Workflow

# Small trees, short sleeps: each example runs in a fraction of a second. Delays are drawn
# from 0..50 ms as everywhere else, so delayed releases go through the scheduled-set poller.
_sleeps = st.integers(0, 2)
_workflows = st.one_of(
    workflow_trees(max_leaves=10, max_steps=16, sleep_ms=_sleeps),
    dag_workflows(max_entries=5, max_leaves=8, sleep_ms=_sleeps),
)


def _wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.002)


def _check_delays_honoured(graph: Graph, run_id: str, times: dict[tuple[str, str, int], float],
                           started_at: float) -> None:
    """A node with delay d starts no sooner than d ms after it could be released.

    It is released at its last predecessor's completion, which is after that
    predecessor's recorded end (or, for an entry node, after the run started). Only
    this lower bound is checked: how late a node starts depends on the machine.
    """
    ready_at = dict.fromkeys(range(len(graph.nodes)), started_at)
    for node in graph.nodes:
        for succ in node.successors:
            ready_at[succ] = max(ready_at[succ], times[(run_id, "end", node.id)])
    for node in graph.nodes:
        waited_ms = (times[(run_id, "start", node.id)] - ready_at[node.id]) * 1000
        assert waited_ms >= node.delay_ms - 1e-3, (
            f"node {node.id} started {waited_ms:.1f} ms after it was ready; delay_ms={node.delay_ms}")


@given(trees=st.lists(_workflows, min_size=1, max_size=3), concurrency=st.integers(1, 8))
def test_every_leaf_runs_once_in_order_and_the_run_succeeds(trees: list[Step], concurrency: int) -> None:
    backend = MemoryBackend()
    app, recorder = recording_app(backend=backend)
    workflows = [Workflow(tree, app=app, on_success=Signature(CALLBACK_JOB, ("success",)))
                 for tree in trees]
    with app.worker(concurrency=concurrency, fetch_timeout_s=0.02, poll_interval_s=0.005,
                    shutdown_timeout_s=5):
        started_at = time.time()
        run_ids = [wf.run() for wf in workflows]  # concurrent runs share the worker
        infos = [app.wait(run_id, timeout_s=20) for run_id in run_ids]
        # Each success callback is pushed by its run's last completion; let it run too.
        _wait_for(lambda: recorder.callbacks["success"] >= len(run_ids))
    for wf, run_id, info in zip(workflows, run_ids, infos, strict=True):
        assert info.status is RunStatus.SUCCEEDED, info.counts()
        # A succeeded run is compacted: its node counts say every node succeeded.
        final = app.status(run_id)
        assert final.compacted
        assert final.nodes == ()
        size = len(wf.graph.nodes)
        assert final.counts() == ({str(NodeStatus.SUCCEEDED): size} if size else {})
        assert order_violations(wf.graph, recorder.traces.get(run_id, [])) == []
        _check_delays_honoured(wf.graph, run_id, recorder.times, started_at)
    # Labels repeat across trees ("L0" in each), so compare leaf runs over all trees at once.
    assert recorder.runs == Counter(label for tree in trees for label in leaves(tree))
    assert recorder.callbacks == {"success": len(run_ids)}
    assert backend.workers_with_jobs() == []
