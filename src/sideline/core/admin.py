"""The admin API's values and port: what the dashboard and the CLI show, as plain data.

Every view is a frozen attrs value built from what an `AdminStore` reads. Paging is a
window over one list or sorted set (`page_window`), never a scan of the keyspace. The
functions here are pure: times are passed in, nothing is read.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Protocol

import attrs

from sideline.core.errors import PayloadError
from sideline.core.payload import Payload, decode
from sideline.core.ports import SortedEntry, WorkerInfo

__all__ = [
    "SET_KINDS",
    "SIGNALS",
    "AdminStore",
    "BusyJob",
    "HistoryPoint",
    "LimitView",
    "QueuePage",
    "QueueView",
    "QueuedJob",
    "SetPage",
    "StatsView",
    "WorkerView",
    "check_kind",
    "check_signal",
    "day_buckets",
    "latency_s",
    "matches",
    "minute_buckets",
    "page_window",
    "queued_job",
    "stat_name",
    "worker_view",
]

SET_KINDS = ("scheduled", "retry", "dead")
"""The time-sorted sets the admin API pages through."""

SIGNALS = ("quiet", "stop")
"""What `AdminStore.signal_worker` can ask of a worker: stop fetching, or stop."""


@attrs.frozen
class QueueView:
    """A queue: its length and the age of its oldest job (0 when empty)."""

    name: str
    size: int
    latency_s: float


@attrs.frozen
class QueuedJob:
    """A job waiting in a queue: its exact stored text and, when it decodes, its payload."""

    raw: str
    payload: Payload | None
    error: str | None = None
    """Why the text is not a payload, when it is not."""

    @property
    def jid(self) -> str | None:
        """The job id, when the text is a payload."""
        return None if self.payload is None else self.payload.jid


@attrs.frozen
class QueuePage:
    """One page of a queue, from its head (the next job to run first)."""

    queue: str
    total: int
    page: int
    per_page: int
    jobs: tuple[QueuedJob, ...]


@attrs.frozen
class SetPage:
    """One page of a scheduled, retry or dead set, earliest first.

    `total` is the size of the whole set; with a search, `entries` holds only the
    matches within this page's window.
    """

    kind: str
    total: int
    page: int
    per_page: int
    entries: tuple[SortedEntry, ...]


@attrs.frozen
class HistoryPoint:
    """Jobs processed and failed in one bucket (a UTC day "YYYY-MM-DD" or minute
    "YYYY-MM-DDTHH:MM")."""

    bucket: str
    processed: int
    failed: int


@attrs.frozen
class StatsView:
    """The dashboard's header: totals, today's counts and the current sizes.

    `processed` counts every finished run of a job (failed ones too), as Sidekiq does;
    `busy` is the number of jobs running on live workers.
    """

    processed: int
    failed: int
    processed_today: int
    failed_today: int
    enqueued: int
    scheduled: int
    retries: int
    dead: int
    busy: int
    workers: int
    queues: int


@attrs.frozen
class WorkerView:
    """A registered worker process, from its last heartbeat."""

    worker_id: str
    alive: bool
    expires_at: float
    instance: str
    incarnation: str
    host: str
    pid: int | None
    started_at: float | None
    concurrency: int
    queues: tuple[str, ...]
    busy: int
    signal: str | None
    """The last signal sent to it ("quiet" or "stop") and not yet cleared."""
    jobs_per_call: int = 1
    """Jobs each of its threads takes per backend call (`Worker(jobs_per_call=...)`; 1
    for a worker whose heartbeat does not say)."""


@attrs.frozen
class BusyJob:
    """A job running now: where, since when (from its worker's last heartbeat)."""

    worker_id: str
    jid: str
    name: str
    queue: str
    run_id: str | None
    since: float


@attrs.frozen
class LimitView:
    """A limit key in use (`AdminStore.limits`): its limit and what holds it now.

    Attributes:
        key: the resolved key ("customer:42").
        kind: "concurrency" or "rate".
        max: a concurrency limit's most jobs at once, or a rate limit's starts per window
            (as the job that took the key's first slot, or started its window, declared it).
        per_s: a rate limit's window in seconds; None for a concurrency limit.
        running: jobs holding one of the key's slots (concurrency; 0 for a rate limit).
        parked: jobs parked until a slot frees (concurrency; 0 for a rate limit, whose
            over-limit jobs wait in the scheduled set).
        started: jobs started in the last `per_s` seconds (rate; 0 for concurrency).
    """

    key: str
    kind: str
    max: int
    per_s: float | None
    running: int = 0
    parked: int = 0
    started: int = 0


class AdminStore(Protocol):
    """What the admin API needs from a backend beyond the runtime's ports.

    Every method is one atomic step; paging is a window over one list or sorted set.
    The counters are read through `SettlePort.stats` (names from `stat_name`).
    """

    def queue_page(self, queue: str, start: int, count: int) -> list[str]:
        """Up to `count` raw jobs of `queue` from position `start` (0 is the head)."""
        ...

    def queue_latency_s(self, queue: str, now: float) -> float:
        """The age of the job at the head of `queue` (see `latency_s`); 0 when empty."""
        ...

    def delete_queued(self, queue: str, raw: str) -> bool:
        """Remove one job, by its exact text, from `queue`; False if it is not there."""
        ...

    def clear_queue(self, queue: str) -> int:
        """Remove every job of `queue`; return how many there were."""
        ...

    def set_size(self, kind: str) -> int:
        """The number of entries in set `kind` (scheduled, retry or dead)."""
        ...

    def set_page(self, kind: str, start: int, count: int) -> list[SortedEntry]:
        """Up to `count` entries of set `kind` from rank `start`, earliest first."""
        ...

    def set_find(self, kind: str, key: str) -> SortedEntry | None:
        """The entry of set `kind` under `key` (usually the jid), if any."""
        ...

    def set_retry_now(self, kind: str, key: str, now: float) -> bool:
        """Push a scheduled or retry entry to its queue now (enqueued_at = now), removing
        it from its set, atomically; False if it is absent."""
        ...

    def set_kill(self, key: str, now: float) -> bool:
        """Move a retry entry to the dead set (at `now`, trimmed as usual), atomically;
        False if it is absent."""
        ...

    def signal_worker(self, worker_id: str, signal: str) -> bool:
        """Store `signal` ("quiet" or "stop") in a registered worker's info for it to pick
        up; "quiet" never replaces a stored "stop". False if the worker is unknown."""
        ...

    def server_info(self) -> dict[str, str]:
        """What the dashboard shows about the store: for Redis its version, memory used
        and connected clients; for memory, that it is the embedded backend."""
        ...

    def worker_signal(self, worker_id: str) -> str | None:
        """The signal stored for a worker, if any (what the worker polls)."""
        ...

    def limits(self, now: float) -> list[LimitView]:
        """Every limit key in use, by key, read from the index of keys in use (never a
        scan). A key leaves the index once nothing holds it: a concurrency key when its
        last slot frees with nothing parked, a rate key here once no start is left in its
        window (dropped as it is read, atomically)."""
        ...

    def parked_page(self, key: str, start: int, count: int) -> list[str]:
        """Up to `count` raw jobs parked under limit key `key`, from position `start`
        (0 is the next to be released)."""
        ...


def stat_name(kind: str, bucket: str | None = None) -> str:
    """A counter's name as `AdminStore.stats` takes it: "processed", or per bucket
    "failed:2026-11-29" (on Redis, the key "{namespace}:stat:<name>")."""
    return kind if bucket is None else f"{kind}:{bucket}"


def page_window(page: int, per_page: int) -> tuple[int, int]:
    """The (start, count) of 1-based `page` with `per_page` entries per page.

    Raises:
        ValueError: page < 1 or per_page < 1.
    """
    if page < 1 or per_page < 1:
        raise ValueError(f"page and per_page must be >= 1, got page={page}, per_page={per_page}")
    return (page - 1) * per_page, per_page


def latency_s(raw: str | None, now: float) -> float:
    """How long the job `raw` has waited at `now`: since its enqueued_at, else its
    created_at; 0 for no job, a text that is not a payload, or a time in the future."""
    if raw is None:
        return 0.0
    try:
        payload = decode(raw)
    except (PayloadError, ValueError, TypeError):
        return 0.0
    since = payload.enqueued_at if payload.enqueued_at is not None else payload.created_at
    if not since or not math.isfinite(since):
        return 0.0
    return max(0.0, now - since)


def queued_job(raw: str) -> QueuedJob:
    """A queued job's view: its payload, or why its text is not one."""
    try:
        return QueuedJob(raw, decode(raw))
    except (PayloadError, ValueError, TypeError) as exc:
        return QueuedJob(raw, None, str(exc))


def matches(payload: Payload | None, key: str, search: str | None) -> bool:
    """Whether an entry matches a search: its key, jid or job name contains the text
    (case-insensitive); every entry matches no search."""
    if not search:
        return True
    needle = search.lower()
    fields = [key] if payload is None else [key, payload.jid, payload.name]
    return any(needle in field.lower() for field in fields)


def day_buckets(now: float, days: int) -> list[str]:
    """The UTC day buckets of the last `days` days, newest (today) first."""
    today = datetime.datetime.fromtimestamp(now, tz=datetime.UTC).date()
    return [(today - datetime.timedelta(days=i)).isoformat() for i in range(days)]


def minute_buckets(now: float, minutes: int) -> list[str]:
    """The UTC minute buckets of the last `minutes` minutes, newest (this minute) first."""
    moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC).replace(second=0,
                                                                         microsecond=0)
    return [(moment - datetime.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M")
            for i in range(minutes)]


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def worker_view(worker: WorkerInfo) -> WorkerView:
    """A worker's view from its registry entry (fields it never sent are empty)."""
    info = worker.info
    pid = _int(info.get("pid"))
    queues = tuple(q for q in info.get("queues", "").split(",") if q)
    return WorkerView(
        worker_id=worker.worker_id, alive=worker.alive, expires_at=worker.expires_at,
        instance=info.get("instance", worker.worker_id), incarnation=info.get("incarnation", ""),
        host=info.get("host", ""), pid=pid or None, started_at=_float(info.get("started_at")),
        concurrency=_int(info.get("concurrency")), queues=queues, busy=_int(info.get("busy")),
        signal=info.get("signal") or None, jobs_per_call=_int(info.get("jobs_per_call")) or 1)


def _check(names: Sequence[str], value: str, what: str) -> str:
    if value not in names:
        raise ValueError(f"{what} must be one of {', '.join(names)}; got {value!r}")
    return value


def check_kind(kind: str) -> str:
    """`kind` if it names a sorted set.

    Raises:
        ValueError: it does not.
    """
    return _check(SET_KINDS, kind, "set kind")


def check_signal(signal: str) -> str:
    """`signal` if it is one a worker understands.

    Raises:
        ValueError: it is not.
    """
    return _check(SIGNALS, signal, "signal")
