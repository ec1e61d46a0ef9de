"""Workflow: compile a tree once, store the run, start it; and read a run's status."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from sideline.core.errors import RunExpired, WorkflowError
from sideline.core.jobs import Signature
from sideline.core.payload import Payload, check_json_native, encode
from sideline.core.results import JobInfo, ResultRecord
from sideline.core.run import (
    FailedNode,
    NodeError,
    NodeStatus,
    RunPlan,
    RunState,
    RunStatus,
    RunSummary,
    failed_nodes,
    start,
)
from sideline.core.workflow import Chain, Graph, Group, Step, WithDelay, compile
from sideline.runtime._env import new_id
from sideline.runtime.control import run_target
from sideline.runtime.jobs import declaring_app
from sideline.runtime.typed import RunAccess

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["NodeInfo", "RunInfo", "Workflow", "cancel", "runs", "status", "wait"]


class Workflow:
    """A workflow ready to run: `Workflow(Chain(a.s(), Group(b.s(), c.s()))).run()`.

    Args:
        tree: a job signature, Chain, Group, WithDelay or Dag.
        app: the App whose jobs the tree uses (default: the live app that declared the
            tree's first job, see `declaring_app`).
        on_success: a job signature pushed once when every node succeeded; called with
            the run id first, then its own arguments.
        on_failure: likewise, pushed once when the first node dies.
        ttl_s: how long the run's state lives after its last change, while it can still
            progress (default: the app's run_ttl_s). Once finished, the run lingers for
            the app's finished_ttl_s instead.
        memory: JSON-native values seeded into the run's memory before its first step
            runs (typed steps are hydrated from it; see docs/typed.md).
    """

    def __init__(self, tree: Step, *, app: App | None = None,
                 on_success: Signature | None = None, on_failure: Signature | None = None,
                 ttl_s: int | None = None, memory: Mapping[str, Any] | None = None) -> None:
        self.tree = tree
        found = app or _find_app(tree) or _find_app_in(on_success, on_failure)
        if found is None:
            raise WorkflowError("Workflow needs an app: pass app=..., or use jobs declared "
                                "with @app.job on a live App")
        self.app: App = found
        compiled = compile(tree)
        registry = self.app.registry
        # Resolve each node's queue now: an unknown job fails here, and status shows queues.
        self.graph: Graph = Graph(tuple(
            attrs.evolve(node, queue=node.queue or registry.get(node.job).options.queue)
            for node in compiled.nodes))
        self.on_success = on_success
        self.on_failure = on_failure
        self.ttl_s = ttl_s if ttl_s is not None else self.app.run_ttl_s
        self.memory = dict(memory or {})
        for key, value in self.memory.items():
            check_json_native(value, f"run memory {key!r}")

    def run(self) -> str:
        """Store the run and push its entry jobs atomically; return the run id."""
        app = self.app
        run_id = new_id()
        now = app.clock.now()
        built = [self._through_middleware(app.client.build_payload(
            node.job, node.args, node.kwargs, jid=f"{run_id}.{node.id}", run_id=run_id,
            node_id=node.id, created_at=now, queue=node.queue, memory_ns=node.memory_ns,
            memory_reads=dict(node.memory_reads))) for node in self.graph.nodes]
        # Middleware may move a step to another queue: the stored graph follows the payload.
        graph = Graph(tuple(attrs.evolve(node, queue=payload.queue)
                            for node, payload in zip(self.graph.nodes, built, strict=True)))
        payloads = tuple(encode(payload) for payload in built)
        plan = RunPlan(run_id, graph, payloads, self._callback(run_id, "success", now),
                       self._callback(run_id, "failure", now), self.ttl_s,
                       app.finished_ttl_s, app.keep_memory)
        state, transition = start(plan, now)
        if self.memory:  # before the run exists, so its first step finds the values
            app.backend.write(run_id, self.memory, max(self.ttl_s, app.run_ttl_s), now)
        # An empty run is over at once: create_run compacts it and clears that memory.
        app.backend.create_run(state, transition, now)
        app.after_push()
        return run_id

    def _callback(self, run_id: str, which: str, now: float) -> str | None:
        sig = self.on_success if which == "success" else self.on_failure
        if sig is None:
            return None
        return encode(self._through_middleware(self.app.client.build_payload(
            sig.job, (run_id, *sig.args), dict(sig.kwargs), jid=f"{run_id}.{which}",
            created_at=now, **({"queue": sig.queue} if sig.queue else {}))))

    def _through_middleware(self, payload: Payload) -> Payload:
        """Client middleware sees every step; it may change one but not drop it."""
        changed = self.app.client.through_middleware(payload)
        if changed is None:
            raise WorkflowError(
                f"client middleware dropped workflow step {payload.name} ({payload.jid}); a "
                "workflow cannot skip a step: raise JobRejected to refuse the whole run")
        if (changed.run_id, changed.node_id, changed.jid) != (
                payload.run_id, payload.node_id, payload.jid):
            raise WorkflowError(
                f"client middleware changed run_id, node_id or jid of {payload.jid}; "
                "those identify the step and must stay")
        return changed


def _find_app(step: Step) -> App | None:
    if isinstance(step, Signature):
        return declaring_app(step.job)
    children: tuple[Any, ...]
    if isinstance(step, WithDelay):
        children = (step.step,)
    elif isinstance(step, Chain | Group):
        children = step.steps
    else:
        children = tuple(sub for sub, _after in step.entries)
    for child in children:
        found = _find_app(child)
        if found is not None:
            return found
    return None


def _find_app_in(*sigs: Signature | None) -> App | None:
    for sig in sigs:
        found = None if sig is None else declaring_app(sig.job)
        if found is not None:
            return found
    return None


@attrs.frozen
class NodeInfo:
    """One node of a run, for status displays.

    `started_at` is when the node last became running (a retry of a running node keeps
    it), `ended_at` when it last became succeeded or dead (None while it runs again),
    `attempts` how many times its job began running, retries and re-runs included. A dead
    node reports the error it died of (either part may be unknown).
    """

    id: int
    job: str
    status: NodeStatus
    queue: str | None
    successors: tuple[int, ...]
    args: tuple[Any, ...] = ()
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    error_class: str | None = None
    error_message: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from its last start to its end, once it ended after that start."""
        if self.started_at is None or self.ended_at is None or self.ended_at < self.started_at:
            return None
        return self.ended_at - self.started_at


@attrs.frozen
class RunInfo:
    """A snapshot of a run: its status and every node's status.

    A run that finished succeeded or cancelled is compacted to a summary (see
    docs/workflows.md): then `compacted` is True and `nodes` is empty, while `counts()`
    and `failed` still answer.
    """

    run_id: str
    status: RunStatus
    created_at: float
    updated_at: float
    finished_at: float | None
    nodes: tuple[NodeInfo, ...]
    failed: tuple[FailedNode, ...] = ()
    """The dead nodes: job, and the error it died of if known."""
    compacted: bool = False
    node_counts: dict[str, int] = attrs.field(factory=dict)
    """How many nodes ended in each status, for a compacted run (else see counts())."""
    outputs: dict[int, ResultRecord] = attrs.field(factory=dict)
    """Node id -> its stored result (`app.status(run_id, results=True)`, steps whose job
    stores results): `.value`, or `.error_class`/`.error_message` for a dead step."""

    running: dict[int, JobInfo] = attrs.field(factory=dict)
    """Node id -> what its running job reported (`app.status(run_id, results=True)`):
    `.progress`, `.message`, `.meta`."""

    def output(self, node_id: int) -> Any:
        """The stored value of step `node_id`.

        Raises:
            JobFailed: the step died.
            KeyError: no result is stored for it (not asked for, not finished, or its job
                does not store results).
        """
        return self.outputs[node_id].value_or_raise(f"{self.run_id}.{node_id}")

    @property
    def finished(self) -> bool:
        """True once the run can make no more progress on its own."""
        return self.finished_at is not None

    def counts(self) -> dict[str, int]:
        """How many nodes are in each status."""
        if self.compacted:
            return dict(self.node_counts)
        return dict(Counter(str(node.status) for node in self.nodes))


def _info(state: RunState | RunSummary) -> RunInfo:
    if isinstance(state, RunSummary):
        return RunInfo(state.run_id, state.status, state.created_at, state.updated_at,
                       state.finished_at, (), state.failed, True, dict(state.counts))
    nodes = []
    for node in state.plan.graph.nodes:
        status = state.nodes[node.id]
        # only a dead node reports its error (a revived one keeps it in the state)
        error = state.errors.get(node.id, NodeError()) if status is NodeStatus.DEAD else (
            NodeError())
        nodes.append(NodeInfo(
            node.id, node.job, status, node.queue, node.successors, node.args,
            state.started_at.get(node.id), state.ended_at.get(node.id),
            state.attempts.get(node.id, 0), error.error_class, error.error_message))
    return RunInfo(state.plan.run_id, state.status, state.created_at, state.updated_at,
                   state.finished_at, tuple(nodes), failed_nodes(state))


def status(app: RunAccess, run_id: str, *, results: bool = False) -> RunInfo:
    """The run's status and every node's status (only node counts and dead nodes once
    the run finished succeeded or cancelled and was compacted); with `results`, the
    stored results of its steps too (`RunInfo.outputs`).

    Raises:
        RunExpired: the run's state is missing (expired or never existed).
    """
    state = app.backend.get_run(run_id, app.clock.now())
    if state is None:
        raise RunExpired(f"run {run_id!r} has no state: it expired or never existed")
    info = _info(state)
    if not results:
        return info
    ids = [node.id for node in info.nodes] if info.nodes else list(
        range(sum(info.node_counts.values())))
    stored = app.backend.get_results([f"{run_id}.{node}" for node in ids])
    outputs = {node: ResultRecord.decode(text) for node, text in zip(ids, stored, strict=True)
               if text is not None}
    running = {node.id: JobInfo.of(f"{run_id}.{node.id}",
                                   app.backend.job_info(f"{run_id}.{node.id}"), None)
               for node in info.nodes if node.status is NodeStatus.RUNNING}
    return attrs.evolve(info, outputs=outputs, running=running)


def runs(app: RunAccess, status: RunStatus | str | None = None, page: int = 1,
         per_page: int = 25) -> list[RunInfo]:
    """A page of the newest runs (newest first), only those in `status` if given.

    Reads the runs index (the newest core.run.RUN_INDEX_SIZE runs; runs gone from the
    store are dropped from it as they are met) window by window, so a filtered page reads
    past the runs it skips.

    Raises:
        ValueError: `page` or `per_page` is below 1, or `status` is not a run status.
    """
    if page < 1 or per_page < 1:
        raise ValueError(f"page and per_page start at 1, got page={page} per_page={per_page}")
    wanted = None if status is None else RunStatus(status)
    if wanted is None:  # every listed run counts: read just the page's window
        batch = app.backend.recent_runs((page - 1) * per_page, per_page, app.clock.now())
        return [_info(state) for state in batch]
    skip, position, window = (page - 1) * per_page, 0, max(per_page, 100)
    found: list[RunInfo] = []
    while len(found) < per_page:
        batch = app.backend.recent_runs(position, window, app.clock.now())
        for state in batch:
            if state.status is not wanted or len(found) == per_page:
                continue
            if skip:
                skip -= 1
            else:
                found.append(_info(state))
        if len(batch) < window:
            break  # the index is exhausted
        position += len(batch)
    return found


def cancel(app: RunAccess, run_id: str) -> bool:
    """Cancel a run: queued and waiting nodes never start; False if it already ended.

    The run is compacted to its summary and its memory cleared (unless the app keeps
    it) in the same atomic step. Its running steps are asked to stop (as
    `app.admin.stop_job` does) and are acked, not kept dead; one that still writes its
    output afterwards leaves it to expire by TTL.
    """
    now = app.clock.now()
    cancelled = app.backend.cancel_run(run_id, now)
    if cancelled:  # its running steps are stopped by their workers (runtime/control.py)
        app.backend.request_stop([run_target(run_id)], now)
    return cancelled


def wait(app: RunAccess, run_id: str, timeout_s: float = 30.0) -> RunInfo:
    """Block until the run finishes (or `timeout_s` passes); return its last status.

    Blocks on the run's completion signal (`ResultStore.wait_run`), given by the atomic
    step that finishes it: no polling.

    Raises:
        TimeoutError: the run did not finish in time (its status is in the message).
        RunExpired: the run's state is missing.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        info = status(app, run_id)
        if info.finished:
            return info
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise TimeoutError(f"run {run_id} not finished after {timeout_s} s: "
                               f"{info.status}, nodes {info.counts()}")
        app.backend.wait_run(run_id, left_s)
