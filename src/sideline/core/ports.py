"""Ports: what the runtime needs from a storage backend, as small Protocols.

Every adapter (memory, Redis) implements all of them; the contract tests in
tests/contract run each port's suite against every adapter. Times are float
seconds since the epoch and are always passed in (the core has no clock).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from sideline.core.batch import BatchPush, BatchView
from sideline.core.errors import RunExpired, WorkflowError
from sideline.core.payload import Payload
from sideline.core.periodic import PeriodicEntry, PeriodicState
from sideline.core.run import Begin, RunState, RunSummary, Transition
from sideline.core.settlement import Settlement

__all__ = [
    "STAT_DAY_TTL_S",
    "STAT_MINUTE_TTL_S",
    "Backend",
    "BatchStore",
    "Delivery",
    "InstanceRegistry",
    "MemoryStore",
    "PeriodicStore",
    "QueuePort",
    "ResultStore",
    "ScheduleStore",
    "SettlePort",
    "Settled",
    "SortedEntry",
    "WorkerInfo",
    "WorkflowStore",
    "begun",
    "dead_key",
]


@attrs.frozen
class Delivery:
    """A fetched job: the exact text taken from `queue`, now held by one worker.

    A started delivery sits in the worker's in-progress list; a prefetched one
    (`prefetched=True`) sits in its prefetch list until `claim` starts it. Recovery
    counts only started jobs toward the poison-pill limit.

    `begun` says whether the fetching call also began the job's workflow step (see
    `QueuePort.fetch`'s `begin_at`): None when it did not (a plain job, or no begin was
    asked for), else the outcome of `WorkflowStore.begin_node` as text: "run" or "skip"
    (`core.run.Begin`), "expired" (the run has no state) or "missing" (the run has no
    such node). It is not part of a delivery's identity (equality, hashing).
    """

    raw: str
    queue: str
    prefetched: bool = False
    begun: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class SortedEntry:
    """A job in a time-sorted set (scheduled, retry or dead), with its score time.

    `key` is the entry's key in its set, the job's jid except for a second dead job of
    the same jid (see `dead_key`); `delete` and `retry_dead` take it.
    """

    at: float
    payload: Payload
    key: str = ""


def begun(delivery: Delivery, run_id: str, node_id: int) -> Begin | None:
    """What the fetching call said of `delivery`'s workflow step (`Delivery.begun`): None
    when it did not begin it, else the `begin_node` outcome.

    Raises:
        RunExpired: the run has no state.
        WorkflowError: the run has no such node.
    """
    if delivery.begun is None:
        return None
    if delivery.begun == "expired":
        raise RunExpired.of(run_id)
    if delivery.begun == "missing":
        raise WorkflowError(f"run {run_id} has no node {node_id}")
    return Begin(delivery.begun)


def dead_key(jid: str, taken: Callable[[str], bool]) -> str:
    """The dead-set key of a job: its jid, or "<jid>~2", "<jid>~3", ... when taken, so a
    second dead job of the same jid never overwrites the first."""
    key, n = jid, 1
    while taken(key):
        n += 1
        key = f"{jid}~{n}"
    return key


class QueuePort(Protocol):
    """Queues with reliable fetch: a fetched job stays in an in-progress list until acked."""

    def push(self, payloads: Sequence[Payload]) -> None:
        """Append jobs to the tail of their queues (one atomic call for the batch)."""
        ...

    def push_once(self, payloads: Sequence[Payload], ttl_s: float, now: float) -> int:
        """Push each job unless `push_once` pushed its jid within the last `ttl_s` seconds;
        return how many were pushed.

        A marker per jid (`pushed:<jid>`, expiring after `ttl_s`) is checked and set in
        the same atomic step as the push, so a relay that pushes the same rows again
        after a crash (the transactional outbox, sideline.contrib.outbox) adds no
        duplicate. `now` is the time the markers' expiry counts from (Redis uses its
        own clock). `push` neither reads nor sets the markers.
        """
        ...

    def fetch(self, worker_id: str, queues: Sequence[str], timeout_s: float,
              begin_at: Callable[[], float] | None = None) -> Delivery | None:
        """Move the oldest job of the first non-empty queue (in the given order) into the
        worker's in-progress list and return it; wait up to `timeout_s` for one.

        With `begin_at` (a clock), a fetched workflow step is also begun in the same
        atomic step, at `begin_at()`, exactly as `begin_node` would; `Delivery.begun`
        tells the outcome. Saves the worker a round trip per workflow step.
        """
        ...

    def fetch_many(self, worker_id: str, queues: Sequence[str], limit: int,
                   prefetch: int = 0,
                   begin_at: Callable[[], float] | None = None) -> list[Delivery]:
        """Like `fetch` without waiting, moving up to `limit` jobs in one call.

        When `limit` jobs were found, up to `prefetch` more are moved into the worker's
        prefetch lists and returned after them (with `prefetched=True`; those are never
        begun: `claim` starts them later).
        """
        ...

    def claim(self, worker_id: str, delivery: Delivery) -> Delivery | None:
        """Start a prefetched delivery: move it to the in-progress list, atomically, and
        return the started delivery; None if it is no longer held (recovered elsewhere)."""
        ...

    def wake(self, queues: Sequence[str]) -> None:
        """Make fetches blocked on these queues return early (a stopping worker calls it)."""
        ...

    def ack(self, worker_id: str, delivery: Delivery) -> None:
        """Remove a finished job from the worker's in-progress list."""
        ...

    def requeue(self, worker_id: str, delivery: Delivery) -> bool:
        """Put an unfinished job back at the head of its queue (graceful shutdown), atomically
        taking it out of the worker's hands; True if it was moved.

        A delivery the worker no longer holds (acked, settled, or recovered by another
        worker) is left alone and False is returned: pushing it again would run it twice.
        """
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
        """Register the worker as alive until now + ttl_s, with descriptive `info`.

        Outage rule: when no heartbeat at all reached the registry for more than
        ttl_s / 2 (the registry itself was unreachable, or every worker was cut off),
        every worker that was alive when the silence began gets the length of the
        silence added to its expiry, so nobody is judged dead for an outage they
        shared; a worker that really died is judged dead that much later.
        """
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
        """The jobs a worker holds, with their queues: per queue (sorted by name), the
        started ones oldest first, then the prefetched ones oldest first."""
        ...

    def recover_job(self, worker_id: str, delivery: Delivery) -> bool:
        """Move one held job back to the head of its queue; False if it is no longer held
        (someone else moved it). A started job's `recoveries` goes up by one; a prefetched
        one that never started goes back unchanged."""
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

        Atomically: nodes not yet running are cancelled, and the scheduled and retry
        entries of the run's nodes (jid "<run_id>.<node id>", whose payload carries the
        run id) are removed. The run's callbacks are not: a callback is the run reporting
        on itself (a failure callback waiting to retry reports a death that happened
        before the cancel), an ordinary job outside the graph. The run then finishes and
        is compacted to its summary, like a succeeded one.

        Raises:
            RunExpired: the run's state is missing.
        """
        ...

    def get_run(self, run_id: str, now: float) -> RunState | RunSummary | None:
        """A copy of the run's state; once the run finished succeeded or cancelled, only its
        summary (its graph and payloads are gone); None if it expired or never existed.

        Expiry (core.run.next_expiry): a change that finds less than the plan's ttl_s left
        pushes the run's expiry back to now + ttl_s plus RUN_TTL_HEADROOM, never forward;
        the change that finishes the run sets it to now +
        finished_ttl_s. A compacted run still answers the other operations until then:
        begin_node says SKIP, complete_node and fail_node only ack (and fail_node still
        buries), cancel_run says False, extend_run_ttl pushes back the summary's expiry.
        """
        ...

    def extend_run_ttl(self, run_id: str, ttl_s: int, now: float) -> bool:
        """Push back the run's expiry to now + ttl_s; False if it is already gone."""
        ...

    def recent_runs(self, start: int, count: int, now: float) -> list[RunState | RunSummary]:
        """Up to `count` runs from position `start` of the runs index, newest first.

        Every run enters the index when created (ordered by created_at, then run id; only
        the newest core.run.RUN_INDEX_SIZE are kept). An entry whose state and summary are
        both gone (get_run says None) is dropped from the index as it is read, and reading
        goes on past it, so fewer than `count` runs means the index is exhausted; reading
        windows 0, count, 2*count... in turn sees each listed run once.
        """
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


