"""MemoryBackend: every port in one process, behind one lock.

Each public method takes the lock once, so each is atomic exactly as the
matching Redis script is. Jobs are stored as their encoded JSON text, as in
Redis, so the same malformed-payload paths are exercised.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import attrs

from sideline.adapters.memory._admin import AdminOps
from sideline.adapters.memory._batches import BatchOps, _Batch
from sideline.adapters.memory._limits import Budget, LimitOps, LimitState, queue_of
from sideline.adapters.memory._memory import RunMemory
from sideline.adapters.memory._periodic import PeriodicOps
from sideline.adapters.memory._results import ResultOps
from sideline.adapters.memory._runs import RunOps, _Run
from sideline.adapters.memory.faults import FaultPlan
from sideline.core.clock import Clock
from sideline.core.errors import PayloadError, RunExpired, WorkflowError
from sideline.core.limits import PARK_PER_FETCH
from sideline.core.payload import (
    Payload,
    bump_recoveries,
    decode,
    encode,
)
from sideline.core.ports import (
    STAT_DAY_TTL_S,
    STAT_MINUTE_TTL_S,
    Delivery,
    Settled,
    SortedEntry,
    WorkerInfo,
    dead_key,
)
from sideline.core.run import (
    RunSummary,
    Transition,
    plan_complete,
    plan_revive,
)
from sideline.core.settlement import Action, NodeEvent, Settlement, check_acks, stat_buckets
from sideline.environment import env_number

__all__ = ["MemoryBackend"]

_SETS = ("scheduled", "retry", "dead")


class MemoryBackend(RunOps, BatchOps, RunMemory, ResultOps, AdminOps, PeriodicOps, LimitOps):
    """The embedded backend: thread-safe, deterministic, and inspectable from tests.

    Args:
        max_dead: the dead set keeps at most this many jobs (oldest dropped first).
        dead_ttl_s: dead jobs older than this are dropped.
        faults: a FaultPlan whose armed faults the operations honour.
        clock: what stored results and job info records expire by (their operations
            take no time, as Redis expires keys by its own clock); default the wall clock.
    """

    def __init__(self, *, max_dead: int | None = None, dead_ttl_s: float | None = None,
                 faults: FaultPlan | None = None, clock: Clock | None = None) -> None:
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
        self._summaries: dict[str, tuple[RunSummary, float]] = {}  # compacted runs, expiry
        self._run_index: dict[str, float] = {}  # run id -> created_at, the newest runs
        self._batches: dict[str, _Batch] = {}
        self._batch_index: dict[str, float] = {}  # bid -> created_at, the newest batches
        self._workers: dict[str, tuple[float, dict[str, str]]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._wakeups = 0
        self._last_beat: float | None = None
        self._recovery_log: list[str] = []
        self._memory: dict[str, tuple[float, dict[str, str]]] = {}
        self._stats: dict[str, int] = {}
        self._stats_expire: dict[str, float] = {}  # bucket -> when it vanishes (totals never)
        self._stats_next_expiry = float("inf")  # the earliest of those: no scan before it
        self._clock = time.time if clock is None else clock.now
        self._results: dict[str, tuple[float, str]] = {}  # jid -> (expires, record)
        self._job_infos: dict[str, tuple[float, dict[str, str]]] = {}
        self._stops: dict[str, float] = {}  # stop target -> requested at
        self._results_changed = threading.Condition(self._lock)
        self._runs_changed = threading.Condition(self._lock)  # a run finished
        self._periodic: dict[str, dict[str, str]] = {}  # entry name -> its state fields
        self._limits = LimitState()  # limit keys in use: slots, parked jobs, rate starts
        self._pushed: dict[str, float] = {}  # push_once markers: jid -> when it expires

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
        """Take a job out of the worker's hands (an ack), freeing its limit slot."""
        held = self._in_progress.get(worker_id)
        if held is not None and delivery in held:
            held.remove(delivery)
            self._free(worker_id, delivery.raw)

    def _add_dead(self, payload: Payload, now: float, keep: bool | None = None) -> None:
        if not (payload.dead if keep is None else keep):  # keep: the settlement's keep_dead
            return
        dead = self._sets["dead"]
        dead[dead_key(payload.jid, dead.__contains__)] = (now, encode(payload))
        cutoff = now - self.dead_ttl_s
        for jid, (at, _raw) in list(dead.items()):
            if at < cutoff:
                del dead[jid]
        while len(dead) > self.max_dead:
            del dead[min(dead, key=lambda j: dead[j][0])]

    # -- QueuePort -------------------------------------------------------------------------

    def push(self, payloads: Sequence[Payload]) -> None:
        """Append jobs to the tail of their queues."""
        with self._op("push"):
            for payload in payloads:
                self._push_raw(payload.queue, encode(payload))

    def push_once(self, payloads: Sequence[Payload], ttl_s: float, now: float) -> int:
        """Push each job unless its jid's marker, set here, is younger than `ttl_s`."""
        with self._op("push_once"):
            for jid, expires in list(self._pushed.items()):
                if expires <= now:
                    del self._pushed[jid]
            count = 0
            for payload in payloads:
                if payload.jid in self._pushed:
                    continue
                self._pushed[payload.jid] = now + ttl_s
                self._push_raw(payload.queue, encode(payload))
                count += 1
            return count

    def push_raw(self, queue: str, raw: str | bytes) -> None:
        """Append arbitrary text or bytes to a queue (tests of malformed payloads use this).

        Bytes are kept as Redis's client reads them back: decoded as UTF-8 with
        surrogateescape, so any byte string round-trips exactly.
        """
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "surrogateescape")
        with self._lock:
            self._push_raw(queue, raw)

    def fetch(self, worker_id: str, queues: Sequence[str], timeout_s: float,
              begin_at: Callable[[], float] | None = None) -> Delivery | None:
        """Move the oldest job of the first non-empty queue into the in-progress list (its
        workflow step begun when `begin_at` is given)."""
        self.faults.check("fetch", "before")
        with self._ready:
            found = self._take(worker_id, queues, self._now(begin_at), begin=begin_at is not None)
            if found is None and timeout_s > 0:
                generation = self._wakeups
                self._ready.wait_for(
                    lambda: self._wakeups != generation or any(self._queues.get(q) for q in queues),
                    timeout_s)
                found = self._take(worker_id, queues, self._now(begin_at),
                                   begin=begin_at is not None)
        if found is not None:
            self.faults.check("fetch", "after")  # the reply is lost: the job stays held
        return found

    def wake(self, queues: Sequence[str]) -> None:
        """Wake every blocked fetch."""
        with self._ready:
            self._wakeups += 1
            self._ready.notify_all()

    def fetch_many(self, worker_id: str, queues: Sequence[str], limit: int,
                   prefetch: int = 0,
                   begin_at: Callable[[], float] | None = None) -> list[Delivery]:
        """Move up to `limit` jobs into the in-progress list (then up to `prefetch` more into
        the prefetch list) without waiting; begin started workflow steps with `begin_at`."""
        self.faults.check("fetch", "before")
        with self._lock:
            found: list[Delivery] = []
            now, budget = self._now(begin_at), Budget()  # one call: one time, one budget
            while len(found) < limit:
                delivery = self._take(worker_id, queues, now, begin=begin_at is not None,
                                      budget=budget)
                if delivery is None:
                    break
                found.append(delivery)
            while len(found) >= limit and len(found) < limit + prefetch:
                delivery = self._take(worker_id, queues, now, prefetched=True, budget=budget)
                if delivery is None:
                    break
                found.append(delivery)
        if found:
            self.faults.check("fetch", "after")  # the reply is lost: the jobs stay held
        return found

    def claim(self, worker_id: str, delivery: Delivery) -> Delivery | None:
        """Start a prefetched job: it moves to the in-progress list."""
        if not delivery.prefetched:
            return delivery
        with self._op("claim"):
            held = self._in_progress.get(worker_id, [])
            if delivery not in held:
                return None
            held.remove(delivery)
            started = Delivery(delivery.raw, delivery.queue)
            held.append(started)
            return started

    def _now(self, begin_at: Callable[[], float] | None) -> float:
        """The time of a fetch: the caller's clock when it gives one, else the backend's."""
        return self._clock() if begin_at is None else begin_at()

    def _take(self, worker_id: str, queues: Sequence[str], now: float, *,
              prefetched: bool = False, begin: bool = False,
              budget: Budget | None = None) -> Delivery | None:
        """Move the first job its limit admits, from the first non-empty queue, into the
        worker's hands (fetch.lua's take), its workflow step begun at `now` if `begin`.

        A job its limit refuses is parked or scheduled (LimitOps._admit) and the next one
        tried; a call (`budget`, shared by its takes) refuses at most PARK_PER_FETCH, then
        wakes the blocked fetches (a wake token, on Redis) and takes nothing more.
        """
        budget = Budget() if budget is None else budget
        for queue in queues:
            pending = self._queues.get(queue)
            while pending and budget.refused < PARK_PER_FETCH:
                raw = pending.popleft()
                if not self._admit(worker_id, queue, raw, now):
                    budget.refused += 1
                    if budget.refused == PARK_PER_FETCH and pending:
                        self._ready.notify_all()
                    continue
                begun = self._begin_fetched(raw, now) if begin and not prefetched else None
                delivery = Delivery(raw, queue, prefetched, begun)
                self._in_progress.setdefault(worker_id, []).append(delivery)
                return delivery
        return None

    def _begin_fetched(self, raw: str, now: float) -> str | None:
        """Begin the workflow step of a job just taken (Delivery.begun); None for a plain
        job or one that does not decode (the worker buries it)."""
        try:
            payload = decode(raw)
        except PayloadError:
            return None
        if payload.run_id is None or payload.node_id is None:
            return None
        try:
            return str(self._begin(payload.run_id, payload.node_id, now))
        except RunExpired:
            return "expired"
        except WorkflowError:
            return "missing"

    def ack(self, worker_id: str, delivery: Delivery) -> None:
        """Remove a finished job from the worker's in-progress list."""
        with self._op("ack"):
            self._remove_in_progress(worker_id, delivery)

    def requeue(self, worker_id: str, delivery: Delivery) -> bool:
        """Put an unfinished job back at the head of its queue; False if it is not held."""
        with self._op("requeue"):
            held = self._in_progress.get(worker_id)
            if held is None or delivery not in held:
                return False
            held.remove(delivery)
            self._free(worker_id, delivery.raw)
            self._push_raw(delivery.queue, delivery.raw, front=True)
            return True

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
                try:
                    payload = decode(raw)
                except PayloadError:  # a refused limited job that no worker will accept:
                    self._push_raw(queue_of(raw), raw)  # pushed as is, to be buried
                    continue
                self._push_raw(payload.queue, encode(attrs.evolve(payload, enqueued_at=now)))
            return len(due)

    def next_due(self) -> float | None:
        """The earliest due time in the scheduled and retry sets."""
        with self._lock:
            times = [at for kind in ("scheduled", "retry") for at, _ in self._sets[kind].values()]
            return min(times, default=None)

    def entries(self, kind: str, limit: int = 100) -> list[SortedEntry]:
        """Jobs of a set, earliest first."""
        return self.set_page(kind, 0, limit)

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

    def recover(self, worker_id: str) -> int:
        """Move every job a (dead) worker holds back to its queue head, keeping their order
        (started ones ahead of prefetched ones); return how many.

        Each recovered started job's `recoveries` counter goes up by one; text that is not
        a payload is moved back unchanged (the worker sends it to the dead set).
        """
        with self._op("recover"):
            held = self._ordered_held(worker_id)
            self._in_progress.pop(worker_id, None)
            for delivery in reversed(held):
                self._free(worker_id, delivery.raw)
                self._push_raw(delivery.queue, _recovered_text(delivery), front=True)
            return len(held)

    def _ordered_held(self, worker_id: str) -> list[Delivery]:
        return sorted(self._in_progress.get(worker_id, []),
                      key=lambda delivery: (delivery.queue, delivery.prefetched))

    def held(self, worker_id: str) -> list[Delivery]:
        """The jobs a worker holds: per queue, the started ones, then the prefetched ones."""
        with self._lock:
            return self._ordered_held(worker_id)

    def recover_job(self, worker_id: str, delivery: Delivery) -> bool:
        """Move one held job back to its queue head (recoveries + 1 if it had started)."""
        with self._op("recover"):
            held = self._in_progress.get(worker_id, [])
            if delivery not in held:
                return False
            held.remove(delivery)
            self._free(worker_id, delivery.raw)
            self._push_raw(delivery.queue, _recovered_text(delivery), front=True)
            return True

    def discard(self, worker_id: str, delivery: Delivery) -> bool:
        """Drop one held job (freeing its limit slot)."""
        with self._lock:
            held = self._in_progress.get(worker_id, [])
            if delivery not in held:
                return False
            held.remove(delivery)
            self._free(worker_id, delivery.raw)
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
            last = self._last_beat
            if last is not None and ttl_s > 0 and now - last > ttl_s / 2:
                gap = now - last  # the registry heard nobody: an outage all workers shared
                for other, (expires, other_info) in list(self._workers.items()):
                    if expires > last:
                        self._workers[other] = (expires + gap, other_info)
            if ttl_s > 0 and (last is None or now > last):
                self._last_beat = now
            known = self._workers.get(worker_id, (0.0, {}))[1]
            self._workers[worker_id] = (now + ttl_s, {**known, **info})  # fields merge, as HSET

    def workers(self, now: float) -> list[WorkerInfo]:
        """Every registered worker, alive or not."""
        with self._lock:
            return [WorkerInfo(w, expires > now, expires, dict(info))
                    for w, (expires, info) in sorted(self._workers.items())]

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker from the registry, freeing any limit slot still recorded for it."""
        with self._lock:
            self._workers.pop(worker_id, None)
            self._forget_slots(worker_id)

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

    # -- SettlePort ------------------------------------------------------------------------

    def settle(self, worker_id: str, delivery: Delivery, settlement: Settlement, now: float,
               fetch_from: Sequence[str] = (), *, begin_next: bool = False) -> Settled:
        """Apply `settlement` in one locked step, then take at most one job (see SettlePort)."""
        with self._op("settle"):
            payload = settlement.payload
            run_id, node_id = payload.run_id, payload.node_id
            step = run_id is not None and node_id is not None
            completing: _Run | RunSummary | None = None
            if settlement.node is NodeEvent.SUCCEEDED and run_id is not None and step:
                completing = self._live_run(run_id, now)  # RunExpired: nothing applied
            transition = Transition()
            waits = bool(settlement.await_batches)
            if isinstance(completing, _Run) and node_id is not None:
                # WorkflowError first (checked even for a step that waits for its batches)
                transition = plan_complete(completing.state, node_id)
            self._remove_in_progress(worker_id, delivery)
            if settlement.action is Action.RETRY:
                at = now if settlement.retry_at is None else settlement.retry_at
                self._sets["retry"][payload.jid] = (at, encode(payload))
            elif settlement.action is Action.BURY and settlement.keep_dead:
                self._add_dead(payload, now, keep=True)
            if isinstance(completing, _Run) and waits:
                transition = self._await_batches(payload, settlement.await_batches, now)
            elif isinstance(completing, _Run):
                self._commit(completing, transition, now)
            elif settlement.node is NodeEvent.FAILED and step:
                transition = self._fail_run_node(payload, now)
            if settlement.batch is not None:
                moved = self._batch_settled(payload, settlement.batch, now)
                transition = transition if moved.noop else moved
            if settlement.release_unique and payload.unique_key is not None:
                self.release_lock(payload.unique_key, payload.unique_token or "")
            if settlement.tracked:
                self._store_result(settlement, now)
            self._count_stats(settlement, now)
            following = self._take(worker_id, fetch_from, now,
                                   begin=begin_next) if fetch_from else None
            return Settled(transition, following)

    def settle_acks(self, worker_id: str, acks: Sequence[tuple[Delivery, Settlement]],
                    now: float, fetch_from: Sequence[str] = (), fetch: int = 0, *,
                    begin_next: bool = False) -> list[Delivery]:
        """Apply plain acks one after the other, as `settle` (see SettlePort)."""
        check_acks(acks, fetch)
        settled = [self.settle(worker_id, delivery, settlement, now,
                               fetch_from if index < fetch else (), begin_next=begin_next)
                   for index, (delivery, settlement) in enumerate(acks)]
        return [each.next for each in settled if each.next is not None]

    def _count_stats(self, settlement: Settlement, now: float) -> None:
        if now >= self._stats_next_expiry:  # as Redis expires a bucket (the caller's clock)
            for name, expiry in list(self._stats_expire.items()):
                if expiry <= now:
                    del self._stats_expire[name], self._stats[name]
            self._stats_next_expiry = min(self._stats_expire.values(), default=float("inf"))
        minute, day = stat_buckets(now)
        for counter, by in (("processed", settlement.processed), ("failed", settlement.failed)):
            if by <= 0:
                continue
            self._stats[counter] = self._stats.get(counter, 0) + by
            for bucket, ttl_s in ((minute, STAT_MINUTE_TTL_S), (day, STAT_DAY_TTL_S)):
                name = f"{counter}:{bucket}"
                if name not in self._stats:  # a bucket lives its TTL from its first count
                    self._stats_expire[name] = now + ttl_s
                    self._stats_next_expiry = min(self._stats_next_expiry, now + ttl_s)
                self._stats[name] = self._stats.get(name, 0) + by

    def stats(self, names: Sequence[str]) -> dict[str, int]:
        """The counters `names`, 0 for one that is absent (or expired)."""
        with self._lock:
            return {name: self._stats.get(name, 0) for name in names}

    def close(self) -> None:
        """Nothing to release: the memory backend owns no connection."""


def _recovered_text(delivery: Delivery) -> str:
    """What recovery pushes back: a started job counts one more recovery."""
    return delivery.raw if delivery.prefetched else bump_recoveries(delivery.raw)


def _check_kind(kind: str) -> str:
    if kind not in _SETS:
        raise ValueError(f"set kind must be one of {', '.join(_SETS)}; got {kind!r}")
    return kind
