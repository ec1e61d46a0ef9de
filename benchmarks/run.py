#!/usr/bin/env python
"""sideline benchmarks: worker throughput, workflow fan-in and chain latency, enqueue rates,
the size of a run's stored state, and how soon a SIGKILLed worker's job runs again.

    python benchmarks/run.py --backend redis [--json] [--quick] [--jobs N] [--skip-recovery]
    python benchmarks/run.py --backend memory [--json] [--quick]

Redis: the server is SIDELINE_REDIS_URL (default redis://127.0.0.1:6379/0). Every key lives
in fresh namespaces "bench-<random>-..." that are deleted at the end, and the jobs run on ONE
`sideline worker` subprocess with 8 threads (its app is benchmarks/apps.py). Memory: the
worker is embedded in this process, since a MemoryBackend cannot be shared across processes.

Times come from inside the process that runs the jobs (see benchmarks/common.py), so worker
start-up and import time never count:

- noop_throughput: N no-op jobs pushed in bulk before the worker starts; from the start of
  the first fetch that returned a job to the end of the N-th ack.
- fanin: Workflow(Chain(Group(width no-ops), one no-op)); from just before Workflow.run()
  to the moment the final step's complete_node finished the run.
- chain: a Chain of `length` no-ops, measured the same way.
- enqueue / enqueue_bulk: client-side enqueue() calls in a loop / one enqueue_bulk() call.
- payload_bytes: the stored state of a `length`-step chain (MEMORY USAGE of the run's keys)
  and the stored payload of node 0 against node length-1: sizes that differ only by the
  digits of the node id show a job's payload stays O(1) whatever the workflow's size.
  On Redis it also reports the bytes a run keeps (MEMORY USAGE of every key of the run
  that remains, its memory hash included) for a 10-step and a 1,000-step chain driven
  through the backend by hand: just before its last step completes (running, whole
  state) and once it finished (compacted to its summary): finished_run_bytes.
- recovery (Redis only): two more worker processes, "victim" and "survivor". The victim
  runs a job that blocks; right after the victim's next heartbeat (the worst case: its
  registry entry then lives a whole TTL) it is SIGKILLed. From the SIGKILL (this process's
  clock) to the job starting again on the survivor (the survivor's clock; same machine).
  Default heartbeat settings (every 5 s, TTL 15 s, recovery passes every 5 s: target
  < TTL + 2 s); --quick uses 0.5 s / 1.5 s / 0.5 s. --skip-recovery leaves it out.

With --json every result is one JSON object per line on stdout (progress goes to stderr);
without it, a table. Targets from the issue are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from sideline import App, BackendError, Chain, Group, Worker, Workflow
from sideline.adapters.redis import redis_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/run.py` puts benchmarks/, not the root, first
    sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    BLOCK,
    ENV_BACKEND,
    ENV_EXPECT_ACKS,
    ENV_MAX_CONNECTIONS,
    ENV_NAMESPACE,
    ENV_QUIET_LOGS,
    NOOP,
    TimedMemoryBackend,
    TimedRedisBackend,
    build_app,
    noop_job,
    timed_redis_backend,
)

TARGET_JOBS_PER_S = 5_000
TARGET_FANIN_S = 0.3
TARGET_CHAIN_MS = 0.4
"""Per hop of a chain; with TARGET_FANIN_S, the targets of "One settlement decision"."""
SCALING_LENGTHS = (100, 1_000, 5_000)
"""Chain lengths of --scaling ("per-hop time flat from 100 to 5,000 steps")."""
WORKER_STOP_TIMEOUT_S = 30.0

Result = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark is."""

    jobs: int
    enqueue_jobs: int
    width: int
    length: int


FULL = Sizes(jobs=20_000, enqueue_jobs=5_000, width=1_000, length=1_000)
QUICK = Sizes(jobs=500, enqueue_jobs=200, width=100, length=100)


