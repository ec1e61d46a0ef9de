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
from sideline.core.run import (
    FailedNode,
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
from sideline.runtime.middleware import run_client_chain

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["NodeInfo", "RunInfo", "Workflow", "cancel", "status", "wait"]


class Workflow:
    """A workflow ready to run: `Workflow(Chain(a.s(), Group(b.s(), c.s()))).run()`.

    Args:
        tree: a job signature, Chain, Group, WithDelay or Dag.
        app: the App whose jobs the tree uses (found from the tree's signatures if omitted).
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
            raise WorkflowError("Workflow needs an app: pass app=..., or build steps with job.s()")
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
        built = [self._through_middleware(app.build_payload(
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
        return encode(self._through_middleware(self.app.build_payload(
            sig.job, (run_id, *sig.args), dict(sig.kwargs), jid=f"{run_id}.{which}",
            created_at=now, **({"queue": sig.queue} if sig.queue else {}))))

    def _through_middleware(self, payload: Payload) -> Payload:
        """Client middleware sees every step; it may change one but not drop it."""
        changed = run_client_chain(self.app.client_middleware, payload)
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
        return step.app  # type: ignore[return-value]  # Signature.app is opaque to the core
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
        if sig is not None and sig.app is not None:
            return sig.app  # type: ignore[return-value]
    return None


@attrs.frozen
class NodeInfo:
    """One node of a run, for status displays."""

    id: int
    job: str
    status: NodeStatus
    queue: str | None
    successors: tuple[int, ...]
    args: tuple[Any, ...] = ()


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
    nodes = tuple(
        NodeInfo(node.id, node.job, state.nodes[node.id], node.queue, node.successors,
                 node.args)
        for node in state.plan.graph.nodes
    )
    return RunInfo(state.plan.run_id, state.status, state.created_at, state.updated_at,
                   state.finished_at, nodes, failed_nodes(state))


def status(app: App, run_id: str) -> RunInfo:
    """The run's status and every node's status (only node counts and dead nodes once
    the run finished succeeded or cancelled and was compacted).

    Raises:
        RunExpired: the run's state is missing (expired or never existed).
    """
    state = app.backend.get_run(run_id, app.clock.now())
    if state is None:
        raise RunExpired(f"run {run_id!r} has no state: it expired or never existed")
    return _info(state)


def cancel(app: App, run_id: str) -> bool:
    """Cancel a run: queued and waiting nodes never start; False if it already ended.

    The run is compacted to its summary and its memory cleared (unless the app keeps
    it) in the same atomic step; a step still running when the run is cancelled may
    write its output afterwards, which then expires by TTL.
    """
    return app.backend.cancel_run(run_id, app.clock.now())


def wait(app: App, run_id: str, timeout_s: float = 30.0, poll_s: float = 0.01) -> RunInfo:
    """Block until the run finishes (or `timeout_s` passes); return its last status.

    Raises:
        TimeoutError: the run did not finish in time (its status is in the message).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        info = status(app, run_id)
        if info.finished:
            return info
        if time.monotonic() >= deadline:
            raise TimeoutError(f"run {run_id} not finished after {timeout_s} s: "
                               f"{info.status}, nodes {info.counts()}")
        time.sleep(poll_s)
