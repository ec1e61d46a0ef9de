"""The `sideline` command: demo, worker, web, status, batches, batch, enqueue, and the
operations commands over the admin API (`app.admin`): stats, queues, scheduled, retries,
dead, workers, runs, orphans, job, stop-job, periodic and limits.

Every reading command takes --app (or SIDELINE_APP; else Redis at SIDELINE_REDIS_URL in
--namespace) and --json. Without --json it prints a table for people (aligned columns,
times in UTC "YYYY-MM-DD HH:MM:SS", long arguments and errors cut); with it, one JSON
document (an object or a list) for scripts. Exit codes: 0 done, 1 something the user
named (a jid, a run, a batch) was not found or nothing matched, 2 a usage or
configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import attrs

from sideline import logs
from sideline.adapters.memory import MemoryBackend
from sideline.adapters.redis import RedisBackend
from sideline.core.admin import LimitView
from sideline.core.batch import Callback
from sideline.core.errors import ConfigurationError, SidelineError, UnknownJob
from sideline.core.ports import SortedEntry
from sideline.core.results import JobInfo, JobState
from sideline.core.run import RunStatus
from sideline.demo import run_demo
from sideline.runtime.admin import Admin
from sideline.runtime.app import App, import_app
from sideline.runtime.batches import BatchStatus
from sideline.runtime.config import WorkerSettings
from sideline.runtime.orphans import Orphan
from sideline.runtime.periodic import PeriodicView
from sideline.runtime.worker import Worker
from sideline.runtime.workflows import NodeInfo, RunInfo, status
from sideline.supervisor import EXIT_RECYCLE, Supervisor

__all__ = ["is_loopback", "load_app", "main"]

log = logging.getLogger("sideline.cli")


def load_app(target: str | None) -> App:
    """Import 'package.module:attribute' and return the App found there."""
    if not target or ":" not in target:
        raise ConfigurationError(
            f"--app must look like 'package.module:app' (or set SIDELINE_APP); got {target!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like celery/rq/dramatiq: apps importable from here
    return import_app(target, "--app")


def _print_run(info: RunInfo) -> None:
    """The run's status and node counts, then every node with its attempts, last start and
    end (UTC), duration and, if dead, its error; a compacted run (succeeded or cancelled)
    has no per-node states left, so its times are printed instead. Dead nodes are listed
    with the error each died of."""
    print(f"run {info.run_id}: {info.status}  {info.counts()}")
    if info.compacted:
        finished = ("" if info.finished_at is None else
                    f"  finished {_when(info.finished_at)} "
                    f"({info.finished_at - info.created_at:.2f} s)")
        print(f"  created {_when(info.created_at)}{finished}  "
              "(compacted: per-node states are gone)")
    for node in info.nodes:
        call = f"{node.job}({', '.join(json.dumps(a) for a in node.args)})"
        print(f"  node {node.id:>3}  {node.status:<10} {call:<36} queue={node.queue} "
              f"-> {list(node.successors)}{_node_detail(node)}")
    for dead in info.failed:
        error = ": ".join(part for part in (dead.error_class, dead.error_message) if part)
        print(f"  failed node {dead.node_id:>3}  {dead.job}  {error or 'error unknown'}")


def _node_detail(node: NodeInfo) -> str:
    """A node's attempts, times and error, as the tail of its status line."""
    parts = [f"attempts={node.attempts}"]
    if node.started_at is not None:
        parts.append(f"started={_when(node.started_at)}")
    if node.ended_at is not None:
        parts.append(f"ended={_when(node.ended_at)}")
    if node.duration_s is not None:
        parts.append(f"({node.duration_s:.2f} s)")
    error = ": ".join(part for part in (node.error_class, node.error_message) if part)
    if error:
        parts.append(f"error={error}")
    return "  " + "  ".join(parts)


def _node_json(node: NodeInfo) -> dict[str, object]:
    return {"status": str(node.status), "started_at": node.started_at,
            "ended_at": node.ended_at, "duration_s": node.duration_s,
            "attempts": node.attempts, "error_class": node.error_class,
            "error_message": node.error_message}


def _when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


def _demo(args: argparse.Namespace) -> int:
    failed = False
    for label, info, problems in run_demo(concurrency=args.concurrency):
        print(label)
        _print_run(info)
        for problem in problems:
            failed = True
            print(f"  VIOLATION: {problem}")
    print("order respected in every run" if not failed else "ORDER VIOLATED")
    return 1 if failed else 0


def _supervise(settings: WorkerSettings, app: App) -> int:
    """`-p N` with N > 1: run N worker processes under a supervisor."""
    if isinstance(app.backend, MemoryBackend):
        raise ConfigurationError(
            f"{settings.app} uses the in-memory backend, which lives inside one process: "
            f"--processes {settings.processes} needs a RedisBackend (or run one process)")
    app.backend.close()  # the supervisor runs no jobs; each child connects on its own
    child_args = ["--app", str(settings.app), "-c", str(settings.concurrency),
                  "--prefetch", str(settings.prefetch),
                  "--jobs-per-call", str(settings.jobs_per_call), "-q", settings.queues_text(),
                  "-t", f"{settings.shutdown_timeout_s:g}",
                  "--max-jobs-per-child", str(settings.max_jobs_per_child),
                  "--async-concurrency", str(settings.async_concurrency)]
    base = settings.instance_id or f"{socket.gethostname()}:{os.getpid()}"
    return Supervisor(settings.processes, child_args, base,
                      settings.shutdown_timeout_s).run()