@dataclass(frozen=True)
class Heartbeats:
    """The worker settings the recovery benchmark runs with."""

    interval_s: float
    ttl_s: float
    recovery_interval_s: float

    def env(self) -> dict[str, str]:
        return {"SIDELINE_HEARTBEAT_INTERVAL_S": str(self.interval_s),
                "SIDELINE_HEARTBEAT_TTL_S": str(self.ttl_s),
                "SIDELINE_RECOVERY_INTERVAL_S": str(self.recovery_interval_s)}

    @property
    def target_s(self) -> float:
        return self.ttl_s + 2.0


DEFAULT_HEARTBEATS = Heartbeats(interval_s=5.0, ttl_s=15.0, recovery_interval_s=5.0)
QUICK_HEARTBEATS = Heartbeats(interval_s=0.5, ttl_s=1.5, recovery_interval_s=0.5)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- workers -----------------------------------------------------------------------------


class WorkerHandle(Protocol):
    def check(self) -> None:
        """Raise if the worker died."""

    def stop(self) -> None:
        """Stop the worker (idempotent)."""


class SubprocessWorker:
    """One `sideline worker` process on the benchmark's namespace."""

    def __init__(self, namespace: str, *, expect_acks: int, concurrency: int,
                 quiet_logs: bool, instance_id: str | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ)
        env.update(extra_env or {})
        env.update({
            ENV_BACKEND: "redis",
            ENV_NAMESPACE: namespace,
            ENV_EXPECT_ACKS: str(expect_acks),
            ENV_MAX_CONNECTIONS: str(concurrency + 8),
            ENV_QUIET_LOGS: "1" if quiet_logs else "0",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        })
        # The worker's log goes to a file, never to a pipe that nobody reads (a full pipe
        # would stall the worker; with DEBUG on it writes a line per job).
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        identity = ["-i", instance_id] if instance_id else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sideline.cli", "worker", "--app", "benchmarks.apps:app",
             "-c", str(concurrency), *identity],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def log_tail(self, limit: int = 4_000) -> str:
        self.log.seek(0, os.SEEK_END)
        size = self.log.tell()
        self.log.seek(max(0, size - limit))
        return self.log.read().decode("utf-8", "replace")

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"the worker process exited with {code}:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class EmbeddedWorker:
    """A Worker in this process (the memory backend)."""

    def __init__(self, app: App, concurrency: int) -> None:
        self.worker: Worker | None = Worker(app, concurrency=concurrency).start()

    def check(self) -> None:
        """An embedded worker cannot die on its own."""

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout_s=WORKER_STOP_TIMEOUT_S)
            self.worker = None


# -- the benchmarks ----------------------------------------------------------------------


def bench_enqueue(app: App, jobs: int, backend: str) -> Result:
    """`jobs` single enqueue() calls in a loop."""
    started = time.perf_counter()
    for _ in range(jobs):
        app.enqueue(NOOP)
    seconds = time.perf_counter() - started
    return {"name": "enqueue", "backend": backend, "jobs": jobs, "seconds": _s(seconds),
            "jobs_per_s": _rate(jobs, seconds)}


def bench_enqueue_bulk(app: App, jobs: int, backend: str) -> Result:
    """One enqueue_bulk() call of `jobs` jobs."""
    started = time.perf_counter()
    pushed = app.enqueue_bulk(NOOP, ([] for _ in range(jobs)))
    seconds = time.perf_counter() - started
    if len(pushed) != jobs:
        raise RuntimeError(f"enqueue_bulk pushed {len(pushed)} of {jobs} jobs")
    return {"name": "enqueue_bulk", "backend": backend, "jobs": jobs, "seconds": _s(seconds),
            "jobs_per_s": _rate(jobs, seconds)}


@dataclass(frozen=True)
class Running:
    """A running worker and the client-side app of its namespace."""

    app: App
    worker: WorkerHandle
    backend: str
    concurrency: int
    timeout_s: float

    def wait_message(self, channel: str, timeout_s: float | None = None) -> Result:
        timed: Any = self.app.backend
        message: Result = timed.wait_message(
            channel, self.timeout_s if timeout_s is None else timeout_s, self.worker.check)
        return message


