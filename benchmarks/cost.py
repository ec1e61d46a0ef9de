"""What one no-op job costs: worker CPU (user and system), Redis CPU, Redis commands.

A worker with `-c` threads runs inside this process, draining pushed no-op jobs for a
fixed window after a warm-up. Over the window the script reads this process's CPU times
(`os.times`), the Redis server's CPU (`INFO cpu`, so run it on a Redis nobody else is
busy with) and `INFO commandstats`, and prints per job:

    threads  jobs/s  worker user us  worker sys us  redis us  redis calls  redis commands

"redis calls" are the commands the worker sent (FCALL, EVALSHA, BLPOP...); "redis
commands" also counts those run inside scripts and functions. The worker runs in this
process, so its CPU is this process's CPU; the window excludes start-up and the push.

    python benchmarks/cost.py                      # threads 1 and 8, 3 s windows
    python benchmarks/cost.py --threads 1,2,4,8 --window-s 5 --json
    python benchmarks/cost.py --threads 2 --jobs-per-call 1,8   # one job per call, or 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from sideline import App  # noqa: E402
from sideline.adapters.redis import RedisBackend, redis_url  # noqa: E402
from sideline.runtime.worker import Worker  # noqa: E402

SCRIPTED = ("fcall", "evalsha", "eval")


def _stats(client: redis.Redis) -> tuple[float, dict[str, int]]:
    """Redis's CPU seconds so far and its calls per command."""
    cpu = client.info("cpu")
    calls = {name.removeprefix("cmdstat_"): int(entry["calls"])
             for name, entry in client.info("commandstats").items()}
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


def measure(threads: int, window_s: float, warmup_s: float, url: str,
            per_call: int = 1) -> dict[str, Any]:
    """Drain no-op jobs with `threads` threads taking `per_call` jobs per call; the costs
    per job over the window."""
    namespace = f"cost-{uuid.uuid4().hex[:12]}"
    backend = RedisBackend.from_url(url, namespace=namespace)
    app = App(backend)

    @app.job(name="cost.noop", retry=False)
    def noop() -> None:
        """Does nothing."""

    client = redis.Redis.from_url(url)
    worker = Worker(app, concurrency=threads, queues=["default"], jobs_per_call=per_call)
    try:
        # enough for the whole window at a generous rate, pushed before the worker starts
        total = int(12_000 * min(per_call, 3) * (window_s + warmup_s)) + 1_000
        for start in range(0, total, 10_000):
            noop.enqueue_bulk([[] for _ in range(min(10_000, total - start))])
        worker.start()
        time.sleep(warmup_s)
        done0, times0, (redis0, calls0) = worker.processed, os.times(), _stats(client)
        started = time.perf_counter()
        time.sleep(window_s)
        done1, times1, (redis1, calls1) = worker.processed, os.times(), _stats(client)
        elapsed = time.perf_counter() - started
    finally:
        worker.stop(5.0)
        for key in client.scan_iter(match=f"{{{namespace}}}*", count=1000):
            client.delete(key)
        client.close()
        backend.close()
    jobs = max(done1 - done0, 1)
    delta = {name: calls1.get(name, 0) - calls0.get(name, 0) for name in calls1}
    inner = sum(count for name, count in delta.items() if name not in SCRIPTED)
    sent = sum(delta.get(name, 0) for name in SCRIPTED) + delta.get("blpop", 0)
    return {
        "threads": threads,
        "jobs_per_call": per_call,
        "jobs_per_s": round(jobs / elapsed),
        "worker_user_us": round((times1.user - times0.user) / jobs * 1e6),
        "worker_sys_us": round((times1.system - times0.system) / jobs * 1e6),
        "redis_us": round((redis1 - redis0) / jobs * 1e6),
        "redis_calls": round(sent / jobs, 2),
        "redis_commands": round((inner + sum(delta.get(n, 0) for n in SCRIPTED)) / jobs, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,8", help="comma-separated thread counts")
    parser.add_argument("--jobs-per-call", default="1",
                        help="comma-separated values of the worker's jobs_per_call")
    parser.add_argument("--window-s", type=float, default=3.0)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    parser.add_argument("--url", default=None, help="Redis URL (default SIDELINE_REDIS_URL)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    url = args.url or redis_url()
    if not args.json:
        print(f"{'threads':>7} {'per call':>8} {'jobs/s':>8} {'user us':>8} {'sys us':>7} "
              f"{'redis us':>9} {'calls':>6} {'commands':>9}   (per job; {os.cpu_count()} cpus)")
    for per_call in (int(part) for part in args.jobs_per_call.split(",")):
        for threads in (int(part) for part in args.threads.split(",")):
            row = measure(threads, args.window_s, args.warmup_s, url, per_call)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{row['threads']:>7} {per_call:>8} {row['jobs_per_s']:>8,} "
                      f"{row['worker_user_us']:>8} {row['worker_sys_us']:>7} "
                      f"{row['redis_us']:>9} {row['redis_calls']:>6} "
                      f"{row['redis_commands']:>9}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
