"""Independent reference semantics of workflow trees, written from DESIGN.md section 3.

Nothing here shares code with `sideline.core.workflow.compile`: it reads the tree
directly and states, per leaf label, what must run before what and how long each
leaf is delayed. The property tests compare these against the compiled Graph.
"""

from __future__ import annotations

from collections import Counter

from sideline.core.jobs import Signature
from sideline.core.workflow import Chain, Dag, Graph, Group, Step, WithDelay

__all__ = ["expected_delays", "leaves", "must_precede", "reachable_pairs"]

Pairs = set[tuple[str, str]]


def _order(step: Step) -> tuple[list[str], Pairs]:
    """The leaf labels of `step` and every (a, b) such that a must finish before b starts."""
    if isinstance(step, Signature):
        return [str(step.args[0])], set()
    if isinstance(step, WithDelay):
        return _order(step.step)
    if isinstance(step, Chain):
        # Each step starts after the previous one finished: everything earlier precedes it.
        seen: list[str] = []
        pairs: Pairs = set()
        for sub in step.steps:
            sub_leaves, sub_pairs = _order(sub)
            pairs |= sub_pairs | {(a, b) for a in seen for b in sub_leaves}
            seen += sub_leaves
        return seen, pairs
    if isinstance(step, Group):
        # Members are independent of each other.
        seen, pairs = [], set()
        for sub in step.steps:
            sub_leaves, sub_pairs = _order(sub)
            seen += sub_leaves
            pairs |= sub_pairs
        return seen, pairs
    if isinstance(step, Dag):
        # Step j runs after every step it names in `after`, and (transitively) their own.
        parts = [_order(sub) for sub, _after in step.entries]
        ancestors: list[set[int]] = []
        for _sub, after in step.entries:
            ancestors.append(set(after).union(*(ancestors[i] for i in after)))
        seen, pairs = [], set()
        for j, (sub_leaves, sub_pairs) in enumerate(parts):
            seen += sub_leaves
            pairs |= sub_pairs
            pairs |= {(a, b) for i in ancestors[j] for a in parts[i][0] for b in sub_leaves}
        return seen, pairs
    raise TypeError(f"not a step: {step!r}")


def leaves(step: Step) -> list[str]:
    """The leaf labels of a tree, in tree order."""
    return _order(step)[0]


def must_precede(step: Step) -> Pairs:
    """Every (a, b) of leaf labels such that a must succeed before b may start."""
    return _order(step)[1]


def expected_delays(step: Step) -> Counter[str]:
    """Each leaf's delay in ms: the sum of the enclosing WithDelays it is an entry job of.

    A leaf is an entry job of `WithDelay(inner, d)` when no other leaf of `inner` must
    precede it; nested delays add.
    """
    delays: Counter[str] = Counter()
    _add_delays(step, delays)
    return delays


def _add_delays(step: Step, delays: Counter[str]) -> None:
    if isinstance(step, Signature):
        delays[str(step.args[0])] += 0
    elif isinstance(step, WithDelay):
        inner_leaves, inner_pairs = _order(step.step)
        waiting = {b for _a, b in inner_pairs}
        for label in inner_leaves:
            if label not in waiting:
                delays[label] += step.delay
        _add_delays(step.step, delays)
    elif isinstance(step, Chain | Group):
        for sub in step.steps:
            _add_delays(sub, delays)
    elif isinstance(step, Dag):
        for sub, _after in step.entries:
            _add_delays(sub, delays)


def reachable_pairs(graph: Graph) -> set[tuple[int, int]]:
    """Every (u, v) of node ids such that v is reachable from u along edges."""
    pairs: set[tuple[int, int]] = set()
    for node in graph.nodes:
        stack, seen = list(node.successors), set()
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(graph.nodes[current].successors)
        pairs |= {(node.id, v) for v in seen}
    return pairs
