"""Many short jobs on Redis: a worker whose threads take 8 jobs per call.

Pushes 5,000 short jobs, then drains them twice on an embedded 2-thread worker: once
taking one job per call (the default), once with `jobs_per_call=8`. With 8, a thread
takes 8 waiting jobs in one call, runs them, and writes their acks together in the
call that takes its next 8. The script prints both rates and the Redis calls per job
(from INFO commandstats), checks that every job ran exactly once, and deletes its
namespace at the end.

Without a reachable Redis it prints that it needs one and exits 0 — or, when CI=true,
exits 1, so a CI run cannot pass by silently skipping it.
Run it with `python examples/jobs_per_call.py`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections import Counter

from sideline import App, BackendError
from sideline.adapters.redis import RedisBackend, redis_url

JOBS = 5_000

backend = RedisBackend.from_url(namespace=f"per-call-{uuid.uuid4().hex[:8]}")
app = App(backend)

seen: Counter[int] = Counter()
_lock = threading.Lock()


@app.job(name="per_call.count", retry=False)
def count(number: int) -> None:
    """A short job: it only records that it ran."""
    with _lock:
        seen[number] += 1


def redis_calls() -> int:
    """Script calls the Redis server has answered so far (all clients)."""
    stats = backend.client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("fcall", "evalsha", "blpop"))


def drain(jobs_per_call: int) -> tuple[float, float]:
    """Push JOBS jobs and run them all; (jobs per second, Redis calls per job)."""
    seen.clear()
    count.enqueue_bulk([[i] for i in range(JOBS)])
    before = redis_calls()
    started = time.perf_counter()
    with app.worker(concurrency=2, jobs_per_call=jobs_per_call) as worker:
        while worker.processed < JOBS:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
    calls = redis_calls() - before
    if seen != Counter(range(JOBS)):
        raise SystemExit(f"jobs_per_call={jobs_per_call}: some job did not run exactly once")
    return JOBS / elapsed, calls / JOBS


def main() -> int:
    """Drain with 1 and then 8 jobs per call; return the exit code."""
    try:
        app.admin.queues()
    except BackendError as exc:
        if os.environ.get("CI") == "true":
            print(f"jobs_per_call: FAILED: Redis at {redis_url()} is unreachable (CI=true)",
                  file=sys.stderr)
            return 1
        print(f"jobs_per_call needs Redis at {redis_url()}: {exc}")
        return 0
    try:
        for jobs_per_call in (1, 8):
            rate, calls = drain(jobs_per_call)
            print(f"jobs_per_call={jobs_per_call}: {rate:,.0f} jobs/s, "
                  f"{calls:.2f} Redis calls per job, every job ran once")
    finally:
        backend.flush_namespace()
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