def bench_throughput(running: Running, jobs: int) -> Result:
    """Wait for the worker's throughput window over the `jobs` pre-pushed no-ops."""
    window = running.wait_message("throughput")
    seconds = window["last_ack"] - window["first_fetch"]
    return {"name": "noop_throughput", "backend": running.backend, "jobs": jobs,
            "concurrency": running.concurrency, "seconds": _s(seconds),
            "jobs_per_s": _rate(jobs, seconds), "target_jobs_per_s": TARGET_JOBS_PER_S}


def run_workflow(running: Running, workflow: Workflow) -> tuple[float, float, float]:
    """Run `workflow` on the worker; (seconds to finished, seconds in run(), seconds until
    this process heard of the end)."""
    started = time.time()
    run_id = workflow.run()
    returned = time.time()
    deadline = time.monotonic() + running.timeout_s
    while True:
        message = running.wait_message("run", max(0.01, deadline - time.monotonic()))
        if message["run_id"] == run_id:
            break
    heard = time.time()
    if message["status"] != "succeeded":
        raise RuntimeError(f"run {run_id} finished {message['status']}, not succeeded")
    return message["finished_at"] - started, returned - started, heard - started


def bench_fanin(running: Running, width: int) -> Result:
    """Chain(Group(`width` no-ops), one no-op), run() to the run's end."""
    noop = noop_job(running.app)
    workflow = Workflow(Chain(Group(*(noop.s() for _ in range(width))), noop.s()),
                        app=running.app)
    seconds, in_run, heard = run_workflow(running, workflow)
    return {"name": "fanin", "backend": running.backend, "width": width,
            "concurrency": running.concurrency,
            "seconds": _s(seconds), "run_call_s": _s(in_run), "observed_s": _s(heard),
            "target_seconds": TARGET_FANIN_S}


def bench_chain(running: Running, length: int) -> Result:
    """Chain of `length` no-ops, run() to the run's end."""
    noop = noop_job(running.app)
    workflow = Workflow(Chain(*(noop.s() for _ in range(length))), app=running.app)
    seconds, in_run, heard = run_workflow(running, workflow)
    return {"name": "chain", "backend": running.backend, "length": length,
            "concurrency": running.concurrency,
            "seconds": _s(seconds), "ms_per_step": round(seconds * 1000 / length, 3),
            "run_call_s": _s(in_run), "observed_s": _s(heard),
            "target_ms_per_step": TARGET_CHAIN_MS}


def bench_payload_bytes_redis(app: App, length: int) -> Result:
    """Store a `length`-step chain (no worker runs it) and measure its keys."""
    noop = noop_job(app)
    backend: Any = app.backend
    run_id = Workflow(Chain(*(noop.s() for _ in range(length))), app=app).run()
    keys = backend.keys.run(run_id)
    client = backend.client
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key in keys:
        pipe.hgetall(key)
    pipe.hget(keys[4], "0")
    pipe.hget(keys[4], str(length - 1))
    pipe.lindex(backend.keys.queue("default"), 0)
    replies = pipe.execute()
    usage = replies[: len(keys)]
    hashes = replies[len(keys): 2 * len(keys)]
    first, last, queued = replies[2 * len(keys):]
    data = sum(len(field.encode()) + len(value.encode())
               for fields in hashes for field, value in fields.items())
    total = sum(usage)
    return {"name": "payload_bytes", "backend": "redis", "length": length, "bytes": total,
            "bytes_per_node": round(total / length, 1), "data_bytes": data,
            "bytes_by_key": dict(zip(("run", "nodes", "remaining", "graph", "payloads"), usage,
                                     strict=True)),
            "payload_bytes_first": len(first.encode()), "payload_bytes_last": len(last.encode()),
            "queued_job_bytes": len(queued.encode())}


FINISHED_RUN_LENGTHS = (10, 1_000)


