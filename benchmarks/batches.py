#!/usr/bin/env python
"""What batches cost: the drain rate of no-op jobs in one batch against the same jobs
pushed plainly, and the time from a batch's last job to its success callback.

    python benchmarks/batches.py [--jobs 10000] [--threads 8] [--repeat 3] [--json]

Each measurement uses a fresh Redis namespace (deleted afterwards) and one `sideline
worker` process (benchmarks/peers/sideline_app.py). The jobs are pushed before the worker
starts; the rate is counted from the first job seen done to the last (the `processed`
counter, polled every millisecond). For the batch, its success callback records when it
started; "last job to callback" is that time minus the moment the counter reached the
batch's size. Targets (printed, never asserted): batch accounting costs < 10% of the
drain rate; the callback starts within a few milliseconds of the last job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.peers import sideline_app  # noqa: E402
from benchmarks.peers.compare import (  # noqa: E402
    PUSH_BATCH,
    BenchError,
    SidelineTarget,
    WorkerProcess,
    delete_namespace,
    fresh_namespace,
    progress,
)
from sideline import Signature  # noqa: E402

TARGET_OVERHEAD = 0.10


@dataclass(frozen=True)
class Run:
    kind: str
    jobs: int
    rate: float
    callback_ms: float | None


def _drain(target: SidelineTarget, jobs: int, threads: int, timeout_s: float,
           callback_key: str | None = None) -> tuple[float, float, float | None]:
    """Start a worker, poll until `jobs` are done: (jobs per second, wall time of the
    last, and with `callback_key` the wall time the batch's callback started; the worker
    is stopped only after it ran)."""
    worker = WorkerProcess(target.command(1, threads), target.namespace)
    try:
        deadline = time.monotonic() + timeout_s
        opened: tuple[float, int] | None = None
        while True:
            done = target.done(jobs)
            now = time.time()
            if opened is None and done > 0:
                opened = (now, done)
            if opened is not None and done >= jobs:
                if now <= opened[0]:
                    raise BenchError("every job was done at the first poll: push more jobs")
                started = None
                if callback_key is not None:
                    found = target.client.blpop([callback_key], timeout=4)
                    if found is None:
                        worker.check()
                        raise BenchError("the batch's success callback did not run")
                    started = float(found[1].split()[1])
                return (jobs - opened[1]) / (now - opened[0]), now, started
            if time.monotonic() > deadline:
                worker.check()
                raise BenchError(f"{done}/{jobs} jobs done after {timeout_s:g} s")
            time.sleep(0.001)
    finally:
        worker.stop()


def measure(kind: str, jobs: int, threads: int, timeout_s: float) -> Run:
    namespace = fresh_namespace()
    target = SidelineTarget(namespace)
    try:
        progress(f"{kind}: pushing {jobs} no-op jobs on {namespace}")
        if kind == "batch":
            batch = target.app.batch("benchmark").on("success", Signature(sideline_app.NOTE))
            with batch.jobs():
                target.push_noops(jobs)
        else:
            target.push_noops(jobs)
        key = sideline_app.callback_key(namespace) if kind == "batch" else None
        rate, last, started = _drain(target, jobs, threads, timeout_s, key)
        callback_ms = None if started is None else (started - last) * 1000
        return Run(kind, jobs, rate, callback_ms)
    finally:
        delete_namespace(target.client, namespace)
        target.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind, taking turns")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.jobs > PUSH_BATCH * 100:
        parser.error("--jobs is too large for one batch block in this benchmark")
    runs = [measure(kind, args.jobs, args.threads, args.timeout)
            for _ in range(args.repeat) for kind in ("plain", "batch")]
    plain = statistics.median(r.rate for r in runs if r.kind == "plain")
    batched = statistics.median(r.rate for r in runs if r.kind == "batch")
    callback = statistics.median(r.callback_ms or 0.0 for r in runs if r.kind == "batch")
    overhead = 1 - batched / plain
    if args.json:
        for run in runs:
            print(json.dumps(asdict(run)))
        print(json.dumps({"plain_rate": plain, "batch_rate": batched, "overhead": overhead,
                          "callback_ms": callback, "target_overhead": TARGET_OVERHEAD}))
        return 0
    print(f"{args.jobs} no-op jobs, 1 worker process x {args.threads} threads, "
          f"median of {args.repeat}")
    print(f"  plain: {plain:,.0f} jobs/s   in one batch: {batched:,.0f} jobs/s   "
          f"overhead {overhead:.1%} (target < {TARGET_OVERHEAD:.0%}: "
          f"{'met' if overhead < TARGET_OVERHEAD else 'NOT met'})")
    print(f"  last job to success callback: {callback:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
