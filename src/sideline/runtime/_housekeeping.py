"""The worker's housekeeping: the poller loop (due jobs, heartbeats, signals, recovery of
dead workers, reconciling this worker's own held jobs), kept beside the job threads.

A mixin of `Worker`: it uses the worker's settings and state, declared below.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sideline.core.errors import SidelineError
from sideline.core.ports import Delivery
from sideline.runtime.observers import notify
from sideline.runtime.orphans import find_orphans, forget_emptied, recover_orphans

if TYPE_CHECKING:
    from sideline.runtime._taking import Hand
    from sideline.runtime.context import Runtime

__all__ = ["Housekeeping"]

log = logging.getLogger("sideline.worker")

T = TypeVar("T")

_FAILED = object()
"""What `_safely` returns for a step that raised."""


class Housekeeping:
    """The poller's work, for `Worker`."""

    runtime: Runtime
    worker_id: str
    instance_id: str
    incarnation: str
    concurrency: int
    jobs_per_call: int
    weights: dict[str, int]
    started_at: float
    poll_interval_s: float
    heartbeat_interval_s: float
    heartbeat_ttl_s: float
    recovery_interval_s: float
    reconcile_interval_s: float
    stop_check_interval_s: float
    recovered: int
    stop_requested: threading.Event
    _stop: threading.Event
    _quiet: threading.Event
    _busy_lock: threading.Lock
    _busy: dict[int, Delivery]
    _prefetched: deque[Delivery]
    _hands: dict[int, Hand]
    _suspects: Counter[Delivery]
    _suspects_at: float
    _next_reconcile: float
    _next_expiry: float

    @property
    def busy(self) -> int:
        """How many jobs are running now."""
        raise NotImplementedError

    def quiet(self) -> None:
        """Stop fetching new jobs."""
        raise NotImplementedError

    def check_stops(self) -> int:
        """Stop the running jobs someone asked to stop."""
        raise NotImplementedError

    def run_periodic(self) -> int:
        """Fire the periodic entries whose tick has come."""
        raise NotImplementedError

    def work(self) -> list[dict[str, object]]:
        """What runs here now."""
        raise NotImplementedError

    def _poll(self) -> None:
        """Housekeeping: move due scheduled jobs, heartbeat, recover dead workers' jobs,
        reconcile this worker's own in-progress lists. A failing step never ends the loop."""
        backend = self.runtime.backend
        next_beat = next_recovery = next_stop_check = 0.0
        while not self._stop.is_set():
            now = self.runtime.clock.now()
            if now >= next_stop_check:
                self._safely("reading stop requests", self.check_stops)
                next_stop_check = now + self.stop_check_interval_s
            self._safely("periodic jobs", self.run_periodic)
            for task in self.runtime.poller_tasks:
                self._safely(f"poller task {task!r}", task)
            due: object = None
            if self._safely("moving due jobs", lambda: backend.move_due(now)) is not _FAILED:  # noqa: B023
                due = self._safely("reading the next due time", backend.next_due)
            else:
                next_beat = 0.0  # beat first once the backend answers again
            beat_ok = True
            if now >= next_beat:
                beat_ok = self._safely("heartbeat", self._heartbeat) is not _FAILED
                if beat_ok:
                    next_beat = now + self.heartbeat_interval_s
                    self._safely("reading signals", self._obey_signal)
            if beat_ok and now >= next_recovery:  # judge others only after beating ourselves
                self._safely("recovery", self.recover_dead_workers)
                next_recovery = min(now + self.recovery_interval_s, self._next_expiry + 0.05)
            if now >= self._next_reconcile:
                self._safely("reconciling held jobs", self.reconcile)
                self._next_reconcile = now + self.reconcile_interval_s
            wait_s = self.poll_interval_s if not isinstance(due, float) else min(
                self.poll_interval_s, max(0.0, due - self.runtime.clock.now()))
            self._stop.wait(wait_s)

    def _safely(self, what: str, step: Callable[[], T]) -> T | object:
        """Run one housekeeping step; log and return _FAILED on any error."""
        try:
            return step()
        except SidelineError as exc:
            log.warning("%s failed: %s", what, exc)
        except Exception:
            log.exception("%s failed unexpectedly", what)
        return _FAILED

    def _reconcile_soon(self) -> None:
        """After a fetch error: check the in-progress lists now (and confirm a check later)."""
        self._next_reconcile = min(self._next_reconcile, self.runtime.clock.now())

    def reconcile(self) -> int:
        """Push back held jobs that no thread of this worker runs or will start.

        A fetch whose reply was lost (Redis stalled, the connection reset) moved jobs into
        this worker's lists that no thread knows about. A held job unaccounted for in two
        checks at least `reconcile_interval_s` apart is pushed back to the head of its
        queue (as it was never started here, its recovery count is unchanged). Returns
        the number pushed back.
        """
        backend = self.runtime.backend
        now = self.runtime.clock.now()
        held = Counter(backend.held(self.worker_id))
        with self._busy_lock:
            known = Counter(self._busy.values())
            known.update(self._prefetched)
            for hand in self._hands.values():
                known.update(hand.held())
        suspects = held - known
        if self._suspects and now - self._suspects_at < self.reconcile_interval_s:
            return 0  # too soon to confirm the earlier suspects
        confirmed = suspects & self._suspects
        self._suspects, self._suspects_at = suspects - confirmed, now
        pushed = 0
        for delivery in reversed(list(confirmed.elements())):
            log.warning("pushing back a job no thread holds (a lost fetch reply) to %s: %.120s",
                        delivery.queue, delivery.raw)
            pushed += bool(backend.requeue(self.worker_id, delivery))
        if self._suspects:
            self._next_reconcile = min(self._next_reconcile, now + self.reconcile_interval_s)
        return pushed

    def _obey_signal(self) -> None:
        """Act on a quiet or stop signal sent through the admin API (`app.admin.quiet`)."""
        read = getattr(self.runtime.backend, "worker_signal", None)
        signal = read(self.worker_id) if read is not None else None
        if signal in ("quiet", "stop") and not self._quiet.is_set():
            log.info("worker %s: %s signal received: no new jobs", self.worker_id, signal)
            self.quiet()
        if signal == "stop" and not self.stop_requested.is_set():
            self.stop_requested.set()

    def _take_over_previous_incarnations(self) -> None:
        """Recover at once what earlier incarnations of this instance held: a process that
        restarts under the same instance id cannot still be running their jobs."""
        now = self.runtime.clock.now()
        earlier = [w for w in self.runtime.backend.workers(now)
                   if w.worker_id != self.worker_id and w.info.get("instance") == self.instance_id]
        for worker in earlier:
            if worker.alive:
                log.warning("instance %s: taking over from incarnation %s whose heartbeat is "
                            "still fresh; if another process uses this instance id, give each "
                            "its own SIDELINE_INSTANCE_ID", self.instance_id, worker.worker_id)
            self.runtime.backend.heartbeat(worker.worker_id, {}, -1.0, now)  # mark it dead now
        if earlier:
            ids = [w.worker_id for w in earlier]
            self.recovered += recover_orphans(self.runtime, find_orphans(self.runtime, ids))
            forget_emptied(self.runtime.backend, ids)

    def _heartbeat(self) -> None:
        info = {"instance": self.instance_id, "incarnation": self.incarnation,
                "host": socket.gethostname(), "pid": str(os.getpid()),
                "concurrency": str(self.concurrency), "busy": str(self.busy),
                "jobs_per_call": str(self.jobs_per_call),
                "queues": ",".join(self.weights), "started_at": repr(self.started_at),
                "work": json.dumps(self.work(), separators=(",", ":"))}
        self.runtime.backend.heartbeat(self.worker_id, info, self.heartbeat_ttl_s,
                                       self.runtime.clock.now())
        notify(self.runtime.observers, "heartbeat", self.worker_id)

    def recover_dead_workers(self) -> int:
        """One recovery pass: under the recovery lock, move every dead worker's in-progress
        jobs back to their queues and forget the worker. Returns the jobs moved."""
        backend = self.runtime.backend
        now = self.runtime.clock.now()
        token = backend.acquire_lock("recovery", max(2.0, self.recovery_interval_s), now)
        if token is None:
            return 0  # another worker is recovering right now
        moved = 0
        try:
            workers = backend.workers(now)
            self._next_expiry = min((w.expires_at for w in workers
                                     if w.alive and w.worker_id != self.worker_id),
                                    default=float("inf"))
            dead = [w.worker_id for w in workers
                    if not w.alive and w.worker_id != self.worker_id]
            if dead:
                moved = recover_orphans(self.runtime, find_orphans(self.runtime, dead))
                forget_emptied(self.runtime.backend, dead)
        finally:
            backend.release_lock("recovery", token)
        self.recovered += moved
        return moved


