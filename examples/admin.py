"""The admin API (`app.admin`) on the memory backend: stats, history, queues and the sets.

- 3 `ok` jobs succeed, `boom` dies at once (retry=False), `flaky` fails and waits in the
  retry set: 5 processed, 2 failed, 1 dead, 1 retry.
- A queue page, deleting one queued job by jid, a scheduled job pushed with "retry now",
  the retry entry killed, then every dead job retried.

Exits 0 when every number is as expected, 1 otherwise. Run it with `python examples/admin.py`.
"""

from __future__ import annotations

import logging
import sys
import time

from sideline import App

logging.basicConfig(level=logging.CRITICAL)  # the failures below are on purpose

app = App(testing="collect")


@app.job(name="admin.ok")
def ok(n: int) -> int:
    """Succeed."""
    return n


@app.job(name="admin.boom", retry=False)
def boom() -> None:
    """Die at once: straight to the dead set."""
    raise RuntimeError("boom")


@app.job(name="admin.flaky", retry=5)
def flaky() -> None:
    """Fail, and wait in the retry set."""
    raise RuntimeError("not yet")


problems: list[str] = []


def expect(what: str, got: object, wanted: object) -> None:
    """Print a check; remember it if it failed."""
    mark = "ok " if got == wanted else "BAD"
    print(f"{mark} {what}: {got!r}" + ("" if got == wanted else f" (wanted {wanted!r})"))
    if got != wanted:
        problems.append(what)


def main() -> int:
    """Run the tour; 0 when every check held."""
    admin = app.admin
    for n in range(3):
        app.enqueue("admin.ok", [n])
    app.enqueue("admin.boom")
    flaky_jid = app.enqueue("admin.flaky")
    app.drain(run_scheduled=False)

    stats = admin.stats()
    expect("processed, failed", (stats.processed, stats.failed), (5, 2))
    expect("today", (stats.processed_today, stats.failed_today), (5, 2))
    expect("retries, dead", (stats.retries, stats.dead), (1, 1))
    today = admin.history(days=2)[0]
    expect("history today", (today.processed, today.failed), (5, 2))
    recent = admin.history_minutes(2)  # two buckets: the drain may straddle a minute
    expect("history by minute", sum(point.processed for point in recent), 5)

    jids = [app.enqueue("admin.ok", [n]) for n in range(10, 15)]
    queue = admin.queues()[0]
    expect("queue", (queue.name, queue.size), ("default", 5))
    page = admin.queue_jobs("default", page=2, per_page=2)
    expect("page 2 of the queue", [job.jid for job in page.jobs], jids[2:4])
    expect("delete a queued job", admin.delete_job("default", jids[0]), True)

    later = app.enqueue("admin.ok", [99], at=time.time() + 3600)
    expect("scheduled", [e.key for e in admin.scheduled().entries], [later])
    expect("retry now", admin.retry_now("scheduled", [later]), 1)
    expect("queued now", admin.stats().enqueued, 5)

    expect("search the retry set", [e.key for e in admin.retries(search="flaky").entries],
           [flaky_jid])
    expect("kill", admin.kill([flaky_jid]), 1)
    dead = admin.dead()
    expect("dead", dead.total, 2)
    expect("retry every dead job", admin.retry_now("dead", [e.key for e in dead.entries]), 2)
    expect("cleared", admin.clear_queue("default"), 7)
    expect("workers", admin.workers(), [])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
