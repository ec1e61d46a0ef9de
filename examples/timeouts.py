"""Timeouts and stopping running jobs: which kind of job gets which guarantee.

Run: python examples/timeouts.py   (embedded in-memory backend, no Redis needed)

- A thread job gets a soft timeout: `current_job().should_stop()` turns true at the
  deadline, and whatever it returns after that is settled as JobTimeout (retried under
  its retry policy).
- A job declared with isolation="process" runs in a child process that is killed at its
  timeout, or when someone stops it, even if its code never checks anything.
- `app.admin.stop_job(jid)` stops a running job within about a second; it goes to the dead
  set with the reason "stopped: stopped by request" and is not retried.
"""

from __future__ import annotations

import time

from isolated_work import crunch
from sideline import App, JobFailed, JobHandle, current_job

app = App(store_results=True)


@app.job(name="scan", timeout=0.3, retry=0)
def scan(items: int) -> int:
    done = 0
    for _ in range(items):
        if current_job().should_stop():
            break  # return early: settled as JobTimeout all the same
        time.sleep(0.01)
        done += 1
    return done


crunch_job = app.job(crunch, name="crunch", isolation="process", timeout=1.0, retry=0)
long_crunch = app.job(crunch, name="long_crunch", isolation="process", retry=0)


def outcome(handle: JobHandle | None) -> str:
    assert handle is not None
    try:
        return f"returned {handle.result(30)!r}"
    except JobFailed as exc:
        return f"{exc.error_class}: {exc.error_message}"


def main() -> None:
    with app.worker(concurrency=2):
        print("thread job, soft timeout:", outcome(scan.enqueue(1000)))
        print("isolated job, killed at its timeout:", outcome(crunch_job.enqueue(60)))
        quick = crunch_job.enqueue(0.1)
        print("isolated job within its timeout:", outcome(quick))

        running = long_crunch.enqueue(60)
        assert running is not None
        while running.status() != "running":
            time.sleep(0.05)
        time.sleep(0.5)  # let the child process start the work
        started = time.monotonic()
        app.admin.stop_job(running)
        print("stopped by hand:", outcome(running),
              f"({time.monotonic() - started:.1f} s after the request)")
        print("dead set:", [(e.payload.name, e.payload.dead_reason) for e in app.admin.dead().entries])


if __name__ == "__main__":
    main()
