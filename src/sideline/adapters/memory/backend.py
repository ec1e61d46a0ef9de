"""MemoryBackend: every port in one process, behind one lock.

Each public method takes the lock once, so each is atomic exactly as the
matching Redis script is. Jobs are stored as their encoded JSON text, as in
Redis, so the same malformed-payload paths are exercised.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import attrs

from sideline.adapters.memory._memory import RunMemory
from sideline.adapters.memory.faults import FaultPlan
from sideline.core.dispatch import outgoing
from sideline.core.errors import RunExpired, WorkflowError
from sideline.core.payload import Payload, bump_recoveries, decode, encode
from sideline.core.ports import Delivery, SortedEntry, WorkerInfo
from sideline.core.run import (
    Begin,
    RunState,
    Transition,
    apply,
    plan_begin,
    plan_cancel,
    plan_complete,
    plan_fail,
    plan_revive,
)
from sideline.environment import env_number

__all__ = ["MemoryBackend"]

_SETS = ("scheduled", "retry", "dead")


@attrs.define
class _Run:
    state: RunState
    expires_at: float


class MemoryBackend(RunMemory):
    """The embedded backend: thread-safe, deterministic, and inspectable from tests.

    Args:
        max_dead: the dead set keeps at most this many jobs (oldest dropped first).
        dead_ttl_s: dead jobs older than this are dropped.
        faults: a FaultPlan whose armed faults the operations honour.
    """

    def __init__(self, *, max_dead: int | None = None, dead_ttl_s: float | None = None,
                 faults: FaultPlan | None = None) -> None:
        self.max_dead = int(max_dead if max_dead is not None else env_number(
            "SIDELINE_MAX_DEAD", 10_000, integer=True))
        self.dead_ttl_s = dead_ttl_s if dead_ttl_s is not None else env_number(
            "SIDELINE_DEAD_TTL_S", 180 * 24 * 3600)
        self.faults = faults or FaultPlan()
        self._lock = threading.RLock()
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, deque[str]] = {}
        self._in_progress: dict[str, list[Delivery]] = {}
        self._sets: dict[str, dict[str, tuple[float, str]]] = {kind: {} for kind in _SETS}
        self._runs: dict[str, _Run] = {}
        self._workers: dict[str, tuple[float, dict[str, str]]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._wakeups = 0
        self._recovery_log: list[str] = []
        self._memory: dict[str, tuple[float, dict[str, str]]] = {}

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _op(self, name: str) -> Iterator[None]:
        self.faults.check(name, "before")
        with self._lock:
            yield
        self.faults.check(name, "after")

    def _push_raw(self, queue: str, raw: str, front: bool = False) -> None:
        target = self._queues.setdefault(queue, deque())
        if front:
            target.appendleft(raw)
        else:
            target.append(raw)
        self._ready.notify_all()

    def _push_payload(self, payload: Payload, at: float | None) -> None:
        if at is None:
            self._push_raw(payload.queue, encode(payload))
        else:
            self._sets["scheduled"][payload.jid] = (at, encode(payload))

    def _remove_in_progress(self, worker_id: str, delivery: Delivery) -> None:
        held = self._in_progress.get(worker_id)
        if held is not None and delivery in held:
            held.remove(delivery)

    def _add_dead(self, payload: Payload, now: float) -> None:
        if not payload.dead:
            return
        dead = self._sets["dead"]
        dead[payload.jid] = (now, encode(payload))
        cutoff = now - self.dead_ttl_s
        for jid, (at, _raw) in list(dead.items()):
            if at < cutoff:
                del dead[jid]
        while len(dead) > self.max_dead:
            del dead[min(dead, key=lambda j: dead[j][0])]

    def _live_run(self, run_id: str, now: float) -> _Run:
        run = self._runs.get(run_id)
        if run is None or run.expires_at <= now:
            self._runs.pop(run_id, None)
            raise RunExpired(
                f"run {run_id!r} has no state: it expired or never existed "
                "(its jobs are not treated as succeeded)")
        return run

    def _commit(self, run: _Run, transition: Transition, now: float) -> None:
        apply(run.state, transition, now)
        run.expires_at = now + run.state.plan.ttl_s
        for job in outgoing(run.state.plan, transition, now):
            self._push_payload(job.payload, job.at)

    # -- QueuePort -------------------------------------------------------------------------

    def push(self, payloads: Sequence[Payload]) -> None:
        """Append jobs to the tail of their queues."""
        with self._op("push"):
            for payload in payloads:
                self._push_raw(payload.queue, encode(payload))

    def push_raw(self, queue: str, raw: str) -> None:
        """Append arbitrary text to a queue (tests of malformed payloads use this)."""
        with self._lock:
            self._push_raw(queue, raw)

    def fetch(self, worker_id: str, queues: Sequence[str], timeout_s: float) -> Delivery | None:
        """Move the oldest job of the first non-empty queue into the in-progress list."""
        self.faults.check("fetch", "before")
        with self._ready:
            found = self._take(worker_id, queues)
            if found is None and timeout_s > 0:
                generation = self._wakeups
                self._ready.wait_for(
                    lambda: self._wakeups != generation or any(self._queues.get(q) for q in queues),
                    timeout_s)
                found = self._take(worker_id, queues)
            return found

    def wake(self, queues: Sequence[str]) -> None:
        """Wake every blocked fetch."""
        with self._ready:
            self._wakeups += 1
            self._ready.notify_all()

    def fetch_many(self, worker_id: str, queues: Sequence[str], limit: int) -> list[Delivery]:
        """Move up to `limit` jobs into the in-progress list without waiting."""
        self.faults.check("fetch", "before")
        with self._lock:
            found: list[Delivery] = []
            while len(found) < limit:
                delivery = self._take(worker_id, queues)
                if delivery is None:
                    break
                found.append(delivery)
            return found

    def _take(self, worker_id: str, queues: Sequence[str]) -> Delivery | None:
        for queue in queues:
            pending = self._queues.get(queue)
            if pending:
                delivery = Delivery(pending.popleft(), queue)
                self._in_progress.setdefault(worker_id, []).append(delivery)
                return delivery
        return None

    def ack(self, worker_id: str, delivery: Delivery) -> None:
        """Remove a finished job from the worker's in-progress list."""
        with self._op("ack"):
            self._remove_in_progress(worker_id, delivery)

    def requeue(self, worker_id: str, delivery: Delivery) -> None:
        """Put an unfinished job back at the head of its queue."""
        with self._op("requeue"):
            self._remove_in_progress(worker_id, delivery)
            self._push_raw(delivery.queue, delivery.raw, front=True)

    def in_progress(self, worker_id: str) -> list[str]:
        """The raw jobs in a worker's in-progress list."""
        return [delivery.raw for delivery in self.held(worker_id)]

    def workers_with_jobs(self) -> list[str]:
        """The ids of workers whose in-progress list is not empty."""
        with self._lock:
            return sorted(w for w, held in self._in_progress.items() if held)

    def queue_sizes(self) -> dict[str, int]:
        """The length of every known queue."""
        with self._lock:
            return {name: len(items) for name, items in sorted(self._queues.items())}

    def peek(self, queue: str, limit: int = 100) -> list[str]:
        """Up to `limit` raw jobs from the head of `queue`."""
        with self._lock:
            return list(self._queues.get(queue, ()))[:limit]

    # -- ScheduleStore ---------------------------------------------------------------------

    def schedule(self, payload: Payload, at: float) -> None:
        """Add a job to the scheduled set, due at `at`."""
        with self._op("schedule"):
            self._sets["scheduled"][payload.jid] = (at, encode(payload))

    def retry_later(self, worker_id: str, delivery: Delivery, payload: Payload, at: float) -> None:
        """Ack and add the updated payload to the retry set."""
        with self._op("retry_later"):
            self._remove_in_progress(worker_id, delivery)
            self._sets["retry"][payload.jid] = (at, encode(payload))

    def kill(self, worker_id: str, delivery: Delivery, payload: Payload, now: float) -> None:
        """Ack and add the payload to the dead set."""
        with self._op("kill"):
            self._remove_in_progress(worker_id, delivery)
            self._add_dead(payload, now)

    def move_due(self, now: float, limit: int = 1000) -> int:
        """Move due scheduled and retry jobs to their queues, earliest first."""
        with self._op("move_due"):
            due = sorted(
                (at, kind, jid) for kind in ("scheduled", "retry")
                for jid, (at, _raw) in self._sets[kind].items() if at <= now
            )[:limit]
            for _at, kind, jid in due:
                _score, raw = self._sets[kind].pop(jid)
                payload = decode(raw)
                self._push_raw(payload.queue, encode(attrs.evolve(payload, enqueued_at=now)))
            return len(due)

    def next_due(self) -> float | None:
        """The earliest due time in the scheduled and retry sets."""
        with self._lock:
            times = [at for kind in ("scheduled", "retry") for at, _ in self._sets[kind].values()]
            return min(times, default=None)

    def entries(self, kind: str, limit: int = 100) -> list[SortedEntry]:
        """Jobs of a set, earliest first."""
        with self._lock:
            items = sorted(self._sets[_check_kind(kind)].values(), key=lambda item: item[0])
            return [SortedEntry(at, decode(raw)) for at, raw in items[:limit]]

    def retry_dead(self, jid: str, now: float) -> bool:
        """Move a dead job back to its queue, reviving its workflow node."""
        with self._op("retry_dead"):
            found = self._sets["dead"].pop(jid, None)
            if found is None:
                return False
            payload = decode(found[1])
            if payload.run_id is not None and payload.node_id is not None:
                run = self._runs.get(payload.run_id)
                if run is not None and run.expires_at > now:
                    self._commit(run, plan_revive(run.state, payload.node_id), now)
            revived = attrs.evolve(payload, enqueued_at=now, retried_at=now, dead_reason=None,
                                   recoveries=0)
            self._push_raw(payload.queue, encode(revived))
            return True

    def delete(self, kind: str, jid: str) -> bool:
        """Remove a job from a set."""
        with self._lock:
            return self._sets[_check_kind(kind)].pop(jid, None) is not None

    # -- WorkflowStore ---------------------------------------------------------------------

    def create_run(self, state: RunState, transition: Transition, now: float) -> None:
        """Store a new run and push its entry nodes."""
        with self._op("create_run"):
            run_id = state.plan.run_id
            if run_id in self._runs:
                raise WorkflowError(f"run {run_id!r} already exists")
            run = _Run(state.copy(), now + state.plan.ttl_s)
            self._runs[run_id] = run
            self._commit(run, transition, now)

    def begin_node(self, run_id: str, node_id: int, now: float) -> Begin:
        """Mark a node running, or say to skip it."""
        with self._op("begin_node"):
            run = self._live_run(run_id, now)
            decision, transition = plan_begin(run.state, node_id)
            self._commit(run, transition, now)
            return decision

    def complete_node(self, worker_id: str, delivery: Delivery, run_id: str, node_id: int,
                      now: float) -> Transition:
        """Ack, count the node once, push what became ready."""
        with self._op("complete_node"):
            run = self._live_run(run_id, now)
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
            run = self._runs.get(payload.run_id or "")
            if run is None or run.expires_at <= now or payload.node_id is None:
                return Transition()
            transition = plan_fail(run.state, payload.node_id)
            self._commit(run, transition, now)
            return transition

    def cancel_run(self, run_id: str, now: float) -> bool:
        """Cancel a run."""
        with self._op("cancel_run"):
            run = self._live_run(run_id, now)
            transition = plan_cancel(run.state)
            self._commit(run, transition, now)
            if transition.noop:
                return False
            for kind in ("scheduled", "retry"):
                for jid, (_at, raw) in list(self._sets[kind].items()):
                    if decode(raw).run_id == run_id:
                        del self._sets[kind][jid]
            return True

    def get_run(self, run_id: str, now: float) -> RunState | None:
        """A copy of the run's state, or None if missing."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.expires_at <= now:
                return None
            return run.state.copy()

    def extend_run_ttl(self, run_id: str, ttl_s: int, now: float) -> bool:
        """Push back a run's expiry."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.expires_at <= now:
                return False
            run.expires_at = max(run.expires_at, now + ttl_s)
            return True

    def run_ids(self) -> list[str]:
        """Every stored run id (expired ones included until touched)."""
        with self._lock:
            return sorted(self._runs)

    def recover(self, worker_id: str) -> int:
        """Move every job a (dead) worker holds back to its queue head; return how many.

        Each recovered job's `recoveries` counter goes up by one; text that is not a
        payload is moved back unchanged (the worker sends it to the dead set).
        """
        with self._op("recover"):
            held = self._in_progress.pop(worker_id, [])
            for delivery in reversed(held):
                self._push_raw(delivery.queue, bump_recoveries(delivery.raw), front=True)
            return len(held)

    def held(self, worker_id: str) -> list[Delivery]:
        """The jobs in a worker's in-progress list."""
        with self._lock:
            return list(self._in_progress.get(worker_id, []))

    def recover_job(self, worker_id: str, delivery: Delivery) -> bool:
        """Move one held job back to its queue head."""
        with self._op("recover"):
            held = self._in_progress.get(worker_id, [])
            if delivery not in held:
                return False
            held.remove(delivery)
            self._push_raw(delivery.queue, bump_recoveries(delivery.raw), front=True)
            return True

    def discard(self, worker_id: str, delivery: Delivery) -> bool:
        """Drop one held job."""
        with self._lock:
            held = self._in_progress.get(worker_id, [])
            if delivery not in held:
                return False
            held.remove(delivery)
            return True

    def log_recoveries(self, entries: Sequence[str], keep: int) -> None:
        """Prepend recovery records, keeping the newest `keep`."""
        with self._lock:
            self._recovery_log[:0] = list(reversed(entries))
            del self._recovery_log[keep:]

    def recovery_log(self, limit: int) -> list[str]:
        """The newest recovery records."""
        with self._lock:
            return self._recovery_log[:limit]

    def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float, now: float) -> None:
        """Register the worker as alive until now + ttl_s."""
        with self._op("heartbeat"):
            self._workers[worker_id] = (now + ttl_s, dict(info))

    def workers(self, now: float) -> list[WorkerInfo]:
        """Every registered worker, alive or not."""
        with self._lock:
            return [WorkerInfo(w, expires > now, expires, dict(info))
                    for w, (expires, info) in sorted(self._workers.items())]

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker from the registry."""
        with self._lock:
            self._workers.pop(worker_id, None)

    def acquire_lock(self, name: str, ttl_s: float, now: float) -> str | None:
        """Take lock `name` unless a live holder has it."""
        with self._lock:
            held = self._locks.get(name)
            if held is not None and held[1] > now:
                return None
            token = uuid.uuid4().hex
            self._locks[name] = (token, now + ttl_s)
            return token

    def release_lock(self, name: str, token: str) -> bool:
        """Release lock `name` if `token` holds it."""
        with self._lock:
            held = self._locks.get(name)
            if held is None or held[0] != token:
                return False
            del self._locks[name]
            return True

    def close(self) -> None:
        """Nothing to release: the memory backend owns no connection."""


def _check_kind(kind: str) -> str:
    if kind not in _SETS:
        raise ValueError(f"set kind must be one of {', '.join(_SETS)}; got {kind!r}")
    return kind
