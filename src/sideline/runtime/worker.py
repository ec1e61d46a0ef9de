"""Worker: N threads fetching and performing jobs, plus a scheduled-set poller.

Fetch is blocking (the backend wakes a thread when a job arrives), so an idle
worker does not spin. Queue order is strict (first listed first) or weighted
(each fetch draws an order with probability proportional to the weights, as
Sidekiq does).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from sideline.core.errors import BackendError, ConfigurationError, SidelineError
from sideline.core.jobs import check_queue_name
from sideline.core.ports import Delivery
from sideline.runtime._env import new_id
from sideline.runtime.executor import process
from sideline.runtime.orphans import find_orphans, forget_emptied, recover_orphans

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["Worker"]

log = logging.getLogger("sideline.worker")

T = TypeVar("T")


class Worker:
    """Runs jobs of an App on `concurrency` threads until stopped.

    Args:
        app: the application whose jobs run here.
        concurrency: number of job threads.
        queues: queue names in priority order (strict), or a mapping name -> weight.
        instance_id: this worker's stable identity (SIDELINE_INSTANCE_ID; default
            host:pid). Each start is a new incarnation, registered as
            "<instance_id>#<incarnation>"; a restarted instance recovers the jobs its
            previous incarnation held, at once.
        worker_id: the exact registry id to use instead (tests; no incarnation suffix).
        fetch_timeout_s: how long a blocking fetch waits before re-checking for stop.
        poll_interval_s: the longest the scheduled-set poller sleeps between passes.
        shutdown_timeout_s: on stop, how long to wait for running jobs before pushing
            them back to their queues.
        heartbeat_interval_s, heartbeat_ttl_s: how often this worker says it is alive, and
            how long after its last heartbeat it counts as dead.
        recovery_interval_s: how often this worker looks for dead workers and moves
            their in-progress jobs back to their queues.
    """

    def __init__(self, app: App, *, concurrency: int = 10,
                 queues: Sequence[str] | Mapping[str, int] = ("default",),
                 instance_id: str | None = None, worker_id: str | None = None,
                 fetch_timeout_s: float = 1.0,
                 poll_interval_s: float = 0.1, shutdown_timeout_s: float = 25.0,
                 heartbeat_interval_s: float = 5.0, heartbeat_ttl_s: float = 15.0,
                 recovery_interval_s: float = 5.0) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        self.app = app
        self.concurrency = concurrency
        self.weights: dict[str, int] = (
            {check_queue_name(q): int(w) for q, w in queues.items()}
            if isinstance(queues, Mapping) else {check_queue_name(q): 0 for q in queues})
        if not self.weights:
            raise ConfigurationError("a worker needs at least one queue")
        if any(w < 0 for w in self.weights.values()):
            raise ConfigurationError(f"queue weights must be >= 0, got {self.weights}")
        self.strict = all(w == 0 for w in self.weights.values())
        self.instance_id = instance_id or worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.incarnation = new_id()[:8]
        self.worker_id = worker_id or f"{self.instance_id}#{self.incarnation}"
        self.fetch_timeout_s = fetch_timeout_s
        self.poll_interval_s = poll_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._quiet = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.recovery_interval_s = recovery_interval_s
        self._busy: dict[int, Delivery] = {}
        self._prefetched: deque[Delivery] = deque()
        self._busy_lock = threading.Lock()
        self.processed = 0
        self.recovered = 0
        self.started_at = 0.0
        self._next_expiry = float("inf")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Worker:
        """Start the job threads and the poller; return self."""
        if self._threads:
            raise ConfigurationError("worker already started")
        if self._stop.is_set():
            raise ConfigurationError("a stopped worker cannot start again; create a new Worker")
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"sideline-{index}", daemon=True)
            self._threads.append(thread)
        self._threads.append(threading.Thread(target=self._poll, name="sideline-poller",
                                              daemon=True))
        self.started_at = self.app.clock.now()
        self._take_over_previous_incarnations()
        self._heartbeat()
        for thread in self._threads:
            thread.start()
        log.info("worker %s started: %d threads, queues %s", self.worker_id, self.concurrency,
                 list(self.weights))
        return self

    def quiet(self) -> None:
        """Stop fetching new jobs; running jobs finish (Sidekiq's TSTP)."""
        self._quiet.set()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop fetching, wait up to `timeout_s` for running jobs, push back the rest."""
        timeout = self.shutdown_timeout_s if timeout_s is None else timeout_s
        self._quiet.set()
        self._stop.set()
        try:
            self.app.backend.wake(list(self.weights))
        except SidelineError:
            log.warning("could not wake blocked fetches; they end within %.1f s",
                        self.fetch_timeout_s)
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            for thread in self._threads:
                while thread.is_alive() and not deadline.is_set():
                    thread.join(0.05)
        finally:
            timer.cancel()
        with self._busy_lock:
            unfinished = list(self._busy.values())
            self._busy.clear()
            unstarted = list(self._prefetched)
            self._prefetched.clear()
        for delivery in unfinished:
            log.warning("pushing back unfinished job from %s: %.120s", delivery.queue,
                        delivery.raw)
            self.app.backend.requeue(self.worker_id, delivery)
        for delivery in reversed(unstarted):
            self.app.backend.requeue(self.worker_id, delivery)
        if not self.app.backend.in_progress(self.worker_id):
            self.app.backend.forget_worker(self.worker_id)
        self._threads = []
        log.info("worker %s stopped", self.worker_id)

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def busy(self) -> int:
        """How many jobs are running now."""
        with self._busy_lock:
            return len(self._busy)

    # -- loops -----------------------------------------------------------------------------

    def queue_order(self) -> list[str]:
        """The order to try queues in for the next fetch."""
        if self.strict:
            return list(self.weights)
        remaining = {q: w for q, w in self.weights.items() if w > 0}
        order: list[str] = []
        while remaining:
            chosen = _weighted_pick(remaining, self.app.random.random())
            order.append(chosen)
            del remaining[chosen]
        return order + [q for q, w in self.weights.items() if w == 0]

    def _work(self) -> None:
        ident = threading.get_ident()
        backend = self.app.backend
        while not self._quiet.is_set():
            try:
                delivery = self._next_delivery()
            except SidelineError:
                log.exception("fetch failed; retrying in 1 s")
                self._stop.wait(1.0)
                continue
            if delivery is None:
                continue
            if self._quiet.is_set():  # fetched while stopping: hand it straight back
                backend.requeue(self.worker_id, delivery)
                break
            with self._busy_lock:
                self._busy[ident] = delivery
            try:
                process(self.app, self.worker_id, delivery, persist=self._persist)
            except SidelineError:
                # The backend failed while settling: the job stays in this worker's
                # in-progress list, where recovery finds it. Nothing is lost.
                log.exception("could not settle job from %s; left for recovery", delivery.queue)
            finally:
                with self._busy_lock:
                    self._busy.pop(ident, None)
                    self.processed += 1

    def _next_delivery(self) -> Delivery | None:
        """A prefetched job, else a batch sized to the idle threads, else a blocking fetch."""
        with self._busy_lock:
            if self._prefetched:
                return self._prefetched.popleft()
            idle = self.concurrency - len(self._busy)
        order = self.queue_order()
        batch = self.app.backend.fetch_many(self.worker_id, order, max(1, idle))
        if batch:
            if len(batch) > 1:
                with self._busy_lock:
                    self._prefetched.extend(batch[1:])
            return batch[0]
        return self.app.backend.fetch(self.worker_id, order, self.fetch_timeout_s)

    def _persist(self, call: Callable[[], T]) -> T:
        """Run a settling call, retrying with backoff while the backend is unreachable.

        Settling calls are idempotent, so a retry after a lost reply is harmless. Gives
        up only when the worker is stopping (the job then waits in this worker's
        in-progress list for recovery).
        """
        delay_s = 0.05
        while True:
            try:
                return call()
            except BackendError as exc:
                if self._stop.is_set():
                    raise
                log.warning("backend unavailable (%s); retrying in %.2f s", exc, delay_s)
                self._stop.wait(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    def _poll(self) -> None:
        """Housekeeping: move due scheduled jobs, heartbeat, recover dead workers' jobs."""
        backend = self.app.backend
        next_beat = next_recovery = 0.0
        while not self._stop.is_set():
            now = self.app.clock.now()
            try:
                backend.move_due(now)
                due = backend.next_due()
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + self.heartbeat_interval_s
                if now >= next_recovery:
                    self.recover_dead_workers()
                    next_recovery = min(now + self.recovery_interval_s,
                                        self._next_expiry + 0.05)
            except SidelineError:
                log.exception("housekeeping failed; retrying")
                due = None
            wait_s = self.poll_interval_s if due is None else min(
                self.poll_interval_s, max(0.0, due - self.app.clock.now()))
            self._stop.wait(wait_s)

    def _take_over_previous_incarnations(self) -> None:
        """Recover at once what earlier incarnations of this instance held: a process that
        restarts under the same instance id cannot still be running their jobs."""
        now = self.app.clock.now()
        earlier = [w for w in self.app.backend.workers(now)
                   if w.worker_id != self.worker_id and w.info.get("instance") == self.instance_id]
        for worker in earlier:
            if worker.alive:
                log.warning("instance %s: taking over from incarnation %s whose heartbeat is "
                            "still fresh; if another process uses this instance id, give each "
                            "its own SIDELINE_INSTANCE_ID", self.instance_id, worker.worker_id)
            self.app.backend.heartbeat(worker.worker_id, {}, -1.0, now)  # mark it dead now
        if earlier:
            ids = [w.worker_id for w in earlier]
            self.recovered += recover_orphans(self.app, find_orphans(self.app, ids))
            forget_emptied(self.app, ids)

    def _heartbeat(self) -> None:
        info = {"instance": self.instance_id, "incarnation": self.incarnation,
                "host": socket.gethostname(), "pid": str(os.getpid()),
                "concurrency": str(self.concurrency), "busy": str(self.busy),
                "queues": ",".join(self.weights), "started_at": repr(self.started_at)}
        self.app.backend.heartbeat(self.worker_id, info, self.heartbeat_ttl_s,
                                   self.app.clock.now())

    def recover_dead_workers(self) -> int:
        """One recovery pass: under the recovery lock, move every dead worker's in-progress
        jobs back to their queues and forget the worker. Returns the jobs moved."""
        backend = self.app.backend
        now = self.app.clock.now()
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
                moved = recover_orphans(self.app, find_orphans(self.app, dead))
                forget_emptied(self.app, dead)
        finally:
            backend.release_lock("recovery", token)
        self.recovered += moved
        return moved


def _weighted_pick(weights: Mapping[str, int], draw: float) -> str:
    """The key whose cumulative weight interval contains draw * total (draw in [0, 1))."""
    pick = draw * sum(weights.values())
    last = ""
    for name, weight in weights.items():
        last = name
        pick -= weight
        if pick < 0:
            return name
    return last  # float rounding at the top of the range
