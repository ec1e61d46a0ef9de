"""Strategies for random workflow trees and Dags, and a test App whose leaves record execution.

Every leaf is `Signature(LEAF_JOB, (label, sleep_ms))` with a label unique within its
tree ("L0", "L1", ...), so a compiled node is traced back to its leaf by `label_of`.
Trees are built from plain signatures (no app attached): run them with
`Workflow(tree, app=app)` on an app from `recording_app`, which declares LEAF_JOB.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from sideline.core.jobs import Signature
from sideline.core.ports import Backend
from sideline.core.verify import Event
from sideline.core.workflow import Chain, Dag, DagStep, Group, Node, Step, WithDelay
from sideline.runtime.app import App, TestingMode
from sideline.runtime.middleware import JobContext

__all__ = [
    "CALLBACK_JOB",
    "LEAF_JOB",
    "FakeClock",
    "Recorder",
    "dag_skeletons",
    "dag_workflows",
    "label_of",
    "leaf",
    "recording_app",
    "workflow_trees",
]

LEAF_JOB = "prop.leaf"
CALLBACK_JOB = "prop.callback"


def leaf(label: str, sleep_ms: int = 0) -> Signature:
    """A leaf step: the recording job with a unique label (and how long it sleeps, in ms)."""
    return Signature(LEAF_JOB, (label, sleep_ms))


def label_of(node: Node) -> str:
    """The label of the leaf a compiled node came from."""
    label = node.args[0]
    assert isinstance(label, str)
    return label


class _Builder:
    """Draws one tree, keeping leaf and container budgets so examples stay small."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any], *, max_depth: int,
                 max_width: int, max_leaves: int, max_steps: int, max_delay_ms: int,
                 sleep_ms: st.SearchStrategy[int], dags: bool) -> None:
        self.draw = draw
        self.max_depth = max_depth
        self.max_width = max_width
        self.leaves_left = max_leaves
        self.steps_left = max_steps
        self.max_delay_ms = max_delay_ms
        self.sleep_ms = sleep_ms
        # Weighted by repetition: leaves and containers of leaves dominate, so most trees
        # have jobs to order; jobless steps and Dags still come up in most examples.
        self.kinds = ("leaf", "chain", "leaf", "group", "delay", "leaf", "chain", "group", "delay",
                      "empty", *(("dag",) if dags else ()))
        self.empties: tuple[Step, ...] = (Chain(), Group(), WithDelay(Chain(), 1),
                                          *((Dag(),) if dags else ()))
        self.labels = itertools.count()

    def leaf(self) -> Step:
        if self.leaves_left <= 0:
            return Chain()  # out of leaves: an empty step, which must vanish on compile
        self.leaves_left -= 1
        return leaf(f"L{next(self.labels)}", self.draw(self.sleep_ms))

    def width(self, depth: int, least: int = 0) -> int:
        if depth >= self.max_depth or self.steps_left <= least:
            return least
        width: int = self.draw(st.integers(least, min(self.max_width, self.steps_left)))
        self.steps_left -= width
        return width

    def root(self, min_width: int) -> Step:
        """The top step; with min_width > 0, a container of at least that many steps."""
        if min_width <= 0:
            return self.step(0)
        kind = self.draw(st.sampled_from(("chain", "group", "dag")))
        width = self.width(0, least=min_width)
        if kind == "dag":
            return self.dag(0, width)
        subs = [self.step(1) for _ in range(width)]
        return Chain(*subs) if kind == "chain" else Group(*subs)

    def step(self, depth: int) -> Step:
        kind = self.draw(st.sampled_from(self.kinds))
        if kind == "leaf":
            return self.leaf()
        if kind == "empty":  # a step with no job at all: it must vanish into edges and delays
            empty: Step = self.draw(st.sampled_from(self.empties))
            return empty
        if kind == "delay":
            if depth >= self.max_depth:
                return self.leaf()
            return WithDelay(self.step(depth + 1), self.draw(st.integers(0, self.max_delay_ms)))
        if kind == "dag":
            return self.dag(depth, self.width(depth))
        subs = [self.step(depth + 1) for _ in range(self.width(depth))]
        return Chain(*subs) if kind == "chain" else Group(*subs)

    def dag(self, depth: int, width: int) -> Dag:
        dag = Dag()
        handles: list[DagStep] = []
        for index in range(width):
            # Jobless steps are drawn often here: what waits on them must behave as if it
            # waited on what they wait on, delays included.
            step = self.draw(st.sampled_from(self.empties)) if self.draw(
                st.integers(0, 3)) == 1 else self.step(depth + 1)
            after = self.draw(st.lists(st.integers(0, index - 1), max_size=3, unique=True)
                              ) if index else []
            handles.append(dag.add(step, after=[handles[i] for i in after]))
        return dag


