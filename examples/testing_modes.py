"""Testing modes: run jobs inline, or collect them and drain() deterministically.

- testing="inline": every push runs the job (and whatever it pushes) at once, in the
  pushing thread, like Sidekiq::Testing.inline!.
- testing="collect": pushes only queue the job; `app.drain()` runs queued jobs in the
  calling thread until none is left, like Sidekiq::Testing.fake! plus drain_all.
- Fault injection: make a backend operation fail, as if the worker crashed there, then
  recover the crashed worker's in-progress jobs and finish.

No worker threads are started. Exits 0 when every check passed, 1 otherwise.
Run it with `python examples/testing_modes.py`.
"""

from __future__ import annotations

import logging
import sys

from sideline import App, Chain, Group, Workflow
from sideline.adapters.memory import InjectedFault, MemoryBackend

logging.disable(logging.CRITICAL)  # the failures below are on purpose; keep the output short

failures: list[str] = []


def check(what: str, ok: bool) -> None:
    """Print one check and remember it if it failed."""
    print(f"  [{'ok' if ok else 'FAILED'}] {what}")
    if not ok:
        failures.append(what)


def inline_mode() -> None:
    """Jobs run during enqueue() and Workflow.run()."""
    print("inline:")
    app = App(testing="inline")
    sent: list[str] = []

    @app.job(name="t.send")
    def send(to: str) -> None:
        sent.append(to)

    send.enqueue("ada@example.com")
    check("enqueue() ran the job before returning", sent == ["ada@example.com"])
    send.enqueue_in(3600, "later@example.com")  # scheduled jobs run at once too
    check("enqueue_in(3600) ran without waiting", sent[-1] == "later@example.com")
    run_id = Workflow(Chain(send.s("a"), Group(send.s("b"), send.s("c")))).run()
    check("Workflow.run() finished the run", app.status(run_id).status == "succeeded")


def collect_mode() -> None:
    """Jobs wait in their queues until drain()."""
    print("collect:")
    app = App(testing="collect")
    sent: list[str] = []

    @app.job(name="t.send")
    def send(to: str) -> None:
        sent.append(to)

    @app.job(name="t.broken", retry=False)
    def broken() -> None:
        raise RuntimeError("boom")

    send.enqueue("ada@example.com")
    send.enqueue_in(3600, "tomorrow@example.com")  # 3600 seconds from now
    check("nothing ran yet", sent == [])
    check("one job queued", [(q.name, q.size) for q in app.admin.queues()] == [("default", 1)])

    ran = app.drain(run_scheduled=False)
    check("drain(run_scheduled=False) ran only the queued job", ran == 1 and sent == ["ada@example.com"])
    ran = app.drain()  # run_scheduled=True: scheduled jobs run as if their time had come
    check("drain() then ran the scheduled job", ran == 1 and sent[-1] == "tomorrow@example.com")

    broken.enqueue()
    try:
        app.drain(raise_errors=True)
    except RuntimeError as exc:
        check("drain(raise_errors=True) re-raised the job's error", str(exc) == "boom")
    else:
        check("drain(raise_errors=True) re-raised the job's error", False)
    dead = app.admin.dead().entries
    check("the failed job is in the dead set all the same", [e.payload.name for e in dead] == ["t.broken"])


def crash_and_recover() -> None:
    """A worker 'crashes' just before completing a step; recovery makes the run finish."""
    print("fault injection:")
    backend = MemoryBackend()
    app = App(backend, testing="collect")
    ran: list[str] = []

    @app.job(name="t.step")
    def step(label: str) -> None:
        ran.append(label)

    run_id = Workflow(Chain(step.s("a"), step.s("b"))).run()
    backend.faults.inject("settle", "before")  # fail once, before the operation applies
    try:
        app.drain()
    except InjectedFault as exc:
        print(f"  drain stopped: {exc}")
    check("step a ran but was not completed", ran == ["a"] and app.status(run_id).counts() == {
        "running": 1, "pending": 1})
    check("the job is still in the worker's in-progress list", backend.workers_with_jobs() == ["drain"])
    check("recover() moved it back to its queue", backend.recover("drain") == 1)  # drain()'s worker id
    app.drain()
    check("the run succeeded after a redelivery", ran == ["a", "a", "b"]
          and app.status(run_id).status == "succeeded")


def main() -> int:
    """Run the three demonstrations; return the exit code."""
    inline_mode()
    collect_mode()
    crash_and_recover()
    print("testing modes OK" if not failures else f"testing modes FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
