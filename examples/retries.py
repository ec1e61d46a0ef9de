"""Retries, the retries-exhausted hook, death handlers and the dead set, on a real worker.

- `flaky` fails twice, then succeeds on its 3rd try; `retry_in` makes each retry wait
  50 ms instead of Sidekiq's default backoff (15 s and more).
- `doomed` always fails; with retry=2 it runs 3 times (1 try + 2 retries), then its
  `on_exhausted` hook and the app's death handlers are called and it lands in the dead set
  with the reason.

Exits 0 when all of that happened, 1 otherwise. Run it with `python examples/retries.py`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from sideline import App, Payload
from sideline.core.retry import backoff_s

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

app = App()
attempts = {"flaky": 0, "doomed": 0}
_lock = threading.Lock()
flaky_done = threading.Event()
exhausted: list[str] = []
deaths: list[str] = []
death_seen = threading.Event()


def count(name: str) -> int:
    """Count one attempt of job `name`; return the attempt number (1 for the first try)."""
    with _lock:
        attempts[name] += 1
        return attempts[name]


@app.job(name="retries.flaky", retry_in=lambda retry_count, exc: 0.05)  # seconds
def flaky() -> None:
    """Fail on the first two tries."""
    if count("flaky") < 3:
        raise ConnectionError("upstream not ready")
    flaky_done.set()


def on_doomed_exhausted(payload: Payload, exc: BaseException) -> None:
    """The job's own retries-exhausted hook."""
    exhausted.append(f"{payload.name} after {payload.retry_count} retries: {exc!r}")


@app.job(name="retries.doomed", retry=2, retry_in=lambda retry_count, exc: 0.01,
         on_exhausted=on_doomed_exhausted)
def doomed(order_id: int) -> None:
    """Always fail."""
    count("doomed")
    raise ValueError(f"order {order_id} is corrupt")


def on_death(payload: Payload, exc: BaseException) -> None:
    """A global death handler: called for every job that exhausts its retries."""
    deaths.append(payload.jid)
    death_seen.set()


app.death_handlers.append(on_death)


def wait_for_dead(jid: str, timeout_s: float) -> Payload | None:
    """Poll the dead set until job `jid` is in it (the hooks run just before it lands there)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entry = app.admin.find("dead", jid)  # a dead entry's key is its jid
        if entry is not None:
            return entry.payload
        time.sleep(0.01)
    return None


def main() -> int:
    """Run both jobs on an embedded worker and check what happened; return the exit code."""
    print("default backoff (no retry_in): count**4 + 15 + rand(10 * (count + 1)) seconds")
    for retry_count in range(5):
        low, high = backoff_s(retry_count, 0.0), backoff_s(retry_count, 0.999)
        print(f"  after failure {retry_count + 1}: {low:.0f}-{high:.0f} s")

    with app.worker(concurrency=2):
        flaky.enqueue()
        jid = doomed.enqueue(42)
        flaky_ok = flaky_done.wait(timeout=10)
        death_seen.wait(timeout=10)
        dead = wait_for_dead(jid, timeout_s=10) if jid else None

    print(f"flaky: {attempts['flaky']} attempts, succeeded={flaky_ok}")
    print(f"doomed: {attempts['doomed']} attempts; on_exhausted: {exhausted}; death handler: {deaths}")
    if dead is not None:
        print(f"dead set: jid={dead.jid} retry_count={dead.retry_count} "
              f"error={dead.error_class}: {dead.error_message}\n  reason: {dead.dead_reason}")
    ok = (flaky_ok and attempts["flaky"] == 3 and attempts["doomed"] == 3
          and len(exhausted) == 1 and deaths == [jid] and dead is not None
          and dead.dead_reason == "retries exhausted (2) after ValueError: order 42 is corrupt")
    print("retries OK" if ok else "retries FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
