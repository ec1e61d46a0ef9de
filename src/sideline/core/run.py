"""The run state machine: what a node's completion, death or a cancel changes.

Every function here is pure: it reads a `RunState` and returns a `Transition`
(plain values); `apply` writes a transition into the state. Adapters perform
plan + apply + the resulting pushes as one atomic operation.
"""

from __future__ import annotations

import enum
from collections import Counter

import attrs

from sideline.core.errors import WorkflowError
from sideline.core.workflow import Graph

__all__ = [
    "FINISHED_TTL_S",
    "RUN_INDEX_SIZE",
    "RUN_TTL_HEADROOM",
    "RUN_TTL_S",
    "SETTLED",
    "STOPPABLE",
    "Begin",
    "FailedNode",
    "NodeError",
    "NodeStatus",
    "Release",
    "RunPlan",
    "RunState",
    "RunStatus",
    "RunSummary",
    "Transition",
    "apply",
    "failed_nodes",
    "next_expiry",
    "plan_begin",
    "plan_cancel",
    "plan_complete",
    "plan_fail",
    "plan_revive",
    "start",
    "summarize",
]

RUN_TTL_S = 7 * 24 * 3600
"""Default seconds a run's state lives after its last change while it can progress."""
FINISHED_TTL_S = 24 * 3600
"""Default seconds a finished run lingers (its summary, or a failed run's whole state)."""
RUN_TTL_HEADROOM = 0.1
"""A change that finds less than `ttl_s` left sets the expiry to now + (1 + this) x `ttl_s`:
a run lives between `ttl_s` and 1.1 x `ttl_s` after its last change, and its keys' TTLs are
rewritten about once per 0.1 x `ttl_s` instead of at every step."""
RUN_INDEX_SIZE = 10_000
"""How many of the newest runs the runs index (WorkflowStore.recent_runs) keeps."""


class NodeStatus(enum.StrEnum):
    """The life of one workflow node."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class RunStatus(enum.StrEnum):
    """The life of one workflow run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Begin(enum.StrEnum):
    """Whether a fetched workflow job should run."""

    RUN = "run"
    SKIP = "skip"
    """The node already succeeded, or the run was cancelled or has finished and been
    compacted to its summary: ack without running."""


@attrs.frozen
class RunPlan:
    """The immutable part of a run: its graph and the payload each node pushes when released.

    `node_payloads[i]` is the encoded payload of node i; callbacks are encoded
    payloads too (or None). Stored once per run, so a job's payload stays O(1).
    `ttl_s` is how long the state lives after its last change while the run can
    progress, `finished_ttl_s` how long a finished run lingers; `keep_memory` keeps the
    run's memory when it succeeds or is cancelled (else it is cleared in that same step).
    """

    run_id: str
    graph: Graph
    node_payloads: tuple[str, ...]
    on_success: str | None = None
    on_failure: str | None = None
    ttl_s: int = RUN_TTL_S
    finished_ttl_s: int = FINISHED_TTL_S
    keep_memory: bool = False


@attrs.frozen
class NodeError:
    """What a node's job died of, as its dead payload recorded it (either part may be unknown)."""

    error_class: str | None = None
    error_message: str | None = None


@attrs.define
class RunState:
    """A run's progress: a status per node, a remaining-predecessor count per node."""

    plan: RunPlan
    status: RunStatus
    nodes: list[NodeStatus]
    remaining: list[int]
    created_at: float
    updated_at: float
    finished_at: float | None = None
    failure_fired: bool = False
    errors: dict[int, NodeError] = attrs.field(factory=dict)
    """The last error each node died of (kept after a revive; only dead nodes report it)."""
    started_at: dict[int, float] = attrs.field(factory=dict)
    """When each node last became running (a retry of a running node keeps it)."""
    ended_at: dict[int, float] = attrs.field(factory=dict)
    """When each node last became succeeded or dead (cleared when it becomes running)."""
    attempts: dict[int, int] = attrs.field(factory=dict)
    """How many times each node's job began running: +1 each time begin_node says RUN (a
    retry and a revived node's re-run included); counted by the adapter's begin_node."""

    def copy(self) -> RunState:
        """An independent copy (the plan is immutable and shared; the containers are copied)."""
        return attrs.evolve(self, nodes=list(self.nodes), remaining=list(self.remaining),
                            errors=dict(self.errors), started_at=dict(self.started_at),
                            ended_at=dict(self.ended_at), attempts=dict(self.attempts))


@attrs.frozen
class FailedNode:
    """A dead node in a run's summary: its job and the error it died of, if known."""

    node_id: int
    job: str
    error_class: str | None = None
    error_message: str | None = None