def _kept_bytes(backend: Any, run_id: str) -> int:
    """MEMORY USAGE of the run's keys that exist (its memory hash included)."""
    keys = [*backend.keys.run(run_id), backend.keys.memory(run_id)]
    pipe = backend.client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(usage or 0 for usage in pipe.execute())


def bench_finished_run_bytes_redis(app: App) -> Result:
    """Bytes a run keeps in Redis while running and once finished, per chain length.

    Each chain is driven through the backend (fetch, begin, complete) in a namespace of
    its own, so no worker is needed; "running" is measured just before the last step
    completes, "finished" right after it.
    """
    backend: Any = app.backend
    noop = noop_job(app)
    figures: dict[str, dict[str, int]] = {}
    for length in FINISHED_RUN_LENGTHS:
        run_id = Workflow(Chain(*(noop.s() for _ in range(length))), app=app).run()
        running = 0
        for step in range(length):
            delivery = backend.fetch("bench-driver", ["default"], 0)
            if delivery is None:
                raise RuntimeError(f"run {run_id}: step {step} was not released")
            node_id = json.loads(delivery.raw)["node_id"]
            now = app.clock.now()
            backend.begin_node(run_id, node_id, now)
            if step == length - 1:
                running = _kept_bytes(backend, run_id)
            backend.complete_node("bench-driver", delivery, run_id, node_id, now)
        status = app.status(run_id)
        if status.status != "succeeded":
            raise RuntimeError(f"run {run_id} ended {status.status}, not succeeded")
        figures[str(length)] = {"running": running, "finished": _kept_bytes(backend, run_id)}
    return {"finished_run_bytes": figures}


def bench_payload_bytes_memory(app: App, length: int) -> Result:
    """The memory backend keeps payload texts: measure those of a `length`-step chain."""
    noop = noop_job(app)
    run_id = Workflow(Chain(*(noop.s() for _ in range(length))), app=app).run()
    state = app.backend.get_run(run_id, app.clock.now())
    if state is None:
        raise RuntimeError(f"run {run_id} vanished")
    payloads = [p.encode() for p in state.plan.node_payloads]
    total = sum(len(p) for p in payloads)
    queued = app.backend.peek("default", 1)[0]
    return {"name": "payload_bytes", "backend": "memory", "length": length, "bytes": total,
            "bytes_per_node": round(total / length, 1), "data_bytes": total,
            "payload_bytes_first": len(payloads[0]), "payload_bytes_last": len(payloads[-1]),
            "queued_job_bytes": len(queued.encode())}


def _registered(backend: Any, worker: SubprocessWorker, timeout_s: float) -> str:
    """Wait until `worker` has heartbeated; its registry id."""
    deadline = time.monotonic() + timeout_s
    pid = str(worker.process.pid)
    while True:
        worker.check()
        for entry in backend.workers(time.time()):
            if entry.alive and entry.info.get("pid") == pid:
                return str(entry.worker_id)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not register within {timeout_s} s:\n"
                               f"{worker.log_tail()}")
        time.sleep(0.02)


def _expiry(backend: Any, worker_id: str) -> float:
    found = [w.expires_at for w in backend.workers(time.time()) if w.worker_id == worker_id]
    if not found:
        raise RuntimeError(f"worker {worker_id} left the registry")
    return float(found[0])


