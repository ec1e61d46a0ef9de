"""Workflow primitives (Chain, Group, WithDelay, Dag) and their compilation to a graph.

A workflow tree is compiled once into a `Graph`: one node per job signature,
edges for "runs after", and each node's barrier count (how many predecessors it
waits for). Empty chains and groups vanish into edges; WithDelay vanishes into
the `delay_ms` of the entry nodes it wraps (delays are in milliseconds, nested
delays add).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import attrs

from sideline.core.errors import WorkflowError
from sideline.core.jobs import Signature

__all__ = ["Chain", "Dag", "DagStep", "Graph", "Group", "Node", "Step", "WithDelay", "compile"]


class Chain:
    """Steps that run one after another; each starts once the previous one succeeded."""

    __slots__ = ("steps",)

    def __init__(self, *steps: Step) -> None:
        self.steps: tuple[Step, ...] = _check_steps("Chain", steps)

    def __repr__(self) -> str:
        return f"Chain({', '.join(map(repr, self.steps))})"


class Group:
    """Steps that run in parallel; whatever follows the group waits for all of them."""

    __slots__ = ("steps",)

    def __init__(self, *steps: Step) -> None:
        self.steps: tuple[Step, ...] = _check_steps("Group", steps)

    def __repr__(self) -> str:
        return f"Group({', '.join(map(repr, self.steps))})"


class WithDelay:
    """Delay the entry jobs of `step` by `delay` milliseconds once they become ready."""

    __slots__ = ("delay", "step")

    def __init__(self, step: Step, delay: int) -> None:
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise WorkflowError(f"WithDelay delay must be an int >= 0 (milliseconds), got {delay!r}")
        self.step: Step = _check_steps("WithDelay", (step,))[0]
        self.delay = delay

    def __repr__(self) -> str:
        return f"WithDelay({self.step!r}, delay={self.delay})"


@attrs.frozen(eq=False)
class DagStep:
    """A handle to a step added to a Dag; pass it in `after=` of later steps."""

    dag: Dag
    index: int


class Dag:
    """An explicit graph: each step may run after any set of earlier steps.

    Example:
        dag = Dag()
        a = dag.add(fetch.s(1))
        b = dag.add(fetch.s(2))
        dag.add(merge.s(), after=[a, b])
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: list[tuple[Step, tuple[int, ...]]] = []

    def add(self, step: Step, after: Sequence[DagStep] = ()) -> DagStep:
        """Add `step`, to start after every step in `after` succeeded; return its handle."""
        _check_steps("Dag.add", (step,))
        indexes = []
        for handle in after:
            if not isinstance(handle, DagStep) or handle.dag is not self:
                raise WorkflowError(f"Dag.add after= takes handles returned by this Dag's add(), "
                                    f"got {handle!r}")
            indexes.append(handle.index)
        self._entries.append((step, tuple(dict.fromkeys(indexes))))
        return DagStep(self, len(self._entries) - 1)

    @property
    def entries(self) -> Sequence[tuple[Step, tuple[int, ...]]]:
        """The added steps with the indexes of the steps each waits for."""
        return tuple(self._entries)

    def __repr__(self) -> str:
        return f"Dag({self._entries!r})"


Step = Union[Signature, Chain, Group, WithDelay, Dag]  # noqa: UP007 (a runtime alias)


def _check_steps(where: str, steps: Sequence[Any]) -> tuple[Step, ...]:
    for step in steps:
        if not isinstance(step, Signature | Chain | Group | WithDelay | Dag):
            raise WorkflowError(
                f"{where} takes job signatures (job.s(...)), Chain, Group, WithDelay or Dag; "
                f"got {step!r}")
    return tuple(steps)


@attrs.frozen
class Node:
    """One job of a compiled workflow."""

    id: int
    job: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str | None
    allow_failure: bool
    delay_ms: int
    """Delay applied when this node becomes ready, in milliseconds."""
    successors: tuple[int, ...]
    predecessors: int
    """The barrier count: how many predecessors must complete before this node runs."""
    memory_ns: str | None = None
    """Typed steps: the run-memory namespace its output is written under."""
    memory_reads: tuple[tuple[str, str], ...] = ()
    """Typed steps: (Input field, memory key) pairs read instead of the field's own name."""


