"""Check a recorded execution against a graph: every node once, every edge respected."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs

from sideline.core.workflow import Graph

__all__ = ["Event", "order_violations"]


@attrs.frozen
class Event:
    """One step of an execution trace: node `node_id` started or ended (`kind`)."""

    kind: str
    node_id: int


def order_violations(graph: Graph, trace: Sequence[Event]) -> list[str]:
    """Return what the trace does wrong (empty when it is a valid run of `graph`).

    A valid trace starts and ends every node exactly once, and for each edge
    u -> v, u's end comes before v's start.
    """
    problems: list[str] = []
    starts = Counter(e.node_id for e in trace if e.kind == "start")
    ends = Counter(e.node_id for e in trace if e.kind == "end")
    for node in graph.nodes:
        if starts[node.id] != 1 or ends[node.id] != 1:
            problems.append(f"node {node.id} ({node.job}) started {starts[node.id]} and ended "
                            f"{ends[node.id]} times; expected once each")
    position = {(e.kind, e.node_id): i for i, e in enumerate(trace)}
    for node in graph.nodes:
        for succ in node.successors:
            end, begin = position.get(("end", node.id)), position.get(("start", succ))
            if end is not None and begin is not None and begin < end:
                problems.append(f"node {succ} ({graph.nodes[succ].job}) started before its "
                                f"predecessor {node.id} ({node.job}) ended")
    return problems