def _worker(args: argparse.Namespace) -> int:
    settings = WorkerSettings.resolve(vars(args))
    app = load_app(settings.app)
    if settings.processes > 1:
        return _supervise(settings, app)
    if isinstance(app.backend, MemoryBackend):
        log.warning("%s uses the in-memory backend: this worker sees only jobs pushed inside "
                    "its own process; give the App a RedisBackend to share work", settings.app)
    worker = Worker(app, concurrency=settings.concurrency, prefetch=settings.prefetch,
                    jobs_per_call=settings.jobs_per_call, queues=settings.queues,
                    instance_id=settings.instance_id,
                    fetch_timeout_s=settings.fetch_timeout_s,
                    poll_interval_s=settings.poll_interval_s,
                    shutdown_timeout_s=settings.shutdown_timeout_s,
                    heartbeat_interval_s=settings.heartbeat_interval_s,
                    heartbeat_ttl_s=settings.heartbeat_ttl_s,
                    recovery_interval_s=settings.recovery_interval_s,
                    max_jobs=settings.max_jobs_per_child,
                    async_concurrency=settings.async_concurrency)
    done = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping (waiting up to %.0f s for running jobs)",
                 signal.Signals(signum).name, settings.shutdown_timeout_s)
        done.set()

    def quiet(_signum: int, _frame: FrameType | None) -> None:
        log.info("TSTP: quiet, no new jobs will be fetched")
        worker.quiet()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTSTP, quiet)
    worker.start()
    print(f"sideline worker {worker.worker_id} ready", flush=True)
    code = 0
    while not done.wait(0.2):
        if worker.stop_requested.is_set():  # `app.admin.stop(worker_id)`, from anywhere
            log.info("stop requested through the admin API: stopping")
            break
        if settings.max_jobs_per_child and worker.processed >= settings.max_jobs_per_child:
            log.info("ran %d jobs (max-jobs-per-child %d): stopping to be recycled",
                     worker.processed, settings.max_jobs_per_child)
            code = EXIT_RECYCLE
            break
    worker.stop()
    app.backend.close()
    return code


def _reading_app(args: argparse.Namespace) -> App:
    """The app a reading command uses: --app (or SIDELINE_APP), else Redis at
    SIDELINE_REDIS_URL in --namespace."""
    target = args.app or WorkerSettings.resolve({}).app
    return load_app(target) if target else App(RedisBackend.from_url(namespace=args.namespace))