@attrs.frozen
class Graph:
    """A compiled workflow: nodes in creation order (ids are their indexes)."""

    nodes: tuple[Node, ...]

    def entry_nodes(self) -> tuple[Node, ...]:
        """Nodes with no predecessors: they start when the run starts."""
        return tuple(node for node in self.nodes if node.predecessors == 0)

    def descendants(self, node_id: int) -> set[int]:
        """Every node reachable from `node_id` (excluding itself)."""
        seen: set[int] = set()
        stack = list(self.nodes[node_id].successors)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.nodes[current].successors)
        return seen


@attrs.define
class _Draft:
    sig: Signature
    delay_ms: int
    preds: dict[int, None] = attrs.field(factory=dict)


def compile(step: Step) -> Graph:
    """Compile a workflow tree (or Dag) into a Graph with barrier counts."""
    drafts: list[_Draft] = []
    _compile(step, (), 0, drafts)
    successors: list[list[int]] = [[] for _ in drafts]
    for node_id, draft in enumerate(drafts):
        for pred in draft.preds:
            successors[pred].append(node_id)
    return Graph(tuple(
        Node(
            id=node_id,
            job=draft.sig.job,
            args=tuple(draft.sig.args),
            kwargs=dict(draft.sig.kwargs),
            queue=draft.sig.queue,
            allow_failure=draft.sig.allow_failure,
            delay_ms=draft.delay_ms,
            successors=tuple(successors[node_id]),
            predecessors=len(draft.preds),
            memory_ns=draft.sig.namespace,
            memory_reads=tuple(sorted(draft.sig.reads.items())),
        )
        for node_id, draft in enumerate(drafts)
    ))


def _compile(step: Step, deps: tuple[int, ...], delay_ms: int, out: list[_Draft]) -> tuple[int, ...]:
    """Append the nodes of `step` after `deps`; return the step's exit nodes.

    `delay_ms` applies to the step's entry nodes. A step that creates no node
    returns `deps` unchanged, so what follows it waits for what preceded it.
    """
    if isinstance(step, Signature):
        out.append(_Draft(step, delay_ms, dict.fromkeys(deps)))
        return (len(out) - 1,)
    if isinstance(step, WithDelay):
        return _compile(step.step, deps, delay_ms + step.delay, out)
    if isinstance(step, Chain):
        current = deps
        for sub in step.steps:
            before = len(out)
            current = _compile(sub, current, delay_ms, out)
            if len(out) > before:
                delay_ms = 0  # only the chain's entry nodes carry the delay
        return current
    if isinstance(step, Group):
        exits: dict[int, None] = {}
        for sub in step.steps:
            exits.update(dict.fromkeys(_compile(sub, deps, delay_ms, out)))
        return tuple(exits) if step.steps else deps
    if isinstance(step, Dag):
        entry_exits: list[tuple[int, ...]] = []
        # The delay an empty entry passes on (like an empty step at the head of a Chain),
        # or None once the entry created nodes.
        passed_delay: list[int | None] = []
        waited_on: set[int] = set()
        for sub, after in step.entries:
            if after:
                sub_deps = tuple(dict.fromkeys(e for i in after for e in entry_exits[i]))
                # An entry node only if every step it waits for is jobless all the way back
                # to the Dag's start; any path through a job makes it a follower (delay 0).
                sub_delay = min(passed_delay[i] or 0 for i in after)
            else:
                sub_deps, sub_delay = deps, delay_ms
            before = len(out)
            entry_exits.append(_compile(sub, sub_deps, sub_delay, out))
            passed_delay.append(sub_delay if len(out) == before else None)
            waited_on.update(after)
        sinks = dict.fromkeys(
            e for i, exits_i in enumerate(entry_exits) if i not in waited_on for e in exits_i)
        return tuple(sinks) if step.entries else deps
    raise WorkflowError(f"not a workflow step: {step!r}")  # pragma: no cover (checked on build)
