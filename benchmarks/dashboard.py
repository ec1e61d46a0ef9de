#!/usr/bin/env python
"""How fast the dashboard's pages render over a big dead set, on Redis.

    python benchmarks/dashboard.py [--entries 10000] [--repeat 20] [--json]

A fresh Redis namespace (SIDELINE_REDIS_URL, default redis://127.0.0.1:6379/0; deleted
at the end) gets `--entries` dead jobs, each stored by the backend's own `kill` (the
Lua script a worker runs when a job dies: one script call per job, O(log n) each on
Redis), with arguments, an error and a 12-line backtrace like a real failure; and 300
queued jobs in three queues. Then each page is requested `--repeat` times through
Starlette's TestClient (in this process: the time is the dashboard's own, Redis round
trips included, without a network or a browser), after one warm-up request each:

- /dead?page=1, the middle page and the last page (1, 200 and 400 of 10,000 entries);
- an entry's own page (/dead/entry/<key>, an entry from the middle of the set);
- the dashboard (/) and the queues page (/queues).

Prints the median, the fastest and the slowest time of each against the target
"< 300 ms" (printed, never asserted); with --json, one JSON object per page per line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from starlette.testclient import TestClient

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import Payload
from sideline.core.ports import Delivery
from sideline.web import create_app
from sideline.web.pages.sets import PER_PAGE

TARGET_MS = 300.0
QUEUES = {"default": 150, "mail": 100, "images": 50}
BACKTRACE = [
    *(f'  File "/srv/app/billing/step_{n}.py", line {10 * n + 3}, in step_{n}\n'
      f"    return step_{n + 1}(order)\n" for n in range(11)),
    "ValueError: card declined for order (bench)\n",
]


@dataclass(frozen=True)
class Timing:
    page: str
    path: str
    status: int
    median_ms: float
    min_ms: float
    max_ms: float
    repeat: int
    entries: int
    target_ms: float = TARGET_MS


def progress(message: str) -> None:
    print(f"[dashboard] {message}", file=sys.stderr, flush=True)


def dead_payload(n: int, now: float) -> Payload:
    return Payload(
        name="billing.charge", jid=f"bench-{n:06d}", queue="default",
        args=[10_000 + n, {"currency": "EUR", "amount": 1999, "customer": f"cus_{n:06d}"}],
        created_at=now - 3_600, enqueued_at=now - 3_600, retry=25, retry_count=25,
        error_class="ValueError", error_message=f"card declined for order {10_000 + n}",
        error_backtrace=BACKTRACE, failed_at=now - n, dead_reason="retries exhausted (25)")


def fill(app: App, backend: RedisBackend, entries: int) -> float:
    """Kill `entries` jobs through the backend (as a worker does), queue some: seconds taken."""
    started = time.perf_counter()
    now = time.time()
    delivery = Delivery("", "default")
    for n in range(entries):
        backend.kill("bench-worker", delivery, dead_payload(n, now), now - n)
    for queue, count in QUEUES.items():
        for start in range(0, count, 50):
            backend.push([app.build_payload("billing.charge", [order], {}, queue=queue)
                          for order in range(start, min(start + 50, count))])
    return time.perf_counter() - started


def measure(client: TestClient, page: str, path: str, repeat: int, entries: int) -> Timing:
    warm = client.get(path)  # templates compiled, connections open
    times: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {path} answered {response.status_code}")
    return Timing(page, path, warm.status_code, round(statistics.median(times), 2),
                  round(min(times), 2), round(max(times), 2), repeat, entries)


def pages(entries: int) -> list[tuple[str, str]]:
    last = max(1, -(-entries // PER_PAGE))
    middle = max(1, last // 2)
    key = f"bench-{entries // 2:06d}"
    return [
        ("dead, first page", "/dead?page=1"),
        (f"dead, page {middle} of {last}", f"/dead?page={middle}"),
        (f"dead, page {last} of {last}", f"/dead?page={last}"),
        ("dead entry", f"/dead/entry/{key}"),
        ("dashboard", "/"),
        ("queues", "/queues"),
    ]


def table(results: list[Timing], fill_s: float) -> str:
    entries = results[0].entries if results else 0
    lines = [f"dashboard pages over {entries:,} dead entries (Redis, filled in {fill_s:.1f} s), "
             f"median of {results[0].repeat if results else 0} requests through TestClient",
             f"{'page':<24} {'path':<24} {'median':>9} {'min':>9} {'max':>9}  target",
             "-" * 92]
    for timing in results:
        verdict = "ok" if timing.median_ms < timing.target_ms else "OVER"
        lines.append(f"{timing.page:<24} {timing.path:<24} {timing.median_ms:>6.1f} ms "
                     f"{timing.min_ms:>6.1f} ms {timing.max_ms:>6.1f} ms  "
                     f"< {timing.target_ms:.0f} ms: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=10_000, help="dead jobs (10000)")
    parser.add_argument("--repeat", type=int, default=20, help="requests per page (20)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    options = parser.parse_args(argv)
    if options.entries < 1 or options.repeat < 1:
        parser.error("--entries and --repeat must be at least 1")
    namespace = f"bench-dashboard-{uuid.uuid4().hex[:12]}"
    # max_dead: the default keeps 10,000; a bigger --entries keeps them all
    backend = RedisBackend.from_url(namespace=namespace, max_dead=max(10_000, options.entries))
    try:
        app = App(backend)

        @app.job(name="billing.charge")
        def charge(*args: Any) -> None:
            """Never run here."""

        progress(f"filling {namespace}: {options.entries:,} dead jobs, "
                 f"{sum(QUEUES.values())} queued")
        fill_s = fill(app, backend, options.entries)
        if app.admin.stats().dead != options.entries:
            raise SystemExit(f"the dead set holds {app.admin.stats().dead}, not {options.entries}")
        with TestClient(create_app(app)) as client:
            results = [measure(client, page, path, options.repeat, options.entries)
                       for page, path in pages(options.entries)]
    finally:
        deleted = backend.flush_namespace()
        backend.close()
        progress(f"deleted {namespace} ({deleted} keys)")
    if options.json:
        for timing in results:
            print(json.dumps({**asdict(timing), "fill_s": round(fill_s, 3)}))
    else:
        print(table(results, fill_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
