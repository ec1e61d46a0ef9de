#!/usr/bin/env python
"""What results cost and how fast they arrive, on Redis.

    python benchmarks/results.py [--jobs 300] [--idle-s 5] [--json]

1. End to result: a job returns the wall-clock time at its end; the caller, blocked in
   `handle.result()`, notes the time it got the value. The difference is the time from a
   job's end to `result()` returning (its settle, the signal, the wake-up). One embedded
   worker (2 threads) on the same machine; jobs one at a time. Target: median < 5 ms.
2. Idle wait: Redis commands per second while `app.wait(run_id)` waits for a run that does
   not move (no worker), counted by a private redis-server this script starts on a free
   loopback port (INFO total_commands_processed) over `--idle-s` seconds. Polling every
   10 ms, as `app.wait` did before, cost ~100 reads per second.

The first part uses a fresh namespace on SIDELINE_REDIS_URL (default
redis://127.0.0.1:6379/0), deleted afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from sideline import App, Chain, Workflow  # noqa: E402
from sideline.adapters.redis import RedisBackend  # noqa: E402

TARGET_END_TO_RESULT_MS = 5.0


def end_to_result(jobs: int) -> dict[str, float]:
    """Milliseconds from a job's end to `result()` returning: median, p99, max."""
    backend = RedisBackend.from_url(namespace=f"bench-{uuid.uuid4().hex[:10]}")
    app = App(backend, store_results=True)

    @app.job(name="stamp")
    def stamp() -> float:
        return time.time()

    samples: list[float] = []
    try:
        with app.worker(concurrency=2):
            for _ in range(jobs):
                handle = stamp.enqueue()
                assert handle is not None
                ended = handle.result(10)
                samples.append((time.time() - ended) * 1000)
    finally:
        backend.flush_namespace()
        backend.close()
    samples.sort()
    return {"jobs": jobs, "median_ms": statistics.median(samples),
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            "max_ms": samples[-1], "target_median_ms": TARGET_END_TO_RESULT_MS}


def _private_server() -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of our own on a free loopback port, so nothing else is counted."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                               "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    return server, url


def idle_wait(seconds: float) -> dict[str, float]:
    """Redis commands per second while app.wait blocks on a run that does not move,
    counted on a private redis-server (stopped afterwards by its pid)."""
    server, url = _private_server()
    try:
        return _idle_wait(url, seconds)
    finally:
        server.kill()
        server.wait()


def _idle_wait(url: str, seconds: float) -> dict[str, float]:
    backend = RedisBackend.from_url(url, namespace=f"bench-{uuid.uuid4().hex[:10]}")
    app = App(backend)

    @app.job(name="never_runs")
    def never_runs() -> None:
        return None

    try:
        run_id = Workflow(Chain(never_runs.s()), app=app).run()
        before = int(backend.client.info("stats")["total_commands_processed"])
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            app.wait(run_id, timeout_s=seconds)
        elapsed = time.monotonic() - started
        after = int(backend.client.info("stats")["total_commands_processed"])
    finally:
        backend.flush_namespace()
        backend.close()
    commands = after - before - 1  # the first INFO is counted too
    return {"seconds": round(elapsed, 2), "commands": commands,
            "commands_per_s": commands / elapsed, "polling_every_10ms_per_s": 100.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--idle-s", dest="idle_s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    figures = {"end_to_result": end_to_result(args.jobs), "idle_wait": idle_wait(args.idle_s)}
    for name, values in figures.items():
        if args.json:
            print(json.dumps({"name": name, **values}))
        else:
            shown = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in values.items())
            print(f"{name}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
