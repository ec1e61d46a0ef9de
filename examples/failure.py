"""Failure is visible, and a dead step retried by hand resumes its run.

    Chain(extract, transform, Group(load-a, load-b))

`transform` has retries disabled and dies on its first try (a bug). The run turns
`failed`, the steps after it are `skipped`, and the run's `on_failure` callback runs
exactly once. After the "fix", the dead job is retried from the dead set with
`app.admin.retry_now("dead", keys)`: the node is revived, the skipped steps run, the run
turns `succeeded` and its `on_success` callback runs. A succeeded run is compacted to a
summary: its per-node states are gone, its node counts remain.

Exits 0 when all of that happened, 1 otherwise. Run it with `python examples/failure.py`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from sideline import App, Chain, Group, Workflow

logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

app = App()
bug_fixed = threading.Event()
callbacks: list[str] = []
_lock = threading.Lock()


@app.job(name="etl.step")
def step(label: str) -> None:
    """An ordinary step."""
    time.sleep(0.01)


@app.job(name="etl.transform", retry=False)  # no retries: the first failure is a death
def transform() -> None:
    """A step with a bug, until `bug_fixed` is set."""
    if not bug_fixed.is_set():
        raise KeyError("customer_id")


@app.job(name="etl.on_failure")
def on_failure(run_id: str) -> None:
    """The failure callback: called once, with the run id first."""
    with _lock:
        callbacks.append(f"failure {run_id}")


@app.job(name="etl.on_success")
def on_success(run_id: str) -> None:
    """The success callback."""
    with _lock:
        callbacks.append(f"success {run_id}")


def wait_for_callbacks(count: int, timeout_s: float) -> None:
    """Callbacks are ordinary jobs pushed when the run settles; wait until `count` ran."""
    deadline = time.monotonic() + timeout_s
    while len(callbacks) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def show(title: str, workflow: Workflow, run_id: str) -> tuple[dict[str, str], dict[str, int]]:
    """Print the run's status; return {step label: node status} and the node counts.

    A run that succeeded (or was cancelled) is compacted: it has no per-node states any
    more (the labels dict is empty), only its node counts and its dead nodes.
    """
    info = app.status(run_id)
    print(f"{title}: run {info.status}")
    states = {}
    for node in info.nodes:
        args = workflow.graph.nodes[node.id].args  # the compiled graph keeps each node's arguments
        label = str(args[0]) if args else node.job
        states[label] = str(node.status)
        print(f"  node {node.id} {label:<14} {node.status}")
    if info.compacted:
        print(f"  compacted: node counts {info.counts()}")
    return states, info.counts()


def main() -> int:
    """Fail a run, retry its dead step by hand, and check both outcomes; return the exit code."""
    tree = Chain(step.s("extract"), transform.s(), Group(step.s("load-a"), step.s("load-b")))
    workflow = Workflow(tree, on_success=on_success.s(), on_failure=on_failure.s())
    with app.worker(concurrency=4):
        run_id = workflow.run()
        failed = app.wait(run_id, timeout_s=10)
        wait_for_callbacks(1, timeout_s=5)
        before, _ = show("after the bug", workflow, run_id)
        print(f"  callbacks so far: {callbacks}")

        dead = [e for e in app.admin.dead(per_page=100).entries if e.payload.run_id == run_id]
        for entry in dead:
            print(f"  dead: key={entry.key} {entry.payload.name}: {entry.payload.dead_reason}")

        bug_fixed.set()  # "deploy the fix", then retry the dead job by hand
        revived = app.admin.retry_now("dead", [e.key for e in dead]) == len(dead)
        resumed = app.wait(run_id, timeout_s=10)
        wait_for_callbacks(2, timeout_s=5)
        _, after = show("after retry_now", workflow, run_id)

    print(f"callbacks: {callbacks}")
    ok = (failed.status == "failed"
          and before == {"extract": "succeeded", "etl.transform": "dead", "load-a": "skipped",
                         "load-b": "skipped"}
          and len(dead) == 1 and revived and resumed.status == "succeeded"
          and after == {"succeeded": len(workflow.graph.nodes)}
          and callbacks == [f"failure {run_id}", f"success {run_id}"])
    print("failure OK" if ok else "failure FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