STAT_MINUTE_TTL_S = 8 * 3600
"""How long a per-minute stats bucket is kept after its last increment (8 hours)."""

STAT_DAY_TTL_S = 180 * 24 * 3600
"""How long a per-day stats bucket is kept after its last increment (180 days)."""


@attrs.frozen
class Settled:
    """What `settle` did: the run's transition, and the caller's next job if it asked."""

    transition: Transition = attrs.field(factory=Transition)
    """The run's transition (empty for a plain job, or a node of a finished run)."""
    next: Delivery | None = None
    """The job fetched for the caller (`fetch_from`), now in its in-progress list."""


class SettlePort(Protocol):
    """The end of a job: one Settlement applied in one atomic step, and the stats it counts."""

    def settle(self, worker_id: str, delivery: Delivery, settlement: Settlement, now: float,
               fetch_from: Sequence[str] = (), *, begin_next: bool = False) -> Settled:
        """Apply `settlement` to `delivery` atomically, then take the caller's next job.

        In one step: ack the delivery; a retry adds `settlement.payload` to the retry set
        at `retry_at`; a burial adds it to the dead set (unless `keep_dead` is false),
        trimmed by size and age; a node event completes (as `complete_node`) or fails (as
        `fail_node`) the node `payload.run_id`/`payload.node_id`; `release_unique` releases
        the lock `payload.unique_key` if `payload.unique_token` still holds it; the
        counters "processed" and "failed" and their minute (kept 8 hours) and day (kept
        180 days) buckets (`stat_buckets(now)`) grow by `processed` / `failed`. Last, when
        `fetch_from` is not empty, exactly one job is fetched as `fetch_many(worker_id,
        fetch_from, 1)` would (never more: the others are left for idle threads); with
        `begin_next`, its workflow step is begun at `now` in the same step (see `fetch`).

        Batches: `settlement.batch` counts the ending of a member job in its batch
        (`payload.batch_id`, core.batch.job_ended) and pushes the callbacks that fire, up
        the parents. A step that succeeded with `settlement.await_batches` (batches its
        job opened) is not completed now: it completes when the last of them succeeds
        (at once if all have), and dies if a job of one of them dies.

        Results: when `settlement.tracked` (the job stores its result), an ack or a burial
        stores `settlement.result` as the job's result (replacing an earlier one) and sets
        the state of its info record, a retry sets the state "retrying" and the retry
        count; both expire `result_ttl_s` from now. Waiters on the result are woken.

        Raises:
            RunExpired: a node succeeded but its run's state is missing; nothing was
                applied (the delivery is still held).
            WorkflowError: a node succeeded but its run has no such node; nothing applied.
        """
        ...

    def settle_acks(self, worker_id: str, acks: Sequence[tuple[Delivery, Settlement]],
                    now: float, fetch_from: Sequence[str] = (), fetch: int = 0, *,
                    begin_next: bool = False) -> list[Delivery]:
        """Apply several plain acks (core.settlement.is_plain_ack), in order, each as
        `settle` would with the first `fetch` of them taking the caller's next job from
        `fetch_from` (at most one each); return the jobs taken, in order.

        One call to the backend where it can (one settle_many function call on Redis);
        each ack is still its own atomic step. A worker taking several jobs per call
        (`jobs_per_call`) writes the plain acks of the jobs it took together this way.

        Raises:
            ValueError: a settlement is not a plain ack, or `fetch` is not between 0 and
                `len(acks)`; nothing was applied.
        """
        ...

    def stats(self, names: Sequence[str]) -> dict[str, int]:
        """The counters `names` ("processed", "failed", "processed:2026-11-29",
        "failed:2026-11-29T23:59", ...), 0 for one that is absent or expired."""
        ...