def bench_recovery(app: App, namespace: str, beats: Heartbeats, timeout_s: float,
                   quiet_logs: bool) -> Result:
    """SIGKILL a worker holding a blocked job right after its heartbeat; seconds until the
    job starts again on the other worker."""
    backend: Any = app.backend
    workers: list[SubprocessWorker] = []

    def start(instance_id: str) -> tuple[SubprocessWorker, str]:
        worker = SubprocessWorker(namespace, expect_acks=0, concurrency=1,
                                  quiet_logs=quiet_logs, instance_id=instance_id,
                                  extra_env=beats.env())
        workers.append(worker)
        return worker, _registered(backend, worker, timeout_s)

    try:
        victim, victim_id = start("bench-victim")
        app.enqueue(BLOCK)
        first = backend.wait_message("recovery", timeout_s, victim.check)
        if first["pid"] != victim.process.pid:
            raise RuntimeError(f"the blocking job started in pid {first['pid']}, not the victim")
        survivor, _ = start("bench-survivor")
        # Kill right after a heartbeat of the victim: the worst case, a whole TTL to expire.
        before = _expiry(backend, victim_id)
        deadline = time.monotonic() + beats.interval_s + timeout_s
        while (expires_at := _expiry(backend, victim_id)) == before:
            if time.monotonic() > deadline:
                raise TimeoutError("the victim stopped heartbeating")
            time.sleep(0.002)
        killed_at = time.time()
        victim.process.kill()
        victim.process.wait()
        again = backend.wait_message("recovery", beats.ttl_s + beats.recovery_interval_s
                                     + timeout_s, survivor.check)
        if again["pid"] != survivor.process.pid:
            raise RuntimeError(f"the job started again in pid {again['pid']}, not the survivor")
        backend.publish("release", {})
        seconds = again["started_at"] - killed_at
        return {"name": "recovery", "backend": "redis", "seconds": _s(seconds),
                "heartbeat_interval_s": beats.interval_s, "heartbeat_ttl_s": beats.ttl_s,
                "recovery_interval_s": beats.recovery_interval_s,
                "killed_after_heartbeat_s": _s(killed_at - (expires_at - beats.ttl_s)),
                "started_after_expiry_s": _s(again["started_at"] - expires_at),
                "target_seconds": beats.target_s}
    finally:
        for worker in workers:
            worker.stop()


# -- the suites --------------------------------------------------------------------------


@dataclass
class Options:
    backend: str
    sizes: Sizes
    concurrency: int
    timeout_s: float
    quiet_logs: bool
    heartbeats: Heartbeats = DEFAULT_HEARTBEATS
    skip_recovery: bool = False
    scaling: tuple[int, ...] = ()


def run_redis(options: Options, emit: Callable[[Result], None]) -> None:
    sizes, concurrency, timeout_s = options.sizes, options.concurrency, options.timeout_s
    tag = f"bench-{uuid.uuid4().hex[:10]}"
    backends: list[TimedRedisBackend] = []

    def new_app(suffix: str) -> App:
        backend = timed_redis_backend(f"{tag}-{suffix}", max_connections=8)
        backends.append(backend)
        backend.queue_sizes()  # raises BackendError now if Redis is unreachable
        return build_app(backend)

    worker: SubprocessWorker | None = None
    try:
        progress(f"redis at {redis_url()}, namespaces {tag}-*")
        progress(f"enqueue: {sizes.enqueue_jobs} single enqueue() calls")
        emit(bench_enqueue(new_app("enqueue"), sizes.enqueue_jobs, "redis"))

        app = new_app("work")
        namespace = f"{tag}-work"
        progress(f"enqueue_bulk: {sizes.jobs} no-ops in one call (the throughput backlog)")
        emit(bench_enqueue_bulk(app, sizes.jobs, "redis"))

        progress(f"noop_throughput: one worker process, {concurrency} threads")
        worker = SubprocessWorker(namespace, expect_acks=sizes.jobs, concurrency=concurrency,
                                  quiet_logs=options.quiet_logs)
        running = Running(app, worker, "redis", concurrency, timeout_s)
        emit(bench_throughput(running, sizes.jobs))

        progress(f"fanin: Chain(Group({sizes.width} no-ops), no-op) on the running worker")
        emit(bench_fanin(running, sizes.width))

        progress(f"chain: Chain of {sizes.length} no-ops")
        emit(bench_chain(running, sizes.length))
        for length in options.scaling:
            progress(f"chain (scaling): Chain of {length} no-ops")
            emit(bench_chain(running, length))

        progress(f"payload_bytes: a stored {sizes.length}-step chain; the bytes a "
                 f"{' and a '.join(map(str, FINISHED_RUN_LENGTHS))}-step run keeps, "
                 "running and finished")
        emit({**bench_payload_bytes_redis(new_app("payload"), sizes.length),
              **bench_finished_run_bytes_redis(new_app("finished"))})

        if options.skip_recovery:
            progress("recovery: skipped (--skip-recovery)")
        else:
            beats = options.heartbeats
            progress(f"recovery: SIGKILL a worker mid-job (heartbeat every {beats.interval_s:g} s, "
                     f"TTL {beats.ttl_s:g} s, recovery every {beats.recovery_interval_s:g} s); "
                     f"about {beats.interval_s + beats.ttl_s:g} s")
            emit(bench_recovery(new_app("recovery"), f"{tag}-recovery", beats, timeout_s,
                                options.quiet_logs))
    finally:
        if worker is not None:
            worker.stop()
        for backend in backends:
            with contextlib.suppress(Exception):
                backend.flush_namespace()
            backend.close()


