"""The admin API (`app.admin`): Sidekiq's API over any backend.

Stats with history, queues, the scheduled/retry/dead sets, workers, orphans and
batches, as frozen views (sideline.core.admin, runtime.batches.BatchStatus). The
dashboard and the CLI are thin views over it.
Every page is a window over one list or sorted set; nothing scans the keyspace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import attrs

from sideline.core.admin import (
    AdminStore,
    BusyJob,
    HistoryPoint,
    LimitView,
    QueuePage,
    QueueView,
    SetPage,
    StatsView,
    WorkerView,
    check_kind,
    day_buckets,
    matches,
    minute_buckets,
    page_window,
    queued_job,
    stat_name,
    worker_view,
)
from sideline.core.clock import Clock
from sideline.core.errors import ConfigurationError, SidelineError
from sideline.core.periodic import PeriodicEntry
from sideline.core.ports import Backend, Delivery, SortedEntry
from sideline.core.results import JobInfo
from sideline.core.run import RunStatus
from sideline.runtime import workflows
from sideline.runtime.batches import BatchStatus
from sideline.runtime.client import Client
from sideline.runtime.control import job_target
from sideline.runtime.orphans import Orphan, Recovery
from sideline.runtime.periodic import PeriodicView
from sideline.runtime.periodic import view as periodic_view
from sideline.runtime.workflows import RunInfo

__all__ = ["Admin", "AdminBackend", "OrphanSource"]

_SCAN_WINDOW = 500
"""How many queued jobs one read of `delete_job`'s search takes."""


class AdminBackend(Backend, AdminStore, Protocol):
    """A backend with the admin primitives: every adapter shipped with sideline.

    Batches are read through `Backend`'s `BatchStore` port (`recent_batches`,
    `get_batch`, `invalidate_batch`)."""


class OrphanSource(Protocol):
    """Where the orphan calls go (the App: recovery wakes its inline testing mode)."""

    def orphans(self) -> list[Orphan]:
        """Jobs held by dead workers."""
        ...

    def retry_orphans(self, selected: Sequence[Orphan] | None = None) -> int:
        """Move orphans back to their queues."""
        ...

    def delete_orphans(self, selected: Sequence[Orphan] | None = None) -> int:
        """Drop orphans for good."""
        ...

    def recovered(self, limit: int = 100) -> list[Recovery]:
        """The recovery log, newest first."""
        ...