class BatchStore(Protocol):
    """Batches (core.batch): created with their first jobs, counted by `settle`."""

    def push_batches(self, pushes: Sequence[BatchPush], now: float) -> None:
        """Store the new batches of `pushes` and push every job of them, atomically.

        In order: a new batch is stored (expiring `ttl_s` from now) and listed in the
        recent-batches index; one with a parent is counted as the parent's child (the
        parent may be new in the same call, earlier in `pushes`); each batch counts its
        jobs as pending; jobs go to their queues, scheduled ones to the schedule set.
        Last, each batch's `complete` and `success` are checked (an empty batch fires at
        once) and the callbacks that fire are pushed, up the parents.

        Raises:
            BatchFinished: a batch (or the parent of a new one) is complete already;
                nothing was pushed.
            BatchError: an existing batch of `pushes` is unknown (or expired); nothing
                was pushed.
        """
        ...

    def get_batch(self, bid: str, now: float) -> BatchView | None:
        """The batch `bid`, or None if it is unknown or expired."""
        ...

    def recent_batches(self, start: int, count: int, now: float) -> list[BatchView]:
        """Batches newest first (by creation), skipping expired ones."""
        ...

    def invalidate_batch(self, bid: str, now: float) -> bool:
        """Mark a batch invalid (its jobs see `valid` false); False if it is unknown."""
        ...