def run_memory(options: Options, emit: Callable[[Result], None]) -> None:
    sizes, concurrency, timeout_s = options.sizes, options.concurrency, options.timeout_s
    progress(f"enqueue: {sizes.enqueue_jobs} single enqueue() calls")
    emit(bench_enqueue(build_app(TimedMemoryBackend()), sizes.enqueue_jobs, "memory"))

    backend = TimedMemoryBackend()
    backend.expect_acks = sizes.jobs
    app = build_app(backend)
    progress(f"enqueue_bulk: {sizes.jobs} no-ops in one call (the throughput backlog)")
    emit(bench_enqueue_bulk(app, sizes.jobs, "memory"))

    progress(f"noop_throughput: embedded worker, {concurrency} threads")
    worker = EmbeddedWorker(app, concurrency)
    try:
        running = Running(app, worker, "memory", concurrency, timeout_s)
        emit(bench_throughput(running, sizes.jobs))
        progress(f"fanin: Chain(Group({sizes.width} no-ops), no-op) on the running worker")
        emit(bench_fanin(running, sizes.width))
        progress(f"chain: Chain of {sizes.length} no-ops")
        emit(bench_chain(running, sizes.length))
        for length in options.scaling:
            progress(f"chain (scaling): Chain of {length} no-ops")
            emit(bench_chain(running, length))
    finally:
        worker.stop()

    progress(f"payload_bytes: a stored {sizes.length}-step chain")
    emit(bench_payload_bytes_memory(build_app(TimedMemoryBackend()), sizes.length))
    progress("recovery: skipped on memory (it kills a worker process; memory cannot be shared "
             "across processes; run --backend redis)")


# -- output ------------------------------------------------------------------------------