@st.composite
def workflow_trees(draw: st.DrawFn, *, max_depth: int = 4, max_width: int = 5, max_leaves: int = 20,
                   max_steps: int = 30, max_delay_ms: int = 50,
                   sleep_ms: st.SearchStrategy[int] | None = None, dags: bool = True,
                   min_root_width: int = 0) -> Step:
    """Random nestings of Chain, Group, WithDelay (and Dag), empty containers included.

    Args:
        max_depth: containers nest at most this deep.
        max_width: a container has at most this many steps.
        max_leaves: at most this many leaves (0 gives trees with no job at all).
        max_steps: at most this many container children in total.
        max_delay_ms: WithDelay delays are drawn from 0..max_delay_ms milliseconds.
        sleep_ms: how long each leaf's job sleeps, in ms (default 0).
        dags: whether Dags appear inside trees.
        min_root_width: when > 0, the root is a Chain, Group or Dag of at least this many steps.
    """
    builder = _Builder(draw, max_depth=max_depth, max_width=max_width, max_leaves=max_leaves,
                       max_steps=max_steps, max_delay_ms=max_delay_ms,
                       sleep_ms=sleep_ms if sleep_ms is not None else st.just(0), dags=dags)
    tree = builder.root(min_root_width)
    # Half the trees sit in a delay, so what a delay does to a whole tree's inner steps
    # is always in play (a delay deep in a tree mostly wraps a single leaf).
    outer_ms = draw(st.one_of(st.none(), st.integers(1, max(1, max_delay_ms))))
    return tree if outer_ms is None or max_delay_ms == 0 else WithDelay(tree, outer_ms)


@st.composite
def dag_workflows(draw: st.DrawFn, *, max_entries: int = 6, step_depth: int = 2, max_leaves: int = 16,
                  max_delay_ms: int = 50, sleep_ms: st.SearchStrategy[int] | None = None) -> Step:
    """A random Dag, sometimes inside a WithDelay: each step waits for a random subset of
    earlier steps; steps are small trees (or jobless steps)."""
    builder = _Builder(draw, max_depth=step_depth + 1, max_width=3, max_leaves=max_leaves,
                       max_steps=3 * max_entries, max_delay_ms=max_delay_ms,
                       sleep_ms=sleep_ms if sleep_ms is not None else st.just(0), dags=False)
    dag = builder.dag(0, draw(st.integers(0, max_entries)))
    delay_ms = draw(st.one_of(st.none(), st.integers(0, max_delay_ms)))
    return dag if delay_ms is None else WithDelay(dag, delay_ms)


@st.composite
def dag_skeletons(draw: st.DrawFn, *, max_entries: int = 10) -> Step:
    """A delayed Dag whose steps are single leaves or jobless steps, wired at random.

    Small and dense in the cases that are easy to get wrong: steps that wait only on
    jobless steps, which in turn wait on jobs or on nothing.
    """
    dag = Dag()
    handles: list[DagStep] = []
    labels = itertools.count()
    empties: tuple[Step, ...] = (Chain(), Group(), Dag(), WithDelay(Group(), 3))
    for index in range(draw(st.integers(1, max_entries))):
        step: Step = leaf(f"L{next(labels)}") if draw(st.booleans()) else draw(st.sampled_from(empties))
        after = draw(st.lists(st.integers(0, index - 1), max_size=4, unique=True)) if index else []
        handles.append(dag.add(step, after=[handles[i] for i in after]))
    return WithDelay(dag, draw(st.integers(1, 50)))


class FakeClock:
    """A clock that stands still unless moved: payload texts and due times are reproducible."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.current = now

    def now(self) -> float:
        return self.current


class Recorder:
    """What the recording app saw: leaf runs by label, callbacks, and a start/end trace per run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Counter[str] = Counter()
        self.callbacks: Counter[str] = Counter()
        self.traces: dict[str, list[Event]] = {}
        self.times: dict[tuple[str, str, int], float] = {}
        """(run_id, "start" | "end", node_id) -> time.time() of the event (the app's clock)."""
        self.on_start: Callable[[str, int], None] | None = None
        """Called with (run_id, node_id) as a workflow node starts, before its job runs."""

    def middleware(self, context: JobContext, call_next: Callable[[], Any]) -> Any:
        run_id, node_id = context.payload.run_id, context.payload.node_id
        if run_id is None or node_id is None:
            return call_next()
        if self.on_start is not None:
            self.on_start(run_id, node_id)
        self._add(run_id, Event("start", node_id))
        result = call_next()
        self._add(run_id, Event("end", node_id))
        return result

    def _add(self, run_id: str, event: Event) -> None:
        with self.lock:
            self.traces.setdefault(run_id, []).append(event)
            self.times[(run_id, event.kind, event.node_id)] = time.time()


def recording_app(*, backend: Backend | None = None, testing: TestingMode | None = None,
                  clock: FakeClock | None = None, max_recoveries: int | None = None,
                  ) -> tuple[App, Recorder]:
    """A fresh App declaring LEAF_JOB and CALLBACK_JOB, with a Recorder installed as middleware."""
    app = App(backend, testing=testing, clock=clock, max_recoveries=max_recoveries)
    recorder = Recorder()
    app.server_middleware.append(recorder.middleware)

    @app.job(name=LEAF_JOB, retry=False)
    def leaf_job(label: str, sleep_ms: int) -> str:
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        with recorder.lock:
            recorder.runs[label] += 1
        return label

    @app.job(name=CALLBACK_JOB, retry=False)
    def callback_job(run_id: str, which: str) -> None:
        with recorder.lock:
            recorder.callbacks[which] += 1

    return app, recorder