class ResultStore(Protocol):
    """Job results, job state and progress, run completion signals and stop requests.

    A result is written by `settle` (`Settlement.result`), atomically with the ack; the
    rest are small records next to it. Waiting blocks on a signal the writer gives, never
    by polling.
    """

    def get_results(self, jids: Sequence[str]) -> list[str | None]:
        """The stored result records (JSON text, core.results.ResultRecord) of `jids`, in
        order; None where none is stored (not finished, not stored, or expired)."""
        ...

    def wait_result(self, jid: str, timeout_s: float) -> str | None:
        """Block until the result of `jid` is stored (at most `timeout_s`); return it, or
        None on timeout. Any number of callers may wait on one job at once."""
        ...

    def set_job_info(self, jid: str, fields: Mapping[str, str], ttl_s: int) -> None:
        """Merge `fields` into the job's info record (state, progress, message, meta...),
        which expires `ttl_s` from now."""
        ...

    def job_info(self, jid: str) -> dict[str, str]:
        """The job's info record (empty if none is stored)."""
        ...

    def wait_run(self, run_id: str, timeout_s: float) -> bool:
        """Block until run `run_id` finishes (at most `timeout_s`); True if it has (a run
        that finished before the call returns at once), False on timeout. The signal is
        given by the atomic step that finishes the run and withdrawn when a failed run is
        revived; a run without state never signals."""
        ...

    def request_stop(self, targets: Sequence[str], now: float) -> None:
        """Ask the workers to stop the running jobs `targets` ("jid:<jid>" or
        "run:<run_id>": every job of the run); a request is kept for a day."""
        ...

    def stop_requests(self, targets: Sequence[str]) -> list[str]:
        """Those of `targets` someone asked to stop (`request_stop`)."""
        ...


class PeriodicStore(Protocol):
    """Periodic entries (core/periodic.py): their definitions and the last tick each
    claimed. Ticks are kept in whole milliseconds since the epoch."""

    def sync_periodic(self, entries: Sequence[PeriodicEntry], owned_jobs: Sequence[str],
                      now: float) -> None:
        """Reconcile the stored entries with the code's, atomically: an entry that is new
        or changed (another fingerprint) is stored with its last tick set to `now` (its
        earlier ticks are not due; a paused entry stays paused); a stored entry not in
        `entries` whose job is in `owned_jobs` is removed (an entry of a job this app does
        not declare is another app's, and is left alone)."""
        ...

    def periodic_states(self) -> list[PeriodicState]:
        """Every stored entry's state, by name."""
        ...

    def fire_periodic(self, name: str, fingerprint: str, expected_ms: int | None,
                      claim_ms: int, *, payloads: Sequence[Payload], now: float) -> bool:
        """Claim the ticks of entry `name` up to `claim_ms` and push `payloads`, in one
        atomic step, if the entry is stored with `fingerprint`, is not paused and its last
        tick is still `expected_ms` (compare and set); False (nothing pushed) otherwise,
        e.g. another worker claimed them first."""
        ...

    def pause_periodic(self, name: str, paused: bool, now: float) -> bool:
        """Pause or resume entry `name` (a resumed entry's last tick becomes `now`: the
        ticks it missed while paused are not fired); False if it is not stored."""
        ...


class Backend(QueuePort, ScheduleStore, WorkflowStore, InstanceRegistry, MemoryStore,
              SettlePort, BatchStore, ResultStore, PeriodicStore, Protocol):
    """Everything the runtime needs: one object per adapter implements every port."""

    def close(self) -> None:
        """Release what the backend itself opened (never a client it was handed)."""
        ...
