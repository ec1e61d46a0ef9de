#!/usr/bin/env python
"""What a concurrency limit costs: the drain rate of no-op jobs declared with
`limit=Concurrency(key="k:{0}", max=1000)` over 100 keys (never full: every fetch takes a
slot and every settle frees one) against the same jobs without a limit.

    python benchmarks/limits.py [--jobs 10000] [--keys 100] [--threads 8] [--repeat 3] [--json]

Each measurement uses a fresh Redis namespace (deleted afterwards) and one embedded
worker of `--threads` threads in this process. The jobs are pushed before the worker
starts; the rate is counted from the first job seen done to the last (the `processed`
counter, polled every 5 ms). Runs of the two kinds take turns; the medians are compared.
Target (printed, never asserted): the limit costs < 15% of the drain rate.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from sideline import App, Concurrency  # noqa: E402
from sideline.adapters.redis import RedisBackend  # noqa: E402

TARGET_OVERHEAD = 0.15
NAME = "bench.noop"
PUSH_CHUNK = 5_000


@dataclass(frozen=True)
class Run:
    kind: str
    jobs: int
    rate: float


def progress(message: str) -> None:
    print(f"[limits] {message}", file=sys.stderr, flush=True)


def noop(_key: int) -> None:
    """The job: it does nothing."""


def measure(kind: str, jobs: int, keys: int, threads: int, timeout_s: float) -> Run:
    """Push `jobs` no-op jobs (limited or not) to a fresh namespace, drain them with one
    embedded worker, return the rate; the namespace is deleted afterwards."""
    namespace = f"bench-limits-{secrets.token_hex(6)}"
    backend = RedisBackend.from_url(namespace=namespace, max_connections=threads + 8)
    try:
        app = App(backend)
        limit = Concurrency(key="k:{0}", max=1000) if kind == "limited" else None
        job = app.job(name=NAME, limit=limit)(noop)
        progress(f"{kind}: pushing {jobs} no-op jobs on {namespace}")
        for first in range(0, jobs, PUSH_CHUNK):
            job.enqueue_bulk([[i % keys] for i in range(first, min(first + PUSH_CHUNK, jobs))])
        with app.worker(concurrency=threads, fetch_timeout_s=0.5):
            rate = _drain_rate(backend, jobs, timeout_s)
        if kind == "limited" and app.admin.limits():
            raise RuntimeError(f"slots left after the drain: {app.admin.limits()[:3]}")
        progress(f"{kind}: {rate:,.0f} jobs/s")
        return Run(kind, jobs, rate)
    finally:
        deleted = backend.flush_namespace()
        progress(f"deleted {namespace} ({deleted} keys)")
        backend.close()


def _drain_rate(backend: RedisBackend, jobs: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    opened: tuple[float, int] | None = None
    while True:
        done = backend.stats(["processed"])["processed"]
        now = time.perf_counter()
        if opened is None and done > 0:
            opened = (now, done)
        if opened is not None and done >= jobs:
            if now <= opened[0] or done == opened[1]:
                raise RuntimeError("every job was done at the first poll: push more jobs")
            return (done - opened[1]) / (now - opened[0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"{done}/{jobs} jobs done after {timeout_s:g} s")
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind, taking turns")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs = [measure(kind, args.jobs, args.keys, args.threads, args.timeout)
            for _ in range(args.repeat) for kind in ("plain", "limited")]
    plain = statistics.median(r.rate for r in runs if r.kind == "plain")
    limited = statistics.median(r.rate for r in runs if r.kind == "limited")
    overhead = 1 - limited / plain
    if args.json:
        for run in runs:
            print(json.dumps(asdict(run)))
        print(json.dumps({"plain_rate": plain, "limited_rate": limited, "overhead": overhead,
                          "target_overhead": TARGET_OVERHEAD}))
        return 0
    print(f"{args.jobs} no-op jobs, 1 embedded worker x {args.threads} threads, "
          f"Concurrency(key='k:{{0}}', max=1000) over {args.keys} keys, median of {args.repeat}")
    print(f"  no limit: {plain:,.0f} jobs/s   limited: {limited:,.0f} jobs/s   "
          f"overhead {overhead:.1%} (target < {TARGET_OVERHEAD:.0%}: "
          f"{'met' if overhead < TARGET_OVERHEAD else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
