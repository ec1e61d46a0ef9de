"""Assured execution on the embedded backend: a worker dies holding jobs, nothing is lost.

Shows: a crashed worker's jobs recovered by a live worker soon after its heartbeat
expires, the orphan view and recovery log, a poison pill (a job that keeps killing
its workers goes to the dead set), a restarted instance taking over its previous
incarnation's jobs at once, and a unique job pushed only once.

Exits non-zero if any of that does not happen.
"""

from __future__ import annotations

import sys
import time

from sideline import App, MemoryBackend

backend = MemoryBackend()
app = App(backend, max_recoveries=2)
ran: list[str] = []


@app.job(name="charge")
def charge(order_id: str) -> None:
    ran.append(order_id)


@app.job(name="nightly_report", unique_for=60)
def nightly_report(day: str) -> None:
    ran.append(f"report {day}")


def wait_for(condition: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def main() -> int:
    problems: list[str] = []

    # 1. A worker fetches a job and dies (its heartbeat expires after 0.3 s).
    charge.enqueue("order-1")
    now = app.clock.now()
    backend.heartbeat("web-1#a1", {"instance": "web-1"}, 0.3, now)
    backend.fetch("web-1#a1", ["default"], 0)
    time.sleep(0.35)
    orphans = app.admin.orphans()
    print("orphans:", [(o.worker_id, o.payload.args if o.payload else o.error) for o in orphans])
    if [o.worker_id for o in orphans] != ["web-1#a1"]:
        problems.append("the dead worker's job was not listed as an orphan")
    with app.worker(concurrency=2, poll_interval_s=0.02, fetch_timeout_s=0.05):
        if not wait_for(lambda: "order-1" in ran):
            problems.append("the orphaned job was not recovered")
    print("recovery log:", [(r.name, r.args, r.instance, r.recoveries) for r in app.admin.recovery_log()])

    # 2. A poison pill: recovered more than max_recoveries (2) times -> dead set.
    charge.enqueue("order-2")
    for _ in range(3):
        backend.fetch("crashy", ["default"], 0)
        backend.recover("crashy")
    app.drain()
    dead = [e.payload for e in app.admin.dead().entries]
    print("dead:", [(p.args, p.dead_reason) for p in dead])
    if not any(p.dead_reason == "poison pill: recovered 3 times" for p in dead):
        problems.append("the poison pill did not reach the dead set")

    # 3. A restarted instance takes over its previous incarnation at once.
    charge.enqueue("order-3")
    backend.heartbeat("web-2#old", {"instance": "web-2"}, 600.0, app.clock.now())
    backend.fetch("web-2#old", ["default"], 0)
    with app.worker(instance_id="web-2", concurrency=1, fetch_timeout_s=0.05):
        if not wait_for(lambda: "order-3" in ran):
            problems.append("the restarted instance did not take over its old jobs")

    # 4. A unique job is pushed once while an identical one is pending.
    first, second = nightly_report.enqueue("2026-11-22"), nightly_report.enqueue("2026-11-22")
    print("unique:", first is not None, second is None)
    if first is None or second is not None:
        problems.append("unique_for did not keep the second copy out")

    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
