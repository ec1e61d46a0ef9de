"""Quickstart: declare jobs, enqueue them, run an embedded worker, run a small workflow.

Everything runs in this one process on the embedded in-memory backend.
Exits 0 when every job ran and the workflow succeeded, 1 otherwise.
Run it with `python examples/quickstart.py`.
"""

from __future__ import annotations

import sys
import threading

from sideline import App, Chain, Group, Workflow

app = App()  # no backend given: the embedded, thread-safe MemoryBackend

done: list[str] = []
_lock = threading.Lock()
all_plain_jobs_ran = threading.Event()


def note(what: str) -> None:
    """Remember that something ran (jobs run on worker threads, hence the lock)."""
    with _lock:
        done.append(what)
        if {"add", "report", "bulk 1", "bulk 2", "bulk 3"} <= set(done):
            all_plain_jobs_ran.set()


# A job is a function...  Give it an explicit name: the name is what the payload
# carries and what the worker looks up in its registry of declared jobs.
@app.job(name="quickstart.add")
def add(x: int, y: int) -> int:
    """Add two numbers (the return value is not stored: sideline has no result backend)."""
    note("add")
    return x + y


# ...or a class with perform(); a fresh instance performs each execution.
@app.job(name="quickstart.report", queue="reports", retry=3)
class Report:
    """Build a report."""

    def perform(self, period: str) -> None:
        note("report")


@app.job(name="quickstart.bulk")
def bulk(n: int) -> None:
    """One of many small jobs pushed together."""
    note(f"bulk {n}")


@app.job(name="quickstart.step")
def step(label: str) -> None:
    """A workflow step."""
    note(f"step {label}")


def main() -> int:
    """Push jobs, run them on an embedded worker, run a workflow; return the exit code."""
    # Calling a job runs it here and now, like a plain function.
    if add(1, 2) != 3:
        return 1
    done.clear()

    # A worker with 4 threads serving two queues, "default" first (strict order).
    with app.worker(concurrency=4, queues=["default", "reports"]):
        jid = add.enqueue(2, 3)  # now; returns the job id
        Report.enqueue_in(0.2, "weekly")  # 0.2 seconds from now (enqueue_at takes epoch seconds)
        bulk.enqueue_bulk([[1], [2], [3]])  # one backend call, one job per argument list
        print(f"pushed add as jid {jid}")

        workflow = Workflow(Chain(step.s("fetch"), Group(step.s("resize-a"), step.s("resize-b")),
                                  step.s("publish")))
        run_id = workflow.run()
        info = app.wait(run_id, timeout_s=10)  # blocks until the run finished
        # A succeeded run is compacted: its node counts remain, per-node states are gone.
        print(f"workflow run {run_id}: {info.status} {info.counts()}")
        for node in workflow.graph.nodes:  # the compiled graph: each node's job and successors
            print(f"  node {node.id} {node.job} -> {list(node.successors)}")
        plain_ok = all_plain_jobs_ran.wait(timeout=10)

    print("ran:", ", ".join(done))
    steps = [d for d in done if d.startswith("step ")]
    ok = (plain_ok and info.status == "succeeded" and steps[0] == "step fetch"
          and steps[-1] == "step publish")
    print("quickstart OK" if ok else "quickstart FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