def _s(seconds: float) -> float:
    return round(seconds, 6)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def _row(result: Result) -> tuple[str, str, str, str, str]:
    name = result["name"]
    if name in ("enqueue", "enqueue_bulk"):
        return name, f"{result['jobs']} jobs", f"{result['seconds']:.3f}", \
            f"{result['jobs_per_s']:,.0f} jobs/s", ""
    if name == "noop_throughput":
        met = "met" if result["jobs_per_s"] >= TARGET_JOBS_PER_S else "MISSED"
        return name, f"{result['jobs']} jobs, -c {result['concurrency']}", \
            f"{result['seconds']:.3f}", f"{result['jobs_per_s']:,.0f} jobs/s", \
            f"target >= {TARGET_JOBS_PER_S:,} jobs/s: {met}"
    if name == "fanin":
        met = "met" if result["seconds"] < TARGET_FANIN_S else "MISSED"
        return name, f"width {result['width']}", f"{result['seconds']:.3f}", "", \
            f"run() {result['run_call_s']:.3f} s; target < {TARGET_FANIN_S:g} s: {met}"
    if name == "chain":
        met = "met" if result["ms_per_step"] <= TARGET_CHAIN_MS else "MISSED"
        return name, f"length {result['length']}", f"{result['seconds']:.3f}", \
            f"{result['ms_per_step']:.3f} ms/step", \
            f"run() {result['run_call_s']:.3f} s; target <= {TARGET_CHAIN_MS:g} ms/step: {met}"
    if name == "recovery":
        met = "met" if result["seconds"] < result["target_seconds"] else "MISSED"
        return name, f"TTL {result['heartbeat_ttl_s']:g} s", f"{result['seconds']:.3f}", "", \
            f"killed {result['killed_after_heartbeat_s']:.3f} s after a heartbeat; started " \
            f"{result['started_after_expiry_s']:.3f} s after its expiry; target < " \
            f"{result['target_seconds']:g} s: {met}"
    if name == "payload_bytes":
        kept = "".join(f"; a {length}-step run keeps {f['running']:,} B running, "
                       f"{f['finished']:,} B finished"
                       for length, f in result.get("finished_run_bytes", {}).items())
        return name, f"length {result['length']}", "", f"{result['bytes']:,} B", \
            f"{result['bytes_per_node']:g} B/node; payload node 0 = {result['payload_bytes_first']} B, " \
            f"node {result['length'] - 1} = {result['payload_bytes_last']} B{kept}"
    return name, "", "", "", json.dumps(result)


def print_table(results: list[Result], backend: str) -> None:
    header = ("benchmark", "size", "seconds", "rate / size", "notes")
    rows = [header, *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    print(f"sideline benchmarks ({backend} backend)")
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in [*widths, len(header[-1])]))


# -- entry point -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=("redis", "memory"), default="redis")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--jobs", type=int, help=f"no-op jobs for throughput and enqueue_bulk "
                        f"(default {FULL.jobs}, quick {QUICK.jobs})")
    parser.add_argument("--enqueue-jobs", type=int, help=f"single enqueue() calls "
                        f"(default {FULL.enqueue_jobs}, quick {QUICK.enqueue_jobs})")
    parser.add_argument("--width", type=int, help=f"fan-in width (default {FULL.width})")
    parser.add_argument("--length", type=int, help=f"chain length, also for payload_bytes "
                        f"(default {FULL.length})")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="worker threads")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for any one benchmark to finish")
    parser.add_argument("--quiet-logs", action="store_true",
                        help="sideline.worker at WARNING (its per-job line is DEBUG already)")
    parser.add_argument("--scaling", action="store_true",
                        help="also run chains of " + ", ".join(map(str, SCALING_LENGTHS))
                        + " steps: the time per hop should not grow with the length")
    parser.add_argument("--skip-recovery", action="store_true",
                        help="leave out the recovery benchmark (about 20 s with default settings)")
    args = parser.parse_args(argv)
    for name in ("jobs", "enqueue_jobs", "width", "length", "concurrency"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(jobs=args.jobs or base.jobs, enqueue_jobs=args.enqueue_jobs or base.enqueue_jobs,
                  width=args.width or base.width, length=args.length or base.length)
    options = Options(args.backend, sizes, args.concurrency, args.timeout, args.quiet_logs,
                      heartbeats=QUICK_HEARTBEATS if args.quick else DEFAULT_HEARTBEATS,
                      skip_recovery=args.skip_recovery,
                      scaling=SCALING_LENGTHS if args.scaling else ())
    results: list[Result] = []

    def emit(result: Result) -> None:
        results.append(result)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            _name, _size, seconds, rate, _notes = _row(result)
            progress("  -> " + "  ".join(part for part in (seconds and f"{seconds} s", rate) if part))

    try:
        with _sigterm_as_interrupt():
            (run_redis if args.backend == "redis" else run_memory)(options, emit)
    except KeyboardInterrupt:
        print("benchmarks: interrupted (namespaces deleted, worker stopped)", file=sys.stderr)
        return 130
    except BackendError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print_table(results, args.backend)
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. a test's timeout) unwinds like Ctrl-C, so the finally blocks clean up."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