def _status(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        info = status(app, args.run_id)
    finally:
        app.backend.close()
    if args.json:
        # A compacted run has no per-node states ("nodes" is empty, "node_details"
        # absent): "counts" still holds.
        data = {"run_id": info.run_id, "status": str(info.status),
                "nodes": {str(n.id): str(n.status) for n in info.nodes},
                "compacted": info.compacted, "counts": info.counts(),
                "failed": [attrs.asdict(dead) for dead in info.failed]}
        if not info.compacted:
            data["node_details"] = {str(n.id): _node_json(n) for n in info.nodes}
        print(json.dumps(data))
    else:
        _print_run(info)
    return 0


_BATCH_COLUMNS = (f"{'bid':<24}  {'description':<24} {'total':>6} {'pending':>7} "
                  f"{'failures':>8} {'dead':>5}  {'complete':<8} {'success':<7}  created")


_EVENT_ORDER = {str(event): i for i, event in enumerate(Callback)}  # complete, success, death


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _batch_json(batch: BatchStatus) -> dict[str, object]:
    """Every field of a BatchStatus; `failed` maps each jid to its error class and message."""
    data = attrs.asdict(batch)
    data["failed"] = {jid: {"error_class": error_class, "error_message": message}
                      for jid, (error_class, message) in batch.failed.items()}
    return data


def _batches(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        found = app.admin.batches(args.page, args.per_page)
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps([_batch_json(batch) for batch in found]))
        return 0
    print(_BATCH_COLUMNS)
    for batch in found:
        description = batch.description if len(batch.description) <= 24 else \
            batch.description[:21] + "..."
        print(f"{batch.bid:<24}  {description:<24} {batch.total:>6} {batch.pending:>7} "
              f"{batch.failures:>8} {len(batch.dead):>5}  {_yes(batch.complete):<8} "
              f"{_yes(batch.success):<7}  {_when(batch.created_at)}")
    if not found:
        print(f"(no batches on page {args.page})")
    return 0


def _print_batch(batch: BatchStatus) -> None:
    """Every field of a batch's status: counts, times, family, callbacks, failed and dead
    jobs."""
    state = ("success" if batch.success else "complete" if batch.complete else "pending")
    print(f"batch {batch.bid}: {state}  {json.dumps(batch.description)}")
    print(f"  total={batch.total}  pending={batch.pending}  failures={batch.failures}  "
          f"dead={len(batch.dead)}  complete={_yes(batch.complete)}  "
          f"success={_yes(batch.success)}  invalidated={_yes(batch.invalidated)}")
    times = [f"created={_when(batch.created_at)}"]
    for label, at in (("complete_at", batch.complete_at), ("success_at", batch.success_at),
                      ("death_at", batch.death_at)):
        if at is not None:
            times.append(f"{label}={_when(at)}")
    times.append(f"expires={_when(batch.expires_at)}")
    print("  " + "  ".join(times))
    print(f"  parent={batch.parent or '-'}  children={list(batch.children)}")
    if batch.run_id is not None:
        print(f"  workflow step: run {batch.run_id} node {batch.node_id}")
    for event, job in sorted(batch.callbacks.items(), key=lambda item: _EVENT_ORDER.get(item[0], 3)):
        print(f"  callback {event:<8} {job}  options={json.dumps(batch.options.get(event, {}))}")
    for jid, (error_class, message) in batch.failed.items():  # a dead job failed too
        error = ": ".join(part for part in (error_class, message) if part)
        print(f"  {'dead' if jid in batch.dead else 'failed'} job {jid}  "
              f"{error or 'error unknown'}")
    for jid in batch.dead:
        if jid not in batch.failed:
            print(f"  dead job {jid}")


def _batch(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        found = app.admin.batch(args.bid)
    finally:
        app.backend.close()
    if found is None:
        print(f"sideline: error: batch {args.bid!r} is unknown: it expired or never existed",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_batch_json(found)))
    else:
        _print_batch(found)
    return 0


# -- operations: stats, queues, the scheduled/retry/dead sets, workers, runs, orphans -----

_CELL_ARGS = 40
"""Table cells cut to this many characters: arguments..."""
_CELL_ERROR = 60
"""... errors ..."""
_CELL_NAME = 32
"""... and job names, queues and instances. Ids (jid, worker, run) are never cut: they are
what the actions take."""
_FLAT = str.maketrans("\r\n\t", "   ")


def _utc(epoch_s: float | None) -> str:
    """A time in a table: UTC "YYYY-MM-DD HH:MM:SS" ("-" for none)."""
    if epoch_s is None:
        return "-"
    try:
        return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return "?"


def _cut(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters ("..." marks the cut)."""
    flat = text.translate(_FLAT)
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def _duration(seconds: float) -> str:
    """A span for people: "12.5 s", "4m 05s", "3h 02m", "2d 07h"."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def _error_text(error_class: str | None, message: str | None) -> str:
    return ": ".join(part for part in (error_class, message) if part) or "-"


def _call_text(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """A job's arguments as JSON (its keyword arguments after them, if any), cut."""
    text = json.dumps(list(args), ensure_ascii=False)
    if kwargs:
        text += " " + json.dumps(dict(kwargs), ensure_ascii=False)
    return _cut(text, _CELL_ARGS)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 right: Collection[int] = ()) -> None:
    """Columns as wide as their widest cell, two spaces apart; the columns in `right`
    (numbers) aligned right; no trailing blanks."""
    widths = [max([len(title), *(len(row[i]) for row in rows)])
              for i, title in enumerate(header)]
    for row in (header, *rows):
        cells = [cell.rjust(width) if i in right else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())


_STAT_LABELS = (("processed", "processed"), ("failed", "failed"),
                ("processed_today", "processed today"), ("failed_today", "failed today"),
                ("enqueued", "enqueued"), ("scheduled", "scheduled"), ("retries", "retries"),
                ("dead", "dead"), ("busy", "busy"), ("workers", "workers"),
                ("queues", "queues"))


def _stats(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        stats = app.admin.stats()
        history = app.admin.history(args.days) if args.days else None
    finally:
        app.backend.close()
    data: dict[str, Any] = attrs.asdict(stats)
    days = [{"day": point.bucket, "processed": point.processed, "failed": point.failed}
            for point in history or ()]
    if args.json:
        if history is not None:
            data["history"] = days
        print(json.dumps(data))
        return 0
    width = max(len(label) for _field, label in _STAT_LABELS)
    digits = max(len(str(data[field])) for field, _label in _STAT_LABELS)
    for field, label in _STAT_LABELS:
        print(f"{label:<{width}}  {data[field]:>{digits}}")
    if history is not None:
        print()
        _print_table(("day", "processed", "failed"),
                     [(point.bucket, str(point.processed), str(point.failed))
                      for point in history],
                     right=(1, 2))
    return 0


def _queues(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        found = app.admin.queues()
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps([attrs.asdict(queue) for queue in found]))
        return 0
    if not found:
        print("(no queues)")
        return 0
    _print_table(("queue", "size", "latency"),
                 [(queue.name, str(queue.size), _duration(queue.latency_s)) for queue in found],
                 right=(1, 2))
    return 0


_SET_WORDS = {"scheduled": ("due", "scheduled set"), "retry": ("retry at", "retry set"),
              "dead": ("died", "dead set")}
"""Per set kind: what an entry's time is, and the set's name."""
_VERBS = {"retry": "retried", "delete": "deleted", "kill": "killed"}
_KEY_WINDOW = 500
"""How many entries one read of --retry-all's pass over a set takes."""


def _entry_json(entry: SortedEntry) -> dict[str, Any]:
    """A set entry: its key (what --retry/--delete take), its time and its whole payload."""
    data: dict[str, Any] = {"key": entry.key, "at": entry.at}
    data.update(attrs.asdict(entry.payload))
    return data


def _entry_row(entry: SortedEntry) -> tuple[str, ...]:
    payload = entry.payload
    error = _error_text(payload.error_class, payload.error_message)
    if error == "-" and payload.dead_reason:
        error = f"({payload.dead_reason})"
    return (_utc(entry.at), _cut(payload.name, _CELL_NAME), entry.key,
            _cut(payload.queue, _CELL_NAME), str(payload.retry_count),
            _call_text(payload.args, payload.kwargs), _cut(error, _CELL_ERROR))


def _every_key(admin: Admin, kind: str, search: str | None) -> list[str]:
    """The keys of every entry of set `kind` (matching `search`), read window by window
    before anything is done to them."""
    keys: list[str] = []
    page = 1
    while True:
        found = admin.set_page(kind, page, _KEY_WINDOW, search)
        keys += [entry.key for entry in found.entries]
        if page * _KEY_WINDOW >= found.total:
            return list(dict.fromkeys(keys))
        page += 1


def _apply(admin: Admin, kind: str, action: str, keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """Do `action` to each key of set `kind` on its own; (done, not found)."""
    done: list[str] = []
    missing: list[str] = []
    for key in dict.fromkeys(keys):
        if action == "retry":
            moved = admin.retry_now(kind, [key])
        elif action == "delete":
            moved = admin.delete(kind, [key])
        else:
            moved = admin.kill([key])
        (done if moved else missing).append(key)
    return done, missing


def _report(args: argparse.Namespace, action: str, count: int, keys: Sequence[str],
            missing: Sequence[str], *, where: str) -> int:
    """Print what an action did ("retried 3", or its JSON); 1 when something named was
    not found (said on standard error)."""
    if args.json:
        print(json.dumps({"action": action, "count": count, "keys": list(keys),
                          "not_found": list(missing)}))
    else:
        print(f"{_VERBS[action]} {count}")
    if missing:
        print(f"sideline: error: not found in the {where}: {', '.join(missing)}",
              file=sys.stderr)
        return 1
    return 0


def _set_action(args: argparse.Namespace) -> tuple[str, list[str]] | None:
    """The action asked for (retry, delete or kill) and the keys it names."""
    for action in ("retry", "delete", "kill"):
        keys = getattr(args, action, None)
        if keys:
            return action, list(keys)
    return ("retry", []) if args.retry_all else None


def _set(args: argparse.Namespace) -> int:
    """`sideline scheduled|retries|dead`: a page of the set, or an action on it."""
    kind: str = args.kind
    when, where = _SET_WORDS[kind]
    app = _reading_app(args)
    try:
        asked = _set_action(args)
        if asked is not None:
            return _set_act(args, app.admin, kind, *asked)
        window = app.admin.set_page(kind, args.page, args.per_page, args.search)
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps({"kind": kind, "total": window.total, "page": window.page,
                          "per_page": window.per_page, "search": args.search,
                          "entries": [_entry_json(entry) for entry in window.entries]}))
        return 0
    if window.entries:
        _print_table((when, "job", "jid", "queue", "retries", "args", "error"),
                     [_entry_row(entry) for entry in window.entries], right=(4,))
    pages = max(1, -(-window.total // window.per_page))
    matched = (f"; {len(window.entries)} on this page match {args.search!r}"
               if args.search else "")
    print(f"(page {window.page} of {pages}, {window.total} in the {where}{matched})")
    return 0


def _set_act(args: argparse.Namespace, admin: Admin, kind: str, action: str,
             keys: list[str]) -> int:
    """--retry/--delete/--kill the named keys, or --retry-all (matching --search)."""
    where = _SET_WORDS[kind][1]
    if args.retry_all:
        keys = _every_key(admin, kind, args.search)
    done, missing = _apply(admin, kind, action, keys)
    code = _report(args, action, len(done), done, missing, where=where)
    if args.retry_all and args.search and not keys:
        print(f"sideline: error: no entry of the {where} matches {args.search!r}",
              file=sys.stderr)
        return 1
    return code


def _workers(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        found = app.admin.workers()
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps([attrs.asdict(worker) for worker in found]))
        return 0
    if not found:
        print("(no worker is registered)")
        return 0
    _print_table(
        ("worker", "state", "host", "pid", "started", "threads", "per call", "queues", "busy",
         "signal"),
        [(worker.worker_id, "alive" if worker.alive else "dead", worker.host or "-",
          str(worker.pid or "-"), _utc(worker.started_at), str(worker.concurrency),
          str(worker.jobs_per_call), _cut(",".join(worker.queues) or "-", _CELL_NAME),
          str(worker.busy), worker.signal or "-") for worker in found],
        right=(3, 5, 6, 8))
    return 0


def _run_json(info: RunInfo) -> dict[str, Any]:
    return {"run_id": info.run_id, "status": str(info.status), "created_at": info.created_at,
            "updated_at": info.updated_at, "finished_at": info.finished_at,
            "compacted": info.compacted, "counts": info.counts(),
            "failed": [attrs.asdict(dead) for dead in info.failed]}


def _runs(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        found = app.admin.runs(args.status, args.page, args.per_page)
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps([_run_json(info) for info in found]))
        return 0
    if not found:
        which = f"{args.status} runs" if args.status else "runs"
        print(f"(no {which} on page {args.page})")
        return 0
    _print_table(("run", "status", "created", "finished", "nodes"),
                 [(info.run_id, str(info.status), _utc(info.created_at), _utc(info.finished_at),
                   " ".join(f"{state}={count}" for state, count in info.counts().items()) or "-")
                  for info in found])
    return 0


def _orphan_json(orphan: Orphan, now: float) -> dict[str, Any]:
    payload = orphan.payload
    return {"jid": orphan.jid, "name": payload.name if payload else None,
            "queue": orphan.delivery.queue, "worker_id": orphan.worker_id,
            "instance": orphan.instance, "orphaned_at": orphan.orphaned_at,
            "orphaned_for_s": max(0.0, now - orphan.orphaned_at),
            "prefetched": orphan.delivery.prefetched,
            "args": payload.args if payload else None,
            "kwargs": payload.kwargs if payload else None,
            "error_class": payload.error_class if payload else None,
            "error_message": payload.error_message if payload else None,
            "unreadable": orphan.error, "raw": None if payload else orphan.delivery.raw}


def _orphan_row(orphan: Orphan, now: float) -> tuple[str, ...]:
    payload = orphan.payload
    if payload is None:
        job, error = "(unreadable)", f"unreadable: {orphan.error}"
        call = _cut(orphan.delivery.raw, _CELL_ARGS)
    else:
        job = payload.name + (" (prefetched)" if orphan.delivery.prefetched else "")
        call = _call_text(payload.args, payload.kwargs)
        error = _error_text(payload.error_class, payload.error_message)
    return (orphan.jid or "-", _cut(job, _CELL_NAME), _cut(orphan.delivery.queue, _CELL_NAME),
            _cut(orphan.instance, _CELL_NAME), _utc(orphan.orphaned_at),
            _duration(now - orphan.orphaned_at), call, _cut(error, _CELL_ERROR))


def _orphans(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        found = app.admin.orphans()
        if args.retry_all or args.retry or args.delete:
            return _orphans_act(args, app.admin, found)
        now = app.clock.now()
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps([_orphan_json(orphan, now) for orphan in found]))
        return 0
    if not found:
        print("(no job is held by a dead worker)")
        return 0
    _print_table(("jid", "job", "queue", "instance", "orphaned since", "for", "args", "error"),
                 [_orphan_row(orphan, now) for orphan in found], right=(5,))
    return 0


def _orphans_act(args: argparse.Namespace, admin: Admin, found: Sequence[Orphan]) -> int:
    """--retry-all, or --retry/--delete the orphans of the named jids (every orphan of a
    jid: a jid may be held twice)."""
    action = "delete" if args.delete else "retry"
    named = list(dict.fromkeys(args.delete or args.retry or ()))
    selected = list(found) if args.retry_all else [o for o in found if o.jid in named]
    held = {o.jid for o in selected}
    missing = [jid for jid in named if jid not in held]
    count = 0
    if selected:
        count = (admin.retry_orphans(selected) if action == "retry"
                 else admin.delete_orphans(selected))
    jids = list(dict.fromkeys(o.jid for o in selected if o.jid is not None))
    return _report(args, action, count, jids, missing, where="jobs held by dead workers")


# -- one job: its stored state, progress and result; stop it ------------------------------

_ENDED = (JobState.SUCCEEDED, JobState.FAILED)


def _job_json(info: JobInfo) -> dict[str, Any]:
    """Every field of a JobInfo; `result` is null or {state, value | error_class and
    error_message, finished_at}."""
    data: dict[str, Any] = attrs.asdict(info, recurse=False)
    data["state"] = str(info.state)
    record = info.result
    if record is not None:
        result: dict[str, Any] = {"state": str(record.state), "finished_at": record.finished_at}
        if record.state is JobState.SUCCEEDED:
            result["value"] = record.value
        else:
            result.update(error_class=record.error_class, error_message=record.error_message)
        data["result"] = result
    return data


def _job_lines(info: JobInfo) -> list[tuple[str, str]]:
    """A job's fields as (label, text) lines: nothing cut, each on one line."""
    progress = "-" if info.progress is None else f"{100 * info.progress:.0f}% ({info.progress:g})"
    lines = [("jid", info.jid), ("state", str(info.state)), ("progress", progress),
             ("message", "-" if info.message is None else info.message.translate(_FLAT)),
             ("meta", json.dumps(info.meta, ensure_ascii=False) if info.meta else "-"),
             ("worker", info.worker or "-"), ("started", _utc(info.started_at)),
             ("retry count", str(info.retry_count))]
    record = info.result
    if record is None:
        return [*lines, ("result", "-")]
    lines += [("result", str(record.state)), ("finished", _utc(record.finished_at or None))]
    if record.state is JobState.SUCCEEDED:
        return [*lines, ("value", json.dumps(record.value, ensure_ascii=False))]
    return [*lines, ("error", _error_text(record.error_class, record.error_message)
                     .translate(_FLAT))]


def _job(args: argparse.Namespace) -> int:
    app = _reading_app(args)
    try:
        info = app.admin.job(args.jid)
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps(_job_json(info)))
        return 0
    lines = _job_lines(info)
    width = max(len(label) for label, _text in lines)
    for label, text in lines:
        print(f"{label:<{width}}  {text}")
    if info == JobInfo(info.jid):
        print("(nothing is stored for this job: it is queued, scheduled or not started yet, "
              "or it stores no result and reported no progress, or what it stored expired, "
              "or there is no such job)")
    return 0


def _stop_job(args: argparse.Namespace) -> int:
    """Ask for a job to be stopped, unless its stored state says it has ended (a stop
    request is kept a day: it would stop a later job given the same jid)."""
    app = _reading_app(args)
    try:
        state = app.admin.job(args.jid).state
        requested = state not in _ENDED
        if requested:
            app.admin.stop_job(args.jid)
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps({"jid": args.jid, "state": str(state), "stop_requested": requested}))
    elif requested:
        print(f"stop requested for job {args.jid} ({state}): the worker running it stops it "
              "within about a second; if it is not running now, it is stopped if it starts "
              "within a day")
    else:
        print(f"sideline: error: job {args.jid} has already ended ({state}): nothing to stop",
              file=sys.stderr)
    return 0 if requested else 1


def _job_parsers(commands: Any) -> None:
    """`job` and `stop-job`: one job's stored state, progress and result; stop it."""
    one = commands.add_parser("job", help="one job's state, progress, message, meta and "
                              "result (what is stored about it)")
    one.add_argument("jid")
    _reading_options(one)
    one.set_defaults(handler=_job)

    stop = commands.add_parser("stop-job", help="ask the worker running a job to stop it "
                               "(it goes to the dead set)")
    stop.add_argument("jid")
    _reading_options(stop)
    stop.set_defaults(handler=_stop_job)


# -- periodic entries: list them; pause, resume, run one now ------------------------------

_PERIODIC_ACTIONS = ("pause", "resume", "run")
_PERIODIC_DONE = {"pause": "paused", "resume": "resumed"}


def _periodic_row(entry: PeriodicView) -> tuple[str, ...]:
    return (entry.name, _cut(entry.job, _CELL_NAME), entry.schedule, entry.tz, entry.missed,
            "paused" if entry.paused else "active",
            "-" if entry.paused else _utc(entry.next_run), _utc(entry.last_fired_at),
            entry.last_jid or "-", _call_text(entry.args, {}))


def _periodic(args: argparse.Namespace) -> int:
    """`sideline periodic`: the stored entries, or --pause/--resume/--run one of them."""
    app = _reading_app(args)
    try:
        if any(getattr(args, action) is not None for action in _PERIODIC_ACTIONS):
            return _periodic_act(args, app.admin)
        found = app.admin.periodic()
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps([attrs.asdict(entry) for entry in found]))
        return 0
    if found:
        _print_table(("name", "job", "schedule", "tz", "missed", "state", "next run",
                      "last fired", "last jid", "args"),
                     [_periodic_row(entry) for entry in found])
    else:
        print("(no periodic entry is stored: a worker stores its app's entries when it "
              "starts)")
    stored = {entry.name for entry in found}
    unstored = sorted(name for name in app.periodic_entries if name not in stored)
    if unstored:
        print(f"(declared by the app but not stored yet: {', '.join(unstored)})")
    return 0


def _periodic_act(args: argparse.Namespace, admin: Admin) -> int:
    """--pause, --resume or --run the named entry; 1 if it is unknown (or its job was not
    pushed)."""
    action, name = next((action, getattr(args, action)) for action in _PERIODIC_ACTIONS
                        if getattr(args, action) is not None)
    jid = None
    if action == "run":
        known = any(entry.name == name for entry in admin.periodic())
        try:
            jid = admin.run_periodic(name) if known else None
        except UnknownJob as exc:
            raise ConfigurationError(f"{exc}; --run pushes the job through the app given "
                                     "with --app, which must declare it") from exc
        done = jid is not None
    else:
        known = done = (admin.pause_periodic(name) if action == "pause"
                        else admin.resume_periodic(name))
    if args.json:
        print(json.dumps({"action": action, "name": name, "done": done, "jid": jid}))
    elif action == "run" and done:
        print(f"pushed the job of periodic entry {name} now: jid {jid}")
    elif done:
        print(f"{_PERIODIC_DONE[action]} periodic entry {name}")
    if not known:
        print(f"sideline: error: no periodic entry named {name!r} is stored", file=sys.stderr)
    elif not done:
        print(f"sideline: error: the job of periodic entry {name} was not pushed: a client "
              "middleware dropped it, or an identical unique_for job is pending",
              file=sys.stderr)
    return 0 if done else 1


def _periodic_parser(commands: Any) -> None:
    """`periodic`: list the stored periodic entries; pause, resume or run one now."""
    command = commands.add_parser("periodic", help="periodic entries with their schedule, "
                                  "next and last run; pause, resume or run one now")
    actions = command.add_mutually_exclusive_group()
    actions.add_argument("--pause", metavar="NAME",
                         help="pause this entry: no tick fires until it is resumed")
    actions.add_argument("--resume", metavar="NAME",
                         help="resume this entry from now on (ticks missed while paused "
                         "do not fire)")
    actions.add_argument("--run", metavar="NAME",
                         help="push this entry's job once now, outside its schedule")
    _reading_options(command)
    command.set_defaults(handler=_periodic)


# -- limits: the fleet-wide limit keys in use ---------------------------------------------


def _limit_text(view: LimitView) -> str:
    """A key's limit for people: "2 at once" or "100 per 60 s"."""
    if view.per_s is None:
        return f"{view.max} at once"
    window = f"{view.per_s:.0f}" if view.per_s.is_integer() else f"{view.per_s:g}"
    return f"{view.max} per {window} s"


def _limit_row(view: LimitView) -> tuple[str, ...]:
    """A key's row: running and parked for a concurrency key, started for a rate key (the
    key whole, on one line: it is what names the key)."""
    rate = view.per_s is not None
    return (view.key.translate(_FLAT), view.kind, _limit_text(view),
            "-" if rate else str(view.running), "-" if rate else str(view.parked),
            str(view.started) if rate else "-")


def _limits(args: argparse.Namespace) -> int:
    """`sideline limits`: the limit keys in use with their limit and what holds them."""
    app = _reading_app(args)
    try:
        found = app.admin.limits()
    finally:
        app.backend.close()
    if args.json:
        print(json.dumps([attrs.asdict(view) for view in found]))
        return 0
    if not found:
        print("(no limit key is in use)")
        return 0
    _print_table(("key", "kind", "limit", "running", "parked", "started"),
                 [_limit_row(view) for view in found], right=(3, 4, 5))
    return 0


def _limits_parser(commands: Any) -> None:
    """`limits`: the fleet-wide limit keys in use."""
    command = commands.add_parser("limits", help="fleet-wide limit keys in use: running and "
                                  "parked jobs per concurrency key, starts in the window per "
                                  "rate key")
    _reading_options(command)
    command.set_defaults(handler=_limits)


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _load_callable(target: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute, None)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} for --auth: {exc}") from exc
    if not callable(found):
        raise ConfigurationError(f"--auth {target} is {found!r}, not a callable")
    checked: Callable[..., Any] = found
    return checked


def _web(args: argparse.Namespace) -> int:
    auth = _load_callable(args.auth) if args.auth else None
    if not is_loopback(args.host) and auth is None and not args.insecure_no_auth:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {args.host}, which other machines can reach, "
            "without --auth module:callable (a function of the request that says who may "
            "see it); use --host 127.0.0.1, or --insecure-no-auth if something in front of "
            "it (a proxy, a VPN) already decides who gets in")
    try:
        import uvicorn  # noqa: PLC0415 (the web extra is optional)

        from sideline.web import create_app  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs the web extra: pip install 'sideline[web]' ({exc})") from exc
    app = _reading_app(args)
    asgi = create_app(app, auth=auth, read_only=args.read_only,
                      refresh_s=args.refresh_s, orphan_refresh_s=args.orphan_refresh_s)
    log.info("dashboard on http://%s:%d%s", args.host, args.port,
             " (read-only)" if args.read_only else "")
    uvicorn.run(asgi, host=args.host, port=args.port, log_level="warning")
    return 0


