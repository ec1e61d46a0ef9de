"""Worker: N threads fetching and performing jobs, plus a scheduled-set poller.

Fetch is blocking (the backend wakes a thread when a job arrives), so an idle
worker does not spin. Queue order is strict (first listed first) or weighted
(each fetch draws an order with probability proportional to the weights, as
Sidekiq does).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from sideline.core.errors import BackendError, ConfigurationError, PayloadError, SidelineError
from sideline.core.jobs import check_queue_name
from sideline.core.payload import decode
from sideline.core.ports import Delivery
from sideline.runtime._env import new_id
from sideline.runtime._housekeeping import Housekeeping
from sideline.runtime._taking import Hand, Taking
from sideline.runtime.aio import DEFAULT_ASYNC_CONCURRENCY, AsyncRunner
from sideline.runtime.context import Runtime
from sideline.runtime.control import RunningJobs
from sideline.runtime.executor import Lanes, process
from sideline.runtime.observers import notify
from sideline.runtime.periodic import Scheduler

if TYPE_CHECKING:
    from sideline.runtime.app import App
    from sideline.runtime.isolation import ProcessPool

__all__ = ["Worker"]

log = logging.getLogger("sideline.worker")

T = TypeVar("T")


class Worker(Housekeeping, Taking):
    """Runs jobs of an App on `concurrency` threads until stopped.

    Args:
        app: the application whose jobs run here (an App, or its `app.runtime`); the
            worker keeps only the App's runtime context, built once here.
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
        prefetch: how many jobs the worker may fetch ahead of its threads (default 0); it
            holds at most `concurrency + prefetch` jobs. A prefetched job is started with
            one more backend call, goes back to its queue on stop, and does not count
            toward the poison-pill limit if recovered after a crash.
        jobs_per_call: how many waiting jobs a job thread takes in one backend call
            (default 1). Above 1, the thread runs what it took one after the other and
            writes the plain acks of those jobs together, in the call that takes its
            next ones (runtime/_taking.py): about one round trip per `jobs_per_call`
            short jobs, at the price of jobs waiting behind the others their thread took
            and, after a crash, re-running finished jobs whose acks were not written yet.
            Not with `prefetch`.
        heartbeat_interval_s, heartbeat_ttl_s: how often this worker says it is alive, and
            how long after its last heartbeat it counts as dead.
        recovery_interval_s: how often this worker looks for dead workers and moves
            their in-progress jobs back to their queues.
        reconcile_interval_s: how often this worker checks its own in-progress lists for
            jobs that no thread runs (a fetch whose reply was lost) and pushes them back;
            a job is pushed back only when two checks this far apart both found it
            unaccounted for. Keep it above the Redis timeout.
        max_jobs: quiet the worker after this many jobs (0: never; see `max_jobs`).
        async_concurrency: how many async jobs run at once on the worker's event loop
            (started when the app declares an async job).
        stop_check_interval_s: how often, while jobs run, the worker asks the backend
            whether someone wants one of them stopped.
    """

    def __init__(self, app: App | Runtime, *, concurrency: int = 10,
                 queues: Sequence[str] | Mapping[str, int] = ("default",),
                 instance_id: str | None = None, worker_id: str | None = None,
                 fetch_timeout_s: float = 1.0,
                 poll_interval_s: float = 0.1, shutdown_timeout_s: float = 25.0,
                 heartbeat_interval_s: float = 5.0, heartbeat_ttl_s: float = 15.0,
                 recovery_interval_s: float = 5.0, prefetch: int = 0,
                 reconcile_interval_s: float = 15.0, max_jobs: int = 0,
                 async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY,
                 stop_check_interval_s: float = 0.5, jobs_per_call: int = 1) -> None:
        _check_sizes(concurrency, prefetch, jobs_per_call, async_concurrency)
        self.runtime: Runtime = app if isinstance(app, Runtime) else app.runtime
        self.app: App = self.runtime.app
        """The user's App (for callers; the worker itself uses only `runtime`)."""
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
        self.max_jobs = max_jobs
        """After this many jobs the worker quiets itself (0: never); `sideline worker
        --max-jobs-per-child` then exits so its supervisor starts a fresh process."""
        self.fetch_timeout_s = fetch_timeout_s
        self.poll_interval_s = poll_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._quiet = threading.Event()
        self._stop = threading.Event()
        self.stop_requested = threading.Event()
        """Set when a "stop" signal arrived (admin API); the process owning the worker
        calls stop() (`sideline worker` does)."""
        self._threads: list[threading.Thread] = []
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.recovery_interval_s = recovery_interval_s
        self.prefetch = prefetch
        self.jobs_per_call = jobs_per_call
        self._hands: dict[int, Hand] = {}  # per thread taking several jobs per call
        self.reconcile_interval_s = reconcile_interval_s
        self._busy: dict[int, Delivery] = {}
        self._since: dict[int, float] = {}  # when each thread's job started
        self._prefetched: deque[Delivery] = deque()
        self._waiting = 0  # threads inside a blocking fetch
        self._busy_lock = threading.Lock()
        self._suspects: Counter[Delivery] = Counter()
        self._suspects_at = 0.0
        self._next_reconcile = float("inf")
        self.processed = 0
        self.recovered = 0
        self.started_at = 0.0
        self._next_expiry = float("inf")
        self._init_lanes(async_concurrency, stop_check_interval_s)

    def _init_lanes(self, async_concurrency: int, stop_check_interval_s: float) -> None:
        self.async_concurrency = async_concurrency
        self.stop_check_interval_s = stop_check_interval_s
        self.running_jobs = RunningJobs()
        """The jobs running here, by stop target (stop requests reach them through it)."""
        self._aio: AsyncRunner | None = None
        self._pool: ProcessPool | None = None
        self._lanes = Lanes(running=self.running_jobs)
        self._handed = itertools.count(1)
        self.scheduler: Scheduler | None = None
        """The periodic jobs' loop (when the app declares entries), run by the poller."""
        self._scheduler_started = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Worker:
        """Start the job threads and the poller; return self."""
        if self._threads:
            raise ConfigurationError("worker already started")
        if self._stop.is_set():
            raise ConfigurationError("a stopped worker cannot start again; create a new Worker")
        loop = self._work if self.jobs_per_call == 1 else self._work_taking
        for index in range(self.concurrency):
            thread = threading.Thread(target=loop, name=f"sideline-{index}", daemon=True)
            self._threads.append(thread)
        self._threads.append(threading.Thread(target=self._poll, name="sideline-poller",
                                              daemon=True))
        self.started_at = self.runtime.clock.now()
        self._next_reconcile = self.started_at + self.reconcile_interval_s
        self._start_lanes()
        self._take_over_previous_incarnations()
        self._heartbeat()
        for thread in self._threads:
            thread.start()
        log.info("worker %s started: %d threads, queues %s", self.worker_id, self.concurrency,
                 list(self.weights))
        notify(self.runtime.observers, "worker_started", self.worker_id)
        return self

    def _start_lanes(self) -> None:
        """The event loop for async jobs and the process pool for isolated ones, when the
        app declares such jobs."""
        registry = self.runtime.registry
        if self.runtime.periodic:
            self.scheduler = Scheduler(self.runtime.backend, self.runtime.client,
                                       self.runtime.periodic, registry.names())
        specs = [registry.get(name) for name in registry.names()]
        if any(spec.is_async for spec in specs):
            self._aio = AsyncRunner(self.async_concurrency).start()
        if any(spec.options.isolation == "process" for spec in specs):
            from sideline.runtime.isolation import ProcessPool  # noqa: PLC0415 (only when used)

            self._pool = ProcessPool(self.concurrency)
        self._lanes = Lanes(running=self.running_jobs, aio=self._aio, pool=self._pool,
                            adopt=self._adopt, accepting=lambda: not self._stop.is_set())

    def _adopt(self, delivery: Delivery) -> Callable[[], None]:
        """Account for a job handed to the event loop (it leaves its thread); the returned
        function forgets it once it is settled."""
        key = -next(self._handed)
        with self._busy_lock:
            self._busy[key] = delivery
            self._since[key] = self.runtime.clock.now()

        def release() -> None:
            with self._busy_lock:
                self._busy.pop(key, None)
                self._since.pop(key, None)

        return release

    def run_periodic(self) -> int:
        """Fire the periodic entries whose tick has come (reconciling them first, once);
        return how many ticks this worker fired."""
        scheduler = self.scheduler
        if scheduler is None:
            return 0
        now = self.runtime.clock.now()
        if not self._scheduler_started:
            scheduler.start(now)
            self._scheduler_started = True
        if scheduler.next_due > now:
            return 0
        return scheduler.run_due(now)

    def check_stops(self) -> int:
        """Ask the backend which running jobs someone wants stopped, and stop them;
        return how many were asked to stop."""
        targets = self.running_jobs.targets()
        if not targets:
            return 0
        requested = self.runtime.backend.stop_requests(list(targets))
        return self.running_jobs.stop(requested, targets)

    def quiet(self) -> None:
        """Stop fetching new jobs; running jobs finish (Sidekiq's TSTP)."""
        self._quiet.set()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop fetching, wait up to `timeout_s` for running jobs, push back the rest."""
        timeout = self.shutdown_timeout_s if timeout_s is None else timeout_s
        self._quiet.set()
        self._stop.set()
        try:
            self.runtime.backend.wake(list(self.weights))
        except SidelineError:
            log.warning("could not wake blocked fetches; they end within %.1f s",
                        self.fetch_timeout_s)
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        ends = time.monotonic() + timeout
        try:
            for thread in self._threads:
                while thread.is_alive() and not deadline.is_set():
                    thread.join(0.05)
        finally:
            timer.cancel()
        if self._aio is not None:  # async jobs still running after the deadline are not settled
            self._aio.stop(ends - time.monotonic())
        if self._pool is not None:
            self._pool.close()
        with self._busy_lock:
            unfinished = list(self._busy.values())
            self._busy.clear()
            unstarted = list(self._prefetched)
            self._prefetched.clear()
            hands = list(self._hands.values())
        unstarted += self._settle_left(hands)
        backend = self.runtime.backend
        try:
            for delivery in unfinished:
                log.warning("pushing back unfinished job from %s: %.120s", delivery.queue,
                            delivery.raw)
                backend.requeue(self.worker_id, delivery)
            for delivery in reversed(unstarted):  # each to the head: the oldest ends first
                backend.requeue(self.worker_id, delivery)
            if not backend.in_progress(self.worker_id):
                backend.forget_worker(self.worker_id)
        except SidelineError:
            log.exception("could not push back held jobs on stop; they are recovered once "
                          "this worker's heartbeat expires")
        self._threads = []
        log.info("worker %s stopped", self.worker_id)
        notify(self.runtime.observers, "worker_stopped", self.worker_id)

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

    def work(self) -> list[dict[str, object]]:
        """What runs here now: jid, job name, queue, run id and since when, per job."""
        with self._busy_lock:
            running = [(self._since.get(ident, 0.0), delivery)
                       for ident, delivery in self._busy.items()]
        found: list[dict[str, object]] = []
        for since, delivery in sorted(running, key=lambda item: item[0]):
            try:
                payload = decode(delivery.raw)
            except PayloadError:
                continue  # on its way to the dead set
            found.append({"jid": payload.jid, "name": payload.name, "queue": delivery.queue,
                          "run_id": payload.run_id, "since": since})
        return found

    def threads_alive(self) -> int:
        """How many of this worker's threads (job threads and the poller) are running."""
        return sum(thread.is_alive() for thread in self._threads)

    def holding(self) -> int:
        """How many jobs this worker holds: running, prefetched, and taken by threads that
        take several per call (not started yet, or finished with their acks not written)."""
        with self._busy_lock:
            return len(self._busy) + len(self._prefetched) + sum(
                len(hand.taken) + len(hand.acks) for hand in self._hands.values())

    # -- loops -----------------------------------------------------------------------------

    def queue_order(self) -> list[str]:
        """The order to try queues in for the next fetch."""
        if self.strict:
            return list(self.weights)
        remaining = {q: w for q, w in self.weights.items() if w > 0}
        order: list[str] = []
        while remaining:
            chosen = _weighted_pick(remaining, self.runtime.random.random())
            order.append(chosen)
            del remaining[chosen]
        return order + [q for q, w in self.weights.items() if w == 0]

    def _work(self) -> None:
        ident = threading.get_ident()
        handed: Delivery | None = None  # the next job, taken by the last settle
        while not self._quiet.is_set():
            try:
                handed = self._work_once(ident, handed)
            except BaseException:  # nothing raised here may end the thread
                log.exception("worker thread failed unexpectedly; going on in 1 s")
                handed = None  # if it was held, reconciling puts it back
                self._stop.wait(1.0)
        if handed is not None:
            self._hand_back(handed)

    def _hand_back(self, delivery: Delivery) -> None:
        try:
            self.runtime.backend.requeue(self.worker_id, delivery)
        except SidelineError:
            log.exception("could not push back a job on stop; recovery moves it later")

    def _work_once(self, ident: int, handed: Delivery | None) -> Delivery | None:
        """Process one job (the handed one, else a fetched one); return the next, if the
        settle took one."""
        delivery = handed
        if delivery is None:
            try:
                delivery = self._next_delivery()
            except Exception as exc:  # a fetch error: what Redis moved may be unaccounted for
                with self._busy_lock:
                    self._busy.pop(ident, None)
                self._fetch_failed(exc)
                return None
        if delivery is None or self._quiet.is_set():
            with self._busy_lock:
                self._busy.pop(ident, None)
            if delivery is not None:  # fetched while stopping: hand it straight back
                self._hand_back(delivery)
            return None
        with self._busy_lock:
            self._busy[ident] = delivery
            self._since[ident] = self.runtime.clock.now()
            # the settle takes the next job only when nothing waits in the prefetch buffer
            fetch_from = () if self._prefetched else self.queue_order()
        try:
            following = process(self.runtime, self.worker_id, delivery, persist=self._persist,
                                fetch_from=fetch_from, lanes=self._lanes)
        except SidelineError:
            # The backend failed while settling and the worker is stopping: stop() pushes
            # the job back; if that fails too, recovery moves it once this worker is gone.
            log.exception("could not settle job from %s while stopping", delivery.queue)
            return None  # stays in _busy, so stop() pushes it back
        with self._busy_lock:
            self._busy.pop(ident, None)
            self.processed += 1
            spent = bool(self.max_jobs) and self.processed >= self.max_jobs
        if spent:  # no new job: the one the settle handed over goes back to its queue
            self.quiet()
        return following

    def _next_delivery(self) -> Delivery | None:
        """A prefetched job (claimed), else one fetched now, else a blocking fetch.

        A thread fetches for itself only: jobs released together spread over the idle
        threads, each blocked in its own fetch. Prefetching happens only while no thread
        is idle, and tops the buffer up to `prefetch`.
        """
        backend = self.runtime.backend
        with self._busy_lock:
            buffered = self._prefetched.popleft() if self._prefetched else None
            room = 0 if self._waiting else self.prefetch - len(self._prefetched)
            if buffered is not None:
                self._busy[threading.get_ident()] = buffered  # accounted for while claimed
        if buffered is not None:
            return backend.claim(self.worker_id, buffered)
        order = self.queue_order()
        begin_at = self.runtime.clock.now  # a workflow step is begun by its fetch
        if room > 0:
            found = backend.fetch_many(self.worker_id, order, 1, room, begin_at)
            if found:
                if len(found) > 1:
                    with self._busy_lock:
                        self._prefetched.extend(found[1:])
                return found[0]
        return self._wait_for_job(order, begin_at)

    def _wait_for_job(self, order: Sequence[str],
                      begin_at: Callable[[], float]) -> Delivery | None:
        """A blocking fetch: a job there is at once, else one pushed within
        `fetch_timeout_s`, else None; counted as waiting meanwhile (no prefetch then)."""
        with self._busy_lock:
            self._waiting += 1
        try:
            return self.runtime.backend.fetch(self.worker_id, order, self.fetch_timeout_s,
                                              begin_at)
        finally:
            with self._busy_lock:
                self._waiting -= 1

    def _fetch_failed(self, exc: Exception, *, pause: bool = True) -> None:
        """After a failed fetch: what it moved may be held with no thread knowing, so
        reconcile soon; with `pause`, wait a second before the next try."""
        log.warning("fetch failed (%s: %s)%s", type(exc).__name__, exc,
                    "; retrying in 1 s" if pause else "")
        self._reconcile_soon()
        if pause:
            self._stop.wait(1.0)

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


def _check_sizes(concurrency: int, prefetch: int, jobs_per_call: int,
                 async_concurrency: int) -> None:
    """Raise ConfigurationError for a worker size out of range."""
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
    if prefetch < 0:
        raise ConfigurationError(f"prefetch must be >= 0, got {prefetch}")
    if jobs_per_call < 1:
        raise ConfigurationError(f"jobs_per_call must be >= 1, got {jobs_per_call}")
    if jobs_per_call > 1 and prefetch:
        raise ConfigurationError(
            "jobs_per_call and prefetch do not go together: a thread taking several "
            "jobs per call holds its own; set one of them")
    if async_concurrency < 1:
        raise ConfigurationError(f"async_concurrency must be >= 1, got {async_concurrency}")


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