class Admin:
    """Read and act on everything a backend holds, as Sidekiq's API does.

    Args:
        backend: the app's backend.
        clock: the app's clock (latency, liveness and today's buckets use it).
        orphans: what the orphan calls delegate to (the App); without it they raise.
        after_push: called after a call pushed jobs (the App's inline testing mode).
    """

    def __init__(self, backend: AdminBackend, clock: Clock, *,
                 orphans: OrphanSource | None = None,
                 after_push: Callable[[], None] | None = None,
                 client: Client | None = None) -> None:
        self.backend = backend
        self.clock = clock
        self._orphans = orphans
        self._after_push = after_push
        self._client = client

    # -- periodic jobs ---------------------------------------------------------------------

    def periodic(self) -> list[PeriodicView]:
        """The stored periodic entries (docs/periodic.md), by name, with their schedule,
        next and last run, and whether they are paused."""
        now = self.clock.now()
        found = [periodic_view(state, now) for state in self.backend.periodic_states()]
        return [entry for entry in found if entry is not None]

    def pause_periodic(self, name: str) -> bool:
        """Pause an entry: no tick fires until it is resumed; False if it is unknown."""
        return self.backend.pause_periodic(name, True, self.clock.now())

    def resume_periodic(self, name: str) -> bool:
        """Resume an entry from now on (the ticks it missed while paused do not fire);
        False if it is unknown."""
        return self.backend.pause_periodic(name, False, self.clock.now())

    def run_periodic(self, name: str) -> str | None:
        """Push an entry's job now, once, outside its schedule (its ticks are unchanged);
        return the jid, None if the entry is unknown.

        Raises:
            ConfigurationError: this admin API was built without a client (an App's is).
        """
        if self._client is None:
            raise ConfigurationError("run_periodic needs the App's admin API (app.admin)")
        state = next((s for s in self.backend.periodic_states() if s.name == name), None)
        if state is None or state.definition is None:
            return None
        try:
            entry = PeriodicEntry.from_definition(state.definition)
        except (SidelineError, ValueError, KeyError, TypeError):
            return None  # an unreadable stored definition: the listing leaves it out too
        return self._client.enqueue(entry.job, list(entry.args), dict(entry.kwargs),
                                    queue=entry.queue)

    # -- stats -----------------------------------------------------------------------------

    def server_info(self) -> dict[str, str]:
        """The store behind the app: Redis's version, memory used and clients (or that it
        is the embedded memory backend)."""
        return self.backend.server_info()

    def stats(self) -> StatsView:
        """Totals, today's counts (UTC day), queued jobs, set sizes and live workers."""
        now = self.clock.now()
        today = day_buckets(now, 1)[0]
        names = [stat_name("processed"), stat_name("failed"),
                 stat_name("processed", today), stat_name("failed", today)]
        counters = self.backend.stats(names)
        sizes = self.backend.queue_sizes()
        alive = [view for view in map(worker_view, self.backend.workers(now)) if view.alive]
        return StatsView(
            processed=counters[names[0]], failed=counters[names[1]],
            processed_today=counters[names[2]], failed_today=counters[names[3]],
            enqueued=sum(sizes.values()), scheduled=self.backend.set_size("scheduled"),
            retries=self.backend.set_size("retry"), dead=self.backend.set_size("dead"),
            busy=sum(view.busy for view in alive), workers=len(alive), queues=len(sizes))

    def history(self, days: int = 7) -> list[HistoryPoint]:
        """Processed and failed per UTC day for the last `days` days, today first."""
        return self._history(day_buckets(self.clock.now(), days))

    def history_minutes(self, minutes: int = 60) -> list[HistoryPoint]:
        """Processed and failed per UTC minute for the last `minutes` minutes (kept 8 hours),
        this minute first."""
        return self._history(minute_buckets(self.clock.now(), minutes))

    def _history(self, buckets: list[str]) -> list[HistoryPoint]:
        names = [stat_name(kind, bucket) for bucket in buckets for kind in ("processed", "failed")]
        counters = self.backend.stats(names)
        return [HistoryPoint(bucket, counters[stat_name("processed", bucket)],
                             counters[stat_name("failed", bucket)]) for bucket in buckets]

    # -- queues ----------------------------------------------------------------------------

    def queues(self) -> list[QueueView]:
        """Every known queue with its size and latency (age of its oldest job), by name."""
        now = self.clock.now()
        return [QueueView(name, size, self.backend.queue_latency_s(name, now))
                for name, size in sorted(self.backend.queue_sizes().items())]

    def queue_jobs(self, queue: str, page: int = 1, per_page: int = 25) -> QueuePage:
        """One page of `queue`, from its head (the next job to run first)."""
        start, count = page_window(page, per_page)
        jobs = tuple(map(queued_job, self.backend.queue_page(queue, start, count)))
        return QueuePage(queue, self.backend.queue_sizes().get(queue, 0), page, per_page, jobs)

    def delete_job(self, queue: str, jid: str) -> bool:
        """Remove the queued job `jid` from `queue` (searched window by window from the
        head); False if it is not there (it may have started meanwhile)."""
        start = 0
        while window := self.backend.queue_page(queue, start, _SCAN_WINDOW):
            for job in map(queued_job, window):
                if job.jid == jid:
                    return self.backend.delete_queued(queue, job.raw)
            start += len(window)
        return False

    def clear_queue(self, queue: str) -> int:
        """Remove every job waiting in `queue`; return how many."""
        return self.backend.clear_queue(queue)

    # -- scheduled, retry and dead sets ----------------------------------------------------

    def scheduled(self, page: int = 1, per_page: int = 25, search: str | None = None) -> SetPage:
        """One page of the scheduled set, earliest first (see `set_page`)."""
        return self.set_page("scheduled", page, per_page, search)

    def retries(self, page: int = 1, per_page: int = 25, search: str | None = None) -> SetPage:
        """One page of the retry set, next retry first (see `set_page`)."""
        return self.set_page("retry", page, per_page, search)

    def dead(self, page: int = 1, per_page: int = 25, search: str | None = None) -> SetPage:
        """One page of the dead set, oldest death first (see `set_page`)."""
        return self.set_page("dead", page, per_page, search)

    def set_page(self, kind: str, page: int = 1, per_page: int = 25,
                 search: str | None = None) -> SetPage:
        """One page of set `kind` ("scheduled", "retry" or "dead"), earliest first; with
        `search`, only this page's entries whose key, jid or job name contains it."""
        start, count = page_window(page, per_page)
        entries = tuple(entry for entry in self.backend.set_page(check_kind(kind), start, count)
                        if matches(entry.payload, entry.key, search))
        return SetPage(kind, self.backend.set_size(kind), page, per_page, entries)

    def find(self, kind: str, key: str) -> SortedEntry | None:
        """The entry of set `kind` under `key` (the jid, or "<jid>~2"... in the dead set)."""
        return self.backend.set_find(check_kind(kind), key)

    def retry_now(self, kind: str, keys: Iterable[str]) -> int:
        """Push these entries of set `kind` to their queues now (a dead workflow step
        revives its run); return how many were still there."""
        now = self.clock.now()
        if check_kind(kind) == "dead":
            moved = sum(self.backend.retry_dead(key, now) for key in keys)
        else:
            moved = sum(self.backend.set_retry_now(kind, key, now) for key in keys)
        if moved and self._after_push is not None:
            self._after_push()
        return moved

    def delete(self, kind: str, keys: Iterable[str]) -> int:
        """Remove these entries of set `kind` for good; return how many were there."""
        check_kind(kind)
        return sum(self.backend.delete(kind, key) for key in keys)

    def kill(self, keys: Iterable[str]) -> int:
        """Move these retry entries to the dead set now (dead_reason "killed"); a workflow
        step's run fails as if the step had died. Return how many were moved."""
        return sum(self._kill(key, self.clock.now()) for key in keys)

    def _kill(self, key: str, now: float) -> bool:
        entry = self.backend.set_find("retry", key)
        if entry is None:
            return False
        payload = entry.payload
        if payload.run_id is None or payload.node_id is None:
            return self.backend.set_kill(key, now)
        # A step: bury it through fail_node so its run fails in the same step, then drop
        # the retry entry (were it left by a crash in between, the step would be skipped).
        buried = attrs.evolve(payload, dead=True, dead_reason="killed")
        self.backend.fail_node("admin", Delivery("", payload.queue), buried, now)
        self.backend.delete("retry", key)
        return True

    # -- limits ----------------------------------------------------------------------------

    def limits(self) -> list[LimitView]:
        """The fleet-wide limit keys in use (docs/limits.md), by key: a concurrency key's
        max, running and parked jobs; a rate key's limit, window and starts in the window.
        A key leaves the list once nothing holds it."""
        return self.backend.limits(self.clock.now())

    def parked(self, key: str, start: int = 0, count: int = 50) -> list[str]:
        """Up to `count` jobs (raw payload text) parked under concurrency key `key`, from
        position `start`, oldest first (the next to be released first)."""
        return self.backend.parked_page(key, start, count)

    # -- workers ---------------------------------------------------------------------------

    def workers(self) -> list[WorkerView]:
        """Every registered worker, alive or dead (until recovery forgets it), by id."""
        return [worker_view(worker) for worker in self.backend.workers(self.clock.now())]

    # -- runs ------------------------------------------------------------------------------

    def runs(self, status: RunStatus | str | None = None, page: int = 1,
             per_page: int = 25) -> list[RunInfo]:
        """A page of the newest workflow runs (newest first), only those in `status` if
        given; each with its node states, times, attempts and errors (or, for a finished
        and compacted run, its node counts and failed nodes)."""
        return workflows.runs(self, status, page, per_page)

    def run(self, run_id: str) -> RunInfo:
        """One run's status (see `runs`).

        Raises:
            RunExpired: the run's state is gone.
        """
        return workflows.status(self, run_id)

    def busy(self) -> list[BusyJob]:
        """The jobs running now on live workers, oldest first (as of their last heartbeat)."""
        found: list[BusyJob] = []
        for worker in self.backend.workers(self.clock.now()):
            if not worker.alive:
                continue
            try:
                work = json.loads(worker.info.get("work") or "[]")
            except ValueError:
                continue
            found += [BusyJob(worker.worker_id, str(item.get("jid")), str(item.get("name")),
                              str(item.get("queue")), item.get("run_id"),
                              float(item.get("since") or 0.0))
                      for item in work if isinstance(item, dict)]
        return sorted(found, key=lambda job: job.since)

    def stop_job(self, jid: str) -> None:
        """Ask whichever worker runs job `jid` to stop it, within about a second: an async
        job's task is cancelled, an isolated job's process killed, a thread job sees
        `current_job().should_stop()` turn true. A stopped job goes to the dead set (not
        retried). The request is kept for a day, so a job that starts later is stopped
        at once; a job not running anywhere is not affected otherwise."""
        self.backend.request_stop([job_target(jid)], self.clock.now())

    def job(self, jid: str) -> JobInfo:
        """What is stored about job `jid`: its state, progress, message, meta, and
        result if it stores one (a job that stores nothing reads as pending)."""
        found = self.backend.get_results([jid])[0]
        return JobInfo.of(jid, self.backend.job_info(jid), found)

    def jobs(self, jids: Sequence[str]) -> list[JobInfo]:
        """`job` for many jids (the dashboard's Busy page)."""
        found = self.backend.get_results(list(jids))
        return [JobInfo.of(jid, self.backend.job_info(jid), text)
                for jid, text in zip(jids, found, strict=True)]

    def quiet(self, worker_id: str) -> bool:
        """Ask a worker to stop fetching new jobs; False if it is not registered."""
        return self.backend.signal_worker(worker_id, "quiet")

    def stop(self, worker_id: str) -> bool:
        """Ask a worker to stop (after its running jobs, as on SIGTERM); False if it is not
        registered."""
        return self.backend.signal_worker(worker_id, "stop")

    # -- batches ---------------------------------------------------------------------------

    def batches(self, page: int = 1, per_page: int = 50) -> list[BatchStatus]:
        """A page of the newest batches (newest first, by creation), from the
        recent-batches index (the newest 10,000); expired batches are skipped."""
        start, count = page_window(page, per_page)
        now = self.clock.now()
        return [BatchStatus.of(view)
                for view in self.backend.recent_batches(start, count, now)]

    def batch(self, bid: str) -> BatchStatus | None:
        """One batch's status, or None if it is unknown or expired."""
        view = self.backend.get_batch(bid, self.clock.now())
        return None if view is None else BatchStatus.of(view)

    def invalidate_batch(self, bid: str) -> bool:
        """Mark a batch invalid (its jobs see `current_job().batch.valid` false; its
        callbacks still fire); False if it is unknown or expired."""
        return self.backend.invalidate_batch(bid, self.clock.now())

    # -- orphans ---------------------------------------------------------------------------

    def _source(self) -> OrphanSource:
        if self._orphans is None:
            raise RuntimeError("this Admin was built without an orphan source (use app.admin)")
        return self._orphans

    def orphans(self) -> list[Orphan]:
        """Jobs still held by workers whose heartbeat expired."""
        return self._source().orphans()

    def retry_orphans(self, selected: Sequence[Orphan] | None = None) -> int:
        """Move orphans (default: all) back to the heads of their queues; return how many."""
        return self._source().retry_orphans(selected)

    def delete_orphans(self, selected: Sequence[Orphan] | None = None) -> int:
        """Drop orphans (default: all) for good; return how many."""
        return self._source().delete_orphans(selected)

    def recovery_log(self, limit: int = 100) -> list[Recovery]:
        """The newest recovered jobs, newest first."""
        return self._source().recovered(limit)