def _enqueue(args: argparse.Namespace) -> int:
    app = load_app(args.app or WorkerSettings.resolve({}).app)
    try:
        job_args = json.loads(args.args)
    except ValueError as exc:
        raise ConfigurationError(f"ARGS must be a JSON list: {exc}") from exc
    if not isinstance(job_args, list):
        raise ConfigurationError(f"ARGS must be a JSON list, got {type(job_args).__name__}")
    jid = app.enqueue(args.name, job_args, queue=args.queue)
    print(jid)
    return 0


def _worker_parser(worker: argparse.ArgumentParser) -> None:
    worker.add_argument("--app", help="package.module:app (SIDELINE_APP)")
    worker.add_argument("-c", "--concurrency", type=int, help="threads (SIDELINE_CONCURRENCY)")
    worker.add_argument("--prefetch", type=int,
                        help="jobs fetched ahead of the threads, at most (SIDELINE_PREFETCH, 0)")
    worker.add_argument("--jobs-per-call", dest="jobs_per_call", type=int,
                        help="waiting jobs a thread takes per call, their plain acks written "
                        "together: for short jobs (SIDELINE_JOBS_PER_CALL, default 1)")
    worker.add_argument("-q", "--queues",
                        help="'a,b' strict order or 'a:3,b:1' weights (SIDELINE_QUEUES)")
    worker.add_argument("-t", "--timeout", dest="shutdown_timeout_s", type=float,
                        help="seconds to wait for running jobs on shutdown (SIDELINE_TIMEOUT)")
    worker.add_argument("-i", "--instance-id", dest="instance_id",
                        help="this worker's id (SIDELINE_INSTANCE_ID); with -p, the prefix "
                        "of its processes' ids")
    worker.add_argument("-p", "--processes", type=int,
                        help="worker processes under one supervisor, each running -c threads "
                        "(SIDELINE_PROCESSES, default 1)")
    worker.add_argument("--max-jobs-per-child", dest="max_jobs_per_child", type=int,
                        help="a worker process is replaced after this many jobs "
                        "(SIDELINE_MAX_JOBS_PER_CHILD, default 0: never)")
    worker.add_argument("--async-concurrency", dest="async_concurrency", type=int,
                        help="async jobs run at once on the process's event loop "
                        "(SIDELINE_ASYNC_CONCURRENCY, default 100)")
    worker.add_argument("--log-format", dest="log_format", choices=logs.FORMATS,
                        help="text lines, or json: one object a line (SIDELINE_LOG_FORMAT, "
                        "default text)")
    worker.set_defaults(handler=_worker)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sideline", description="sideline background jobs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING... (SIDELINE_LOG_LEVEL; "
                        "default INFO, WARNING for demo)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the proof workflows on an embedded worker")
    demo.add_argument("-c", "--concurrency", type=int, default=4, help="worker threads")
    demo.set_defaults(handler=_demo)

    _worker_parser(commands.add_parser("worker", help="run a worker process"))

    web = commands.add_parser("web", help="serve the web dashboard")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                     "127.0.0.1; any other needs --auth or --insecure-no-auth)")
    web.add_argument("--port", type=_positive, default=7400, help="port (default 7400)")
    web.add_argument("--auth", help="package.module:callable deciding, per request, who may "
                     "see the dashboard")
    web.add_argument("--insecure-no-auth", dest="insecure_no_auth", action="store_true",
                     help="serve on a non-loopback address without --auth")
    web.add_argument("--read-only", dest="read_only", action="store_true",
                     help="hide every action (retry, delete, kill, quiet, stop, cancel)")
    web.add_argument("--refresh", dest="refresh_s", type=float, default=5.0,
                     help="seconds between live updates (default 5)")
    web.add_argument("--orphan-refresh", dest="orphan_refresh_s", type=float, default=30.0,
                     help="seconds between updates of the orphaned-jobs page (default 30)")
    web.add_argument("--app", help="package.module:app (SIDELINE_APP); default: Redis at "
                     "SIDELINE_REDIS_URL")
    web.add_argument("--namespace", default="sideline",
                     help="Redis key namespace when no app is given")
    web.set_defaults(handler=_web)

    show = commands.add_parser("status", help="show a workflow run's node states")
    show.add_argument("run_id")
    show.add_argument("--app", help="package.module:app (SIDELINE_APP); default: Redis at "
                      "SIDELINE_REDIS_URL")
    show.add_argument("--namespace", default="sideline",
                      help="Redis key namespace when no app is given")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_status)

    listing = commands.add_parser("batches", help="list the newest batches")
    listing.add_argument("--page", type=_positive, default=1, help="1-based page (default 1)")
    listing.add_argument("--per-page", dest="per_page", type=_positive, default=50,
                         help="batches per page (default 50)")
    _reading_options(listing)
    listing.set_defaults(handler=_batches)

    one = commands.add_parser("batch", help="show one batch: counts, callbacks, failed jobs")
    one.add_argument("bid")
    _reading_options(one)
    one.set_defaults(handler=_batch)

    _ops_parsers(commands)
    _job_parsers(commands)
    _periodic_parser(commands)
    _limits_parser(commands)

    push = commands.add_parser("enqueue", help="push a job by name")
    push.add_argument("name")
    push.add_argument("args", nargs="?", default="[]", help="JSON list of arguments")
    push.add_argument("--app", help="package.module:app (SIDELINE_APP)")
    push.add_argument("--queue", help="override the job's queue")
    push.set_defaults(handler=_enqueue)
    return parser


