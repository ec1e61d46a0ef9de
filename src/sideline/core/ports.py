"""Ports: what the runtime needs from a storage backend, as small Protocols.

Every adapter (memory, Redis) implements all of them; the contract tests in
tests/contract run each port's suite against every adapter. Times are float
seconds since the epoch and are always passed in (the core has no clock).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from sideline.core.payload import Payload
from sideline.core.run import Begin, RunState, Transition

__all__ = [
    "Backend",
    "Delivery",
    "InstanceRegistry",
    "MemoryStore",
    "QueuePort",
    "ScheduleStore",
    "SortedEntry",
    "WorkerInfo",
    "WorkflowStore",
]


@attrs.frozen
class Delivery:
    """A fetched job: the exact text taken from `queue`, now in the worker's in-progress list."""

    raw: str
    queue: str


@attrs.frozen
class SortedEntry:
    """A job in a time-sorted set (scheduled, retry or dead), with its score time."""

    at: float
    payload: Payload


class QueuePort(Protocol):
    """Queues with reliable fetch: a fetched job stays in an in-progress list until acked."""

    def push(self, payloads: Sequence[Payload]) -> None:
        """Append jobs to the tail of their queues (one atomic call for the batch)."""
        ...

    def fetch(self, worker_id: str, queues: Sequence[str], timeout_s: float) -> Delivery | None:
        """Move the oldest job of the first non-empty queue (in the given order) into the
        worker's in-progress list and return it; wait up to `timeout_s` for one."""
        ...

    def fetch_many(self, worker_id: str, queues: Sequence[str], limit: int) -> list[Delivery]:
        """Like `fetch` without waiting, moving up to `limit` jobs in one call."""
        ...

    def wake(self, queues: Sequence[str]) -> None:
        """Make fetches blocked on these queues return early (a stopping worker calls it)."""
        ...

    def ack(self, worker_id: str, delivery: Delivery) -> None:
        """Remove a finished job from the worker's in-progress list."""
        ...

    def requeue(self, worker_id: str, delivery: Delivery) -> None:
        """Put an unfinished job back at the head of its queue (graceful shutdown)."""
        ...

    def in_progress(self, worker_id: str) -> list[str]:
        """The raw jobs in a worker's in-progress list."""
        ...

    def queue_sizes(self) -> dict[str, int]:
        """The length of every known queue."""
        ...

    def peek(self, queue: str, limit: int = 100) -> list[str]:
        """Up to `limit` raw jobs from the head of `queue`, without removing them."""
        ...


class ScheduleStore(Protocol):
    """The scheduled, retry and dead sets (sorted by time)."""

    def schedule(self, payload: Payload, at: float) -> None:
        """Add a job to the scheduled set, due at `at`."""
        ...

    def retry_later(self, worker_id: str, delivery: Delivery, payload: Payload, at: float) -> None:
        """Atomically ack `delivery` and add its updated payload to the retry set due at `at`."""
        ...

    def kill(self, worker_id: str, delivery: Delivery, payload: Payload, now: float) -> None:
        """Atomically ack `delivery` and add `payload` to the dead set (or drop it if
        `payload.dead` is false), trimming the dead set by size and age."""
        ...

    def move_due(self, now: float, limit: int = 1000) -> int:
        """Move up to `limit` due jobs from the scheduled and retry sets to their queues."""
        ...

    def next_due(self) -> float | None:
        """The earliest due time in the scheduled and retry sets, if any."""
        ...

    def entries(self, kind: str, limit: int = 100) -> list[SortedEntry]:
        """Jobs of set `kind` ('scheduled', 'retry' or 'dead'), earliest first."""
        ...

    def retry_dead(self, jid: str, now: float) -> bool:
        """Move a dead job back to its queue (reviving its workflow node); False if absent."""
        ...

    def delete(self, kind: str, jid: str) -> bool:
        """Remove a job from set `kind`; False if absent."""
        ...


@attrs.frozen
class WorkerInfo:
    """A registered worker process and whether its heartbeat is still fresh."""

    worker_id: str
    alive: bool
    expires_at: float
    info: dict[str, str]


