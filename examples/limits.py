"""Fleet-wide concurrency and rate limits per key.

Run: python examples/limits.py   (embedded in-memory backend, no Redis needed)

`sync_customer` runs at most 2 at once per customer, across every worker; a busy customer
with a backlog cannot starve the others, whose jobs start while its backlog waits parked.
`call_api` starts at most 5 per second per account: over-limit jobs wait in the scheduled
set for the window to have room (no retry is used up).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from sideline import App, Concurrency, Rate

app = App()
lock = threading.Lock()
running: Counter[int] = Counter()
most: Counter[int] = Counter()
finished: list[tuple[int, float]] = []
starts: list[float] = []


@app.job(name="sync_customer", limit=Concurrency(key="customer:{0}", max=2))
def sync_customer(customer_id: int) -> None:
    with lock:
        running[customer_id] += 1
        most[customer_id] = max(most[customer_id], running[customer_id])
    time.sleep(0.05)
    with lock:
        running[customer_id] -= 1
        finished.append((customer_id, time.monotonic()))


@app.job(name="call_api", limit=Rate(key="api:{0}", limit=5, per_s=1.0))
def call_api(account: str) -> None:
    with lock:
        starts.append(time.monotonic())


def main() -> None:
    with app.worker(concurrency=8, poll_interval_s=0.05):
        for _ in range(40):
            sync_customer.enqueue(1)  # a heavy customer with a backlog
        for customer in (2, 3):
            sync_customer.enqueue(customer)  # light customers, pushed after it
        for _ in range(12):
            call_api.enqueue("acme")
        deadline = time.monotonic() + 20
        while (len(finished) < 42 or len(starts) < 12) and time.monotonic() < deadline:
            time.sleep(0.05)
        print("limits in use:", [(v.key, v.kind, v.max, v.running, v.parked)
                                 for v in app.admin.limits()])
    heavy_done = max(t for c, t in finished if c == 1)
    light_done = max(t for c, t in finished if c != 1)
    print(f"most at once per customer: {dict(most)}")
    print(f"light customers finished {heavy_done - light_done:.2f} s before the heavy backlog")
    spread = max(starts) - min(starts)
    print(f"12 API calls at 5 per second took {spread:.2f} s")
    assert max(most.values()) <= 2
    assert light_done < heavy_done
    assert spread >= 1.5


if __name__ == "__main__":
    main()
