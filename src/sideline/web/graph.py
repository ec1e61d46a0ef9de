"""The layout of a workflow run's graph, drawn by the run page as server-side SVG.

A pure function from nodes and their successors to positions: each node goes in the
layer (column) of its longest path from a root, so every edge points right; within a
layer nodes are ordered by the mean height of their predecessors (fewer crossings),
and each layer is centred on the tallest one. Edges are cubic curves from the right
side of a box to the left side of its successor's box, ending where the arrow marker
goes. Nothing here knows about runs or HTML; ids are whatever the caller uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

__all__ = ["Arrow", "Box", "Layout", "layers", "layout"]

BOX_WIDTH = 172.0
BOX_HEIGHT = 44.0
GAP_X = 56.0
"""Horizontal space between two layers (where the edges run)."""
GAP_Y = 14.0
"""Vertical space between two boxes of one layer."""
MARGIN = 12.0


@attrs.frozen
class Box:
    """A node's box: its layer (0 for roots), its row in the layer, its top-left corner."""

    id: int
    layer: int
    row: int
    x: float
    y: float


@attrs.frozen
class Arrow:
    """An edge from `source` to `target`, as SVG path data."""

    source: int
    target: int
    path: str


@attrs.frozen
class Layout:
    """Where everything goes: the boxes (in id order), the edges, the drawing's size."""

    width: float
    height: float
    box_width: float
    box_height: float
    boxes: tuple[Box, ...]
    arrows: tuple[Arrow, ...]

    def box(self, node_id: int) -> Box:
        """The box of `node_id`."""
        for placed in self.boxes:
            if placed.id == node_id:
                return placed
        raise KeyError(node_id)


def layers(successors: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """Each node's layer: the length of the longest path reaching it from a root.

    Args:
        successors: every node id -> the ids of the nodes that run after it.

    Raises:
        ValueError: a successor is not a node, or the graph has a cycle.
    """
    indegree = dict.fromkeys(successors, 0)
    for node, after in successors.items():
        for target in after:
            if target not in indegree:
                raise ValueError(f"node {node} has successor {target}, which is not a node")
            indegree[target] += 1
    depth = dict.fromkeys(successors, 0)
    ready = sorted(node for node, count in indegree.items() if count == 0)
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for target in successors[node]:
            depth[target] = max(depth[target], depth[node] + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if seen != len(successors):
        raise ValueError("the graph has a cycle: a workflow is a DAG")
    return depth


def layout(successors: Mapping[int, Sequence[int]], *, box_width: float = BOX_WIDTH,
           box_height: float = BOX_HEIGHT, gap_x: float = GAP_X, gap_y: float = GAP_Y,
           margin: float = MARGIN) -> Layout:
    """Place every node (see the module's docstring); an empty graph is a margin only.

    Raises:
        ValueError: as `layers`.
    """
    depth = layers(successors)
    predecessors: dict[int, list[int]] = {node: [] for node in successors}
    for node, after in successors.items():
        for target in dict.fromkeys(after):
            predecessors[target].append(node)
    columns: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in sorted(depth):
        columns[depth[node]].append(node)
    tallest = max((len(column) for column in columns), default=0)
    pitch = box_height + gap_y
    centre: dict[int, float] = {}  # the vertical centre of each placed node
    boxes: dict[int, Box] = {}
    for index, column in enumerate(columns):
        if index:  # order by the mean height of predecessors (all in earlier layers)
            column.sort(key=lambda node: (
                sum(centre[p] for p in predecessors[node]) / len(predecessors[node]), node))
        top = margin + (tallest - len(column)) * pitch / 2
        x = margin + index * (box_width + gap_x)
        for row, node in enumerate(column):
            y = top + row * pitch
            boxes[node] = Box(node, index, row, x, y)
            centre[node] = y + box_height / 2
    arrows = []
    for node in sorted(successors):
        start = boxes[node]
        for target in dict.fromkeys(successors[node]):
            end = boxes[target]
            x1, y1 = start.x + box_width, centre[node]
            x2, y2 = end.x, centre[target]
            bend = max(gap_x / 2, (x2 - x1) / 4)
            arrows.append(Arrow(node, target, (
                f"M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} {x2 - bend:g},{y2:g} {x2:g},{y2:g}")))
    width = 2 * margin + len(columns) * box_width + max(len(columns) - 1, 0) * gap_x
    height = 2 * margin + tallest * box_height + max(tallest - 1, 0) * gap_y
    return Layout(width, height, box_width, box_height,
                  tuple(boxes[node] for node in sorted(boxes)), tuple(arrows))