@attrs.frozen
class RunSummary:
    """What is kept of a run that finished succeeded or cancelled: its graph and payloads
    are gone, its outcome stays for the plan's `finished_ttl_s`.

    `counts` maps each node status to how many nodes ended in it; `failed` lists the
    dead nodes (allowed failures of a succeeded run, or those of a cancelled one).
    """

    run_id: str
    status: RunStatus
    created_at: float
    updated_at: float
    finished_at: float
    counts: dict[str, int]
    failed: tuple[FailedNode, ...] = ()


@attrs.frozen
class Release:
    """A node that became ready: push it now, or schedule it `delay_ms` milliseconds later."""

    node_id: int
    delay_ms: int


@attrs.frozen
class Transition:
    """The changes one event makes to a run."""

    nodes: dict[int, NodeStatus] = attrs.field(factory=dict)
    remaining: dict[int, int] = attrs.field(factory=dict)
    releases: tuple[Release, ...] = ()
    status: RunStatus | None = None
    callback: str | None = None
    """'success' or 'failure' when this transition fires that callback."""
    finished: bool = False
    reopened: bool = False
    """True when a finished run has work again (a dead node was revived)."""
    errors: dict[int, NodeError] = attrs.field(factory=dict)
    """The error of each node this transition marks dead (when the adapter knows it)."""

    @property
    def noop(self) -> bool:
        """True when nothing changes."""
        return not (self.nodes or self.remaining or self.releases or self.status or self.callback
                    or self.errors)

    @property
    def compacts(self) -> bool:
        """True when this transition finishes the run succeeded or cancelled: the adapter then
        keeps only the run's summary (see `summarize`) and, unless the plan keeps memory,
        clears the run's memory, in the same atomic step. A failed run keeps its whole
        state while it lingers, since retrying a dead node by hand resumes it."""
        return self.finished and self.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED)


SETTLED = frozenset({NodeStatus.SUCCEEDED, NodeStatus.DEAD, NodeStatus.SKIPPED,
                     NodeStatus.CANCELLED})
"""Node statuses from which a node makes no more progress on its own."""
STOPPABLE = frozenset({NodeStatus.PENDING, NodeStatus.QUEUED, NodeStatus.SCHEDULED,
                       NodeStatus.SKIPPED})
"""Node statuses a cancel stops (the node becomes cancelled); running nodes finish."""


def start(plan: RunPlan, now: float) -> tuple[RunState, Transition]:
    """Create the state of a new run and the transition that releases its entry nodes."""
    graph = plan.graph
    state = RunState(
        plan=plan,
        status=RunStatus.RUNNING,
        nodes=[NodeStatus.PENDING] * len(graph.nodes),
        remaining=[node.predecessors for node in graph.nodes],
        created_at=now,
        updated_at=now,
    )
    releases = tuple(Release(n.id, n.delay_ms) for n in graph.entry_nodes())
    transition = Transition(
        nodes={r.node_id: _released_status(r) for r in releases},
        releases=releases,
    )
    if not graph.nodes:
        transition = Transition(status=RunStatus.SUCCEEDED, callback="success", finished=True)
    return state, transition


# Lua twin: plan_begin in adapters/redis/lua/_lib.lua (keep the two in step).
def plan_begin(state: RunState, node_id: int) -> tuple[Begin, Transition]:
    """Decide whether a fetched job of `node_id` runs, and mark it running if so."""
    _check_node(state, node_id)
    current = state.nodes[node_id]
    if current is NodeStatus.SUCCEEDED or state.status is RunStatus.CANCELLED or (
            current is NodeStatus.CANCELLED):
        return Begin.SKIP, Transition()
    if current is NodeStatus.DEAD:
        # A dead node runs again only once revived (queued). A stray copy is skipped; an
        # allowed failure retried by hand runs but stays dead until it succeeds, since its
        # successors were already counted when it died.
        allowed = state.plan.graph.nodes[node_id].allow_failure
        return (Begin.RUN if allowed else Begin.SKIP), Transition()
    if current is NodeStatus.RUNNING:
        return Begin.RUN, Transition()
    return Begin.RUN, Transition(nodes={node_id: NodeStatus.RUNNING})


# Lua twin: plan_complete in adapters/redis/lua/_lib.lua (keep the two in step).
def plan_complete(state: RunState, node_id: int) -> Transition:
    """Node `node_id` succeeded: count it once, release the successors whose barrier hit zero."""
    _check_node(state, node_id)
    if state.nodes[node_id] is NodeStatus.SUCCEEDED:
        return Transition()  # idempotent: a redelivered step counts once
    nodes = {node_id: NodeStatus.SUCCEEDED}
    if state.nodes[node_id] is NodeStatus.DEAD and state.plan.graph.nodes[node_id].allow_failure:
        return Transition(nodes=nodes)  # its successors were released when it died
    return _finish_node(state, node_id, nodes)


