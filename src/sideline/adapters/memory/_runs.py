"""WorkflowStore of the memory backend: runs planned by core.run and applied under the
backend's lock (the twin of the Redis run scripts)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

import attrs

from sideline.core.dispatch import outgoing
from sideline.core.errors import RunExpired, WorkflowError
from sideline.core.payload import Payload
from sideline.core.ports import Delivery
from sideline.core.run import (
    RUN_INDEX_SIZE,
    Begin,
    NodeError,
    RunState,
    RunSummary,
    Transition,
    apply,
    next_expiry,
    plan_begin,
    plan_cancel,
    plan_complete,
    plan_fail,
    summarize,
)

__all__ = ["RunOps"]


@attrs.define
class _Run:
    state: RunState
    expires_at: float


class RunOps:
    """A mixin of MemoryBackend: it uses the backend's lock, queues, sets and run maps."""

    _lock: threading.RLock
    _runs: dict[str, _Run]
    _summaries: dict[str, tuple[RunSummary, float]]
    _run_index: dict[str, float]
    _sets: dict[str, dict[str, tuple[float, str]]]
    _memory: dict[str, tuple[float, dict[str, str]]]
    _runs_changed: threading.Condition
    """Notified when a run finishes (ResultStore.wait_run)."""

    def _op(self, name: str) -> AbstractContextManager[None]:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _push_payload(self, payload: Payload, at: float | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _remove_in_progress(self, worker_id: str, delivery: Delivery) -> None:  # pragma: no cover
        raise NotImplementedError

    def _add_dead(self, payload: Payload, now: float,
                  keep: bool | None = None) -> None:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _live_run(self, run_id: str, now: float) -> _Run | RunSummary:
        """The run's live state, or its summary once it finished and was compacted."""
        summary = self._summary(run_id, now)
        if summary is not None:
            return summary
        run = self._runs.get(run_id)
        if run is None or run.expires_at <= now:
            self._runs.pop(run_id, None)
            raise RunExpired.of(run_id)
        return run

    def _summary(self, run_id: str, now: float) -> RunSummary | None:
        found = self._summaries.get(run_id)
        if found is not None and found[1] <= now:
            del self._summaries[run_id]
            return None
        return None if found is None else found[0]

    def _commit(self, run: _Run, transition: Transition, now: float) -> None:
        """Apply a transition: every change of a run goes through here (the twin of
        _lib.lua settle), so a run that finishes wakes its waiters here."""
        state = run.state
        apply(state, transition, now)
        run.expires_at = next_expiry(state, transition, run.expires_at, now)
        for job in outgoing(state.plan, transition, now):
            self._push_payload(job.payload, job.at)
        if transition.compacts:  # finished succeeded or cancelled: keep only the summary
            run_id = state.plan.run_id
            del self._runs[run_id]
            self._summaries[run_id] = (summarize(state), run.expires_at)
            if not state.plan.keep_memory:
                self._memory.pop(run_id, None)
        if transition.finished:
            self._runs_changed.notify_all()

    # -- WorkflowStore ---------------------------------------------------------------------

    def create_run(self, state: RunState, transition: Transition, now: float) -> None:
        """Store a new run and push its entry nodes."""
        with self._op("create_run"):
            run_id = state.plan.run_id
            if run_id in self._runs or run_id in self._summaries:
                raise WorkflowError(f"run {run_id!r} already exists")
            run = _Run(state.copy(), now + state.plan.ttl_s)
            self._runs[run_id] = run
            self._run_index[run_id] = state.created_at
            if len(self._run_index) > RUN_INDEX_SIZE:
                del self._run_index[min(self._run_index, key=self._index_key)]
            self._commit(run, transition, now)

    def begin_node(self, run_id: str, node_id: int, now: float) -> Begin:
        """Mark a node running, or say to skip it (always, once the run is compacted)."""
        with self._op("begin_node"):
            return self._begin(run_id, node_id, now)

    def _begin(self, run_id: str, node_id: int, now: float) -> Begin:
        run = self._live_run(run_id, now)
        if isinstance(run, RunSummary):
            return Begin.SKIP
        decision, transition = plan_begin(run.state, node_id)
        if decision is Begin.RUN:  # a retry of a running node counts too
            run.state.attempts[node_id] = run.state.attempts.get(node_id, 0) + 1
        self._commit(run, transition, now)
        return decision

    def complete_node(self, worker_id: str, delivery: Delivery, run_id: str, node_id: int,
                      now: float) -> Transition:
        """Ack, count the node once, push what became ready (only ack once compacted)."""
        with self._op("complete_node"):
            run = self._live_run(run_id, now)
            if isinstance(run, RunSummary):
                self._remove_in_progress(worker_id, delivery)
                return Transition()
            transition = plan_complete(run.state, node_id)
            self._remove_in_progress(worker_id, delivery)
            self._commit(run, transition, now)
            return transition

    def fail_node(self, worker_id: str, delivery: Delivery, payload: Payload,
                  now: float) -> Transition:
        """Ack, dead-set the payload, mark the node dead and the run failed."""
        with self._op("fail_node"):
            self._remove_in_progress(worker_id, delivery)
            self._add_dead(payload, now)
            return self._fail_run_node(payload, now)

    def cancel_run(self, run_id: str, now: float) -> bool:
        """Cancel a run, removing its nodes' (not its callbacks') scheduled and retry jobs."""
        with self._op("cancel_run"):
            run = self._live_run(run_id, now)
            if isinstance(run, RunSummary):
                return False
            count = len(run.state.nodes)
            transition = plan_cancel(run.state)
            self._commit(run, transition, now)
            if transition.noop:
                return False
            for kind in ("scheduled", "retry"):
                for node_id in range(count):
                    self._sets[kind].pop(f"{run_id}.{node_id}", None)
            return True

    def get_run(self, run_id: str, now: float) -> RunState | RunSummary | None:
        """A copy of the run's state, its summary once compacted, or None if missing."""
        with self._lock:
            found = self._summaries.get(run_id)
            if found is not None:
                return found[0] if found[1] > now else None
            run = self._runs.get(run_id)
            if run is None or run.expires_at <= now:
                return None
            return run.state.copy()

    def extend_run_ttl(self, run_id: str, ttl_s: int, now: float) -> bool:
        """Push back a run's expiry (a compacted run's summary too)."""
        with self._lock:
            found = self._summaries.get(run_id)
            if found is not None and found[1] > now:
                self._summaries[run_id] = (found[0], max(found[1], now + ttl_s))
                return True
            run = self._runs.get(run_id)
            if run is None or run.expires_at <= now:
                return False
            run.expires_at = max(run.expires_at, now + ttl_s)
            return True

    def recent_runs(self, start: int, count: int, now: float) -> list[RunState | RunSummary]:
        """Up to `count` runs from position `start` of the runs index, newest first
        (entries of runs that are gone are dropped as they are read)."""
        with self._lock:
            ordered = sorted(self._run_index, key=self._index_key, reverse=True)
            found: list[RunState | RunSummary] = []
            for run_id in ordered[start:]:
                if len(found) >= count:
                    break
                state = self.get_run(run_id, now)
                if state is None:
                    del self._run_index[run_id]
                else:
                    found.append(state)
            return found

    def _index_key(self, run_id: str) -> tuple[float, str]:
        """Order of the runs index: by created_at, then run id (as a Redis sorted set)."""
        return self._run_index[run_id], run_id

    def run_ids(self) -> list[str]:
        """Every stored run id, compacted ones too (expired ones included until touched)."""
        with self._lock:
            return sorted({*self._runs, *self._summaries})

    def _run_complete(self, run_id: str, node_id: int, now: float) -> Transition:
        """A step that waited for its batches completes (a missing run is left alone)."""
        run = self._runs.get(run_id)
        if run is None or run.expires_at <= now or not 0 <= node_id < len(run.state.nodes):
            return Transition()
        transition = plan_complete(run.state, node_id)
        self._commit(run, transition, now)
        return transition

    def _run_fail(self, run_id: str, node_id: int, error: NodeError, now: float) -> Transition:
        """A step dies (a job of its batch died); a missing run is left alone."""
        run = self._runs.get(run_id)
        if run is None or run.expires_at <= now or not 0 <= node_id < len(run.state.nodes):
            return Transition()
        transition = plan_fail(run.state, node_id, error)
        self._commit(run, transition, now)
        return transition

    def _fail_run_node(self, payload: Payload, now: float) -> Transition:
        """fail_node's run part: the node dies; a missing or compacted run is left alone."""
        if payload.run_id is None or payload.node_id is None:
            return Transition()
        return self._run_fail(payload.run_id, payload.node_id,
                              NodeError(payload.error_class, payload.error_message), now)