def _paging(command: argparse.ArgumentParser, what: str, per_page: int = 25) -> None:
    command.add_argument("--page", type=_positive, default=1, help="1-based page (default 1)")
    command.add_argument("--per-page", dest="per_page", type=_positive, default=per_page,
                         help=f"{what} per page (default {per_page})")


def _set_parser(commands: Any, name: str, kind: str, help_text: str, *,
                kill: bool = False) -> None:
    """`scheduled`, `retries` or `dead`: a page of the set, or one action on it."""
    command = commands.add_parser(name, help=help_text)
    _paging(command, "entries")
    command.add_argument("--search", metavar="TEXT",
                         help="only entries whose jid, key or job name contains TEXT "
                         "(within the page; with --retry-all, within the whole set)")
    actions = command.add_mutually_exclusive_group()
    actions.add_argument("--retry", action="append", metavar="JID",
                         help="push this entry to its queue now (repeatable)")
    actions.add_argument("--delete", action="append", metavar="JID",
                         help="delete this entry for good (repeatable)")
    if kill:
        actions.add_argument("--kill", action="append", metavar="JID",
                             help="move this entry to the dead set now (repeatable)")
    actions.add_argument("--retry-all", dest="retry_all", action="store_true",
                         help="push every entry (matching --search) to its queue now")
    _reading_options(command)
    command.set_defaults(handler=_set, kind=kind, kill=None)