class InstanceRegistry(Protocol):
    """Worker heartbeats, the recovery of dead workers' jobs, and named locks."""

    def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float, now: float) -> None:
        """Register the worker as alive until now + ttl_s, with descriptive `info`."""
        ...

    def workers(self, now: float) -> list[WorkerInfo]:
        """Every registered worker, alive or not."""
        ...

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker from the registry (after its jobs were recovered)."""
        ...

    def recover(self, worker_id: str) -> int:
        """Move every job in the worker's in-progress lists back to the head of its queue,
        one atomic move per job, adding one to each payload's `recoveries`; return the count."""
        ...

    def held(self, worker_id: str) -> list[Delivery]:
        """The jobs in a worker's in-progress lists, with their queues."""
        ...

    def recover_job(self, worker_id: str, delivery: Delivery) -> bool:
        """Move one held job back to the head of its queue (recoveries + 1); False if it is
        no longer held (someone else moved it)."""
        ...

    def discard(self, worker_id: str, delivery: Delivery) -> bool:
        """Drop one held job for good; False if it is no longer held."""
        ...

    def log_recoveries(self, entries: Sequence[str], keep: int) -> None:
        """Append JSON records of recovered jobs to the recovery log, keeping the newest `keep`."""
        ...

    def recovery_log(self, limit: int) -> list[str]:
        """The newest recovery records, newest first."""
        ...

    def acquire_lock(self, name: str, ttl_s: float, now: float) -> str | None:
        """Take lock `name` for ttl_s seconds; return its token, or None if someone holds it."""
        ...

    def release_lock(self, name: str, token: str) -> bool:
        """Release lock `name` only if `token` still holds it (compare-and-delete)."""
        ...


class WorkflowStore(Protocol):
    """Run state: created, advanced, failed and cancelled atomically with the pushes they cause."""

    def create_run(self, state: RunState, transition: Transition, now: float) -> None:
        """Store a new run and push (or schedule) its released entry nodes, atomically."""
        ...

    def begin_node(self, run_id: str, node_id: int, now: float) -> Begin:
        """Mark a fetched node running, or say to skip it.

        Raises:
            RunExpired: the run's state is missing.
        """
        ...

    def complete_node(self, worker_id: str, delivery: Delivery, run_id: str, node_id: int,
                      now: float) -> Transition:
        """Atomically: ack, mark the node succeeded (once), decrement successors' barriers and
        push the nodes that became ready, finish the run and push its success callback.

        Raises:
            RunExpired: the run's state is missing (the delivery is left unacked).
        """
        ...

    def fail_node(self, worker_id: str, delivery: Delivery, payload: Payload,
                  now: float) -> Transition:
        """Atomically: ack, put `payload` in the dead set, mark the node dead, the run failed,
        dependants skipped, and push the failure callback once."""
        ...

    def cancel_run(self, run_id: str, now: float) -> bool:
        """Cancel a run; False if it had already finished successfully or was cancelled.

        Raises:
            RunExpired: the run's state is missing.
        """
        ...

    def get_run(self, run_id: str, now: float) -> RunState | None:
        """A copy of the run's state, or None if it expired or never existed."""
        ...

    def extend_run_ttl(self, run_id: str, ttl_s: int, now: float) -> bool:
        """Push back the run's expiry to now + ttl_s; False if it is already gone."""
        ...


class MemoryStore(Protocol):
    """Per-run key/value memory: what typed workflow steps hand to each other.

    Values are JSON-native (stored as JSON text). A run's memory expires `ttl_s` after
    its last write, independently of the run's state; the runtime clears it when the
    run ends (unless the app keeps it for inspection).
    """

    def write(self, run_id: str, values: Mapping[str, Any], ttl_s: float, now: float) -> None:
        """Set these keys (last write wins) and push the memory's expiry back to at least
        now + ttl_s, in one atomic step. With no values, only the expiry of existing
        memory is pushed back."""
        ...

    def read(self, run_id: str, keys: Sequence[str] | None, now: float) -> dict[str, Any]:
        """The stored values of `keys` that exist (every key when `keys` is None)."""
        ...

    def clear(self, run_id: str) -> None:
        """Forget the run's memory (a no-op if there is none)."""
        ...


class Backend(QueuePort, ScheduleStore, WorkflowStore, InstanceRegistry, MemoryStore, Protocol):
    """Everything the runtime needs: one object per adapter implements every port."""

    def close(self) -> None:
        """Release what the backend itself opened (never a client it was handed)."""
        ...