# Lua twin: plan_fail in adapters/redis/lua/_lib.lua (keep the two in step).
def plan_fail(state: RunState, node_id: int, error: NodeError | None = None) -> Transition:
    """Node `node_id` died (of `error`, if known): mark the run failed and its dependants
    skipped (unless the node may fail)."""
    transition = _fail(state, node_id)
    if error is None or transition.nodes.get(node_id) is not NodeStatus.DEAD:
        return transition
    return attrs.evolve(transition, errors={node_id: error})


def _fail(state: RunState, node_id: int) -> Transition:
    _check_node(state, node_id)
    if state.nodes[node_id] in (NodeStatus.SUCCEEDED, NodeStatus.DEAD):
        return Transition()
    graph_node = state.plan.graph.nodes[node_id]
    nodes = {node_id: NodeStatus.DEAD}
    if graph_node.allow_failure:
        return _finish_node(state, node_id, nodes)
    for descendant in state.plan.graph.descendants(node_id):
        if state.nodes[descendant] is NodeStatus.PENDING:
            nodes[descendant] = NodeStatus.SKIPPED
    if state.status is RunStatus.RUNNING:
        fire = None if state.failure_fired else "failure"
        return Transition(nodes=nodes, status=RunStatus.FAILED, callback=fire,
                          finished=_all_done(state, nodes))
    return Transition(nodes=nodes, finished=state.finished_at is None and _all_done(state, nodes))


# Lua twin: plan_revive in adapters/redis/lua/_lib.lua (keep the two in step).
def plan_revive(state: RunState, node_id: int) -> Transition:
    """A dead node is retried by hand: queue it again and un-skip what only it blocked."""
    _check_node(state, node_id)
    if state.nodes[node_id] is not NodeStatus.DEAD or state.status is RunStatus.CANCELLED or (
            state.plan.graph.nodes[node_id].allow_failure):
        return Transition()  # an allowed failure already let its successors run
    nodes = {node_id: NodeStatus.QUEUED}
    nodes.update(_unskip(state, nodes))
    status = RunStatus.RUNNING if not _blocking_dead(state, nodes) else None
    return Transition(nodes=nodes, status=status, reopened=True)


# Lua twin: plan_cancel in adapters/redis/lua/_lib.lua (keep the two in step).
def plan_cancel(state: RunState) -> Transition:
    """Cancel a run: nodes not yet running are cancelled; running ones finish but release nothing."""
    if state.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
        return Transition()
    nodes = {i: NodeStatus.CANCELLED for i, s in enumerate(state.nodes) if s in STOPPABLE}
    return Transition(nodes=nodes, status=RunStatus.CANCELLED, finished=True)


def apply(state: RunState, transition: Transition, now: float) -> None:
    """Write `transition` into `state` (the adapter's half of plan + apply), stamping the
    node times: a node becoming running starts (its end is cleared), one becoming
    succeeded or dead ends."""
    for node_id, status in transition.nodes.items():
        if state.nodes[node_id] is not status:
            _stamp(state, node_id, status, now)
        state.nodes[node_id] = status
    for node_id, count in transition.remaining.items():
        state.remaining[node_id] = count
    if transition.status is not None:
        state.status = transition.status
    if transition.callback == "failure":
        state.failure_fired = True
    state.errors.update(transition.errors)
    if transition.finished:
        state.finished_at = now
    elif transition.status is RunStatus.RUNNING or transition.reopened:
        state.finished_at = None
    state.updated_at = now


def next_expiry(state: RunState, transition: Transition, expires_at: float, now: float) -> float:
    """When the run's state expires once `transition` was applied to `state` at `now`.

    The transition that finishes the run sets it to now + `finished_ttl_s` (the linger
    replaces the run's TTL, shorter or not); touching a finished run leaves it alone; any
    other change that finds less than `ttl_s` left pushes it back to now + `ttl_s` plus
    the headroom (RUN_TTL_HEADROOM), and one that finds at least `ttl_s` left keeps it:
    never brought forward, so an `extend_run_ttl` is not undone by a sibling's advance,
    and most steps write no expiry at all.
    """
    if transition.finished:
        return now + state.plan.finished_ttl_s
    ttl = state.plan.ttl_s
    if state.finished_at is not None or expires_at >= now + ttl:
        return expires_at
    return now + ttl * (1 + RUN_TTL_HEADROOM)


def summarize(state: RunState) -> RunSummary:
    """The summary a finished run is compacted to: times, node status counts, dead nodes."""
    if state.finished_at is None:
        raise WorkflowError(f"run {state.plan.run_id} has not finished: it has no summary yet")
    return RunSummary(state.plan.run_id, state.status, state.created_at, state.updated_at,
                      state.finished_at, dict(sorted(Counter(map(str, state.nodes)).items())),
                      failed_nodes(state))