def _ops_parsers(commands: Any) -> None:
    """The operations commands over the admin API."""
    stats = commands.add_parser("stats", help="totals, today's counts, sizes, workers")
    stats.add_argument("--days", type=_positive, metavar="N",
                       help="add processed and failed per UTC day for the last N days")
    _reading_options(stats)
    stats.set_defaults(handler=_stats)

    queues = commands.add_parser("queues", help="every queue with its size and latency")
    _reading_options(queues)
    queues.set_defaults(handler=_queues)

    _set_parser(commands, "scheduled", "scheduled", "list scheduled jobs, or enqueue/delete them")
    _set_parser(commands, "retries", "retry", "list jobs waiting to be retried, or retry, "
                "delete or kill them", kill=True)
    _set_parser(commands, "dead", "dead", "list dead jobs, or retry/delete them")

    workers = commands.add_parser("workers", help="registered workers, alive or dead")
    _reading_options(workers)
    workers.set_defaults(handler=_workers)

    runs = commands.add_parser("runs", help="the newest workflow runs")
    runs.add_argument("--status", choices=[str(state) for state in RunStatus],
                      help="only runs in this status")
    _paging(runs, "runs")
    _reading_options(runs)
    runs.set_defaults(handler=_runs)

    orphans = commands.add_parser("orphans", help="jobs held by dead workers; retry or "
                                  "delete them")
    actions = orphans.add_mutually_exclusive_group()
    actions.add_argument("--retry-all", dest="retry_all", action="store_true",
                         help="move every orphan back to the head of its queue")
    actions.add_argument("--retry", action="append", metavar="JID",
                         help="move this job back to its queue (repeatable)")
    actions.add_argument("--delete", action="append", metavar="JID",
                         help="drop this job for good (repeatable)")
    _reading_options(orphans)
    orphans.set_defaults(handler=_orphans)


def _positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _reading_options(command: argparse.ArgumentParser) -> None:
    """--app, --namespace and --json, as `status` has them."""
    command.add_argument("--app", help="package.module:app (SIDELINE_APP); default: Redis at "
                         "SIDELINE_REDIS_URL")
    command.add_argument("--namespace", default="sideline",
                         help="Redis key namespace when no app is given")
    command.add_argument("--json", action="store_true", help="print JSON")


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr at `level` in `log_format`: "text" lines or "json" (one object a
    line, sideline.logs.JsonFormatter). Like `logging.basicConfig`, it does nothing when
    the root logger has handlers already (the embedding program configured logging).

    Raises:
        ConfigurationError: `log_format` is not one of sideline.logs.FORMATS.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logs.formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sideline` console script."""
    args = _parser().parse_args(argv)
    level = args.log_level or os.environ.get("SIDELINE_LOG_LEVEL") or (
        "WARNING" if args.command == "demo" else "INFO")
    log_format = getattr(args, "log_format", None) or os.environ.get("SIDELINE_LOG_FORMAT")
    try:
        configure_logging("DEBUG" if args.verbose else level, log_format or "text")
        code: int = args.handler(args)
    except SidelineError as exc:
        print(f"sideline: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