def failed_nodes(state: RunState) -> tuple[FailedNode, ...]:
    """The run's dead nodes, with their job and the error each died of if known."""
    failed = []
    for node_id, status in enumerate(state.nodes):
        if status is NodeStatus.DEAD:
            error = state.errors.get(node_id, NodeError())
            failed.append(FailedNode(node_id, state.plan.graph.nodes[node_id].job,
                                     error.error_class, error.error_message))
    return tuple(failed)


# Lua twin: finish_node in adapters/redis/lua/_lib.lua (keep the two in step).
def _finish_node(state: RunState, node_id: int, nodes: dict[int, NodeStatus]) -> Transition:
    """Shared tail of success and allowed failure: decrement successors, release, settle."""
    graph = state.plan.graph
    was_blocking = state.nodes[node_id] is NodeStatus.DEAD and not graph.nodes[node_id].allow_failure
    remaining: dict[int, int] = {}
    releases: list[Release] = []
    cancelled = state.status is RunStatus.CANCELLED
    for succ in graph.nodes[node_id].successors:
        count = state.remaining[succ] - 1
        if count < 0:
            raise WorkflowError(
                f"run {state.plan.run_id}: node {succ} barrier went below zero; run state is "
                "corrupt")
        remaining[succ] = count
        if count == 0 and not cancelled:
            release = Release(succ, graph.nodes[succ].delay_ms)
            releases.append(release)
            nodes[succ] = _released_status(release)
    if was_blocking:
        for unskipped, status in _unskip(state, nodes).items():
            nodes.setdefault(unskipped, status)
    if cancelled:
        return Transition(nodes=nodes, remaining=remaining)
    run_status: RunStatus | None = None
    callback: str | None = None
    finished = False
    merged = [nodes.get(i, s) for i, s in enumerate(state.nodes)]
    if all(s is NodeStatus.SUCCEEDED or (s is NodeStatus.DEAD and graph.nodes[i].allow_failure)
           for i, s in enumerate(merged)):
        run_status, callback, finished = RunStatus.SUCCEEDED, "success", True
    elif state.status is RunStatus.FAILED and not _blocking_dead(state, nodes):
        run_status = RunStatus.RUNNING
    elif state.status is RunStatus.FAILED and _all_done(state, nodes):
        finished = state.finished_at is None
    # A failed run that had finished is unfinished again once it has work left (a late
    # success of a dead node released or un-skipped something).
    reopened = (state.status is RunStatus.FAILED and state.finished_at is not None
                and not finished and not _all_done(state, nodes))
    return Transition(nodes=nodes, remaining=remaining, releases=tuple(releases),
                      status=run_status, callback=callback, finished=finished,
                      reopened=reopened)


def _stamp(state: RunState, node_id: int, status: NodeStatus, now: float) -> None:
    if status is NodeStatus.RUNNING:
        state.started_at[node_id] = now
        state.ended_at.pop(node_id, None)
    elif status in (NodeStatus.SUCCEEDED, NodeStatus.DEAD):
        state.ended_at[node_id] = now


def _released_status(release: Release) -> NodeStatus:
    return NodeStatus.SCHEDULED if release.delay_ms > 0 else NodeStatus.QUEUED


def _blocking_dead(state: RunState, changes: dict[int, NodeStatus]) -> set[int]:
    graph = state.plan.graph
    return {
        i for i, s in enumerate(state.nodes)
        if changes.get(i, s) is NodeStatus.DEAD and not graph.nodes[i].allow_failure
    }


# Lua twin: unskip in adapters/redis/lua/_lib.lua (keep the two in step).
def _unskip(state: RunState, changes: dict[int, NodeStatus]) -> dict[int, NodeStatus]:
    """Skipped nodes that no blocking dead node reaches any more go back to pending."""
    still_blocked: set[int] = set()
    for dead in _blocking_dead(state, changes):
        still_blocked |= state.plan.graph.descendants(dead)
    return {
        i: NodeStatus.PENDING for i, s in enumerate(state.nodes)
        if changes.get(i, s) is NodeStatus.SKIPPED and i not in still_blocked
    }


def _all_done(state: RunState, changes: dict[int, NodeStatus]) -> bool:
    return all(changes.get(i, s) in SETTLED for i, s in enumerate(state.nodes))


def _check_node(state: RunState, node_id: int) -> None:
    if not 0 <= node_id < len(state.nodes):
        raise WorkflowError(
            f"run {state.plan.run_id} has no node {node_id} (it has {len(state.nodes)} nodes)")
