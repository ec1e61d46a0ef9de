"""Proof: workflow steps run in dependency order on an embedded worker with 4 threads.

Two workflows run at the same time on one worker:

    Chain(T1, Group(T2, T3), T4)
    Chain(A, Group(Chain(B1, B2, B3), Chain(C1, C2), D), E)

Every step sleeps 5-40 ms so the threads really overlap. A server middleware
records when each workflow node starts and ends; the trace of each run is then
checked against the run's compiled graph with `sideline.core.verify.order_violations`
(every node ran exactly once, and no node started before all its predecessors ended).

Exits 0 when both runs succeeded in a valid order, 1 otherwise.
Run it with `python examples/proof.py`.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from sideline import App, Chain, Group, JobContext, Signature, Workflow
from sideline.core.verify import Event, order_violations

app = App()  # the embedded in-memory backend

_lock = threading.Lock()
traces: dict[str, list[Event]] = {}  # run id -> start/end events in the order they happened


def record_order(context: JobContext, call_next: Callable[[], Any]) -> Any:
    """Server middleware: note the start and end of every workflow node it wraps."""
    run_id, node_id = context.payload.run_id, context.payload.node_id
    if run_id is None or node_id is None:  # not a workflow step
        return call_next()
    with _lock:
        traces.setdefault(run_id, []).append(Event("start", node_id))
    result = call_next()  # only a step that succeeded gets an "end"
    with _lock:
        traces[run_id].append(Event("end", node_id))
    return result


app.server_middleware.append(record_order)


@app.job(name="proof.step")
def step(label: str, sleep_ms: int) -> str:
    """A step that takes `sleep_ms` milliseconds."""
    time.sleep(sleep_ms / 1000)
    return label


def s(label: str) -> Signature:
    """A signature of `step` sleeping a random 5-40 ms."""
    return step.s(label, random.randint(5, 40))


WORKFLOWS = {
    "Chain(T1, Group(T2, T3), T4)": Chain(s("T1"), Group(s("T2"), s("T3")), s("T4")),
    "Chain(A, Group(Chain(B1, B2, B3), Chain(C1, C2), D), E)": Chain(
        s("A"), Group(Chain(s("B1"), s("B2"), s("B3")), Chain(s("C1"), s("C2")), s("D")), s("E")),
}


def peak_parallelism(trace: list[Event]) -> int:
    """The largest number of nodes of one run that were running at the same moment."""
    running = peak = 0
    for event in trace:
        running += 1 if event.kind == "start" else -1
        peak = max(peak, running)
    return peak


def main() -> int:
    """Run both workflows on one 4-thread worker; return 0 if every order was respected."""
    failed = False
    with app.worker(concurrency=4):
        started = [(label, Workflow(tree)) for label, tree in WORKFLOWS.items()]
        runs = [(label, workflow, workflow.run()) for label, workflow in started]
        for label, workflow, run_id in runs:
            info = app.wait(run_id, timeout_s=20)
            trace = traces.get(run_id, [])
            labels = {node.id: node.args[0] for node in workflow.graph.nodes}
            print(f"{label}\n  run {run_id}: {info.status}")
            print("  order: " + " ".join(f"{e.kind}:{labels[e.node_id]}" for e in trace))
            print(f"  peak parallel steps: {peak_parallelism(trace)}")
            # A succeeded run is compacted to its summary: node counts, no per-node states.
            print(f"  node counts: {info.counts()}")
            for node in workflow.graph.nodes:  # the compiled graph keeps the structure
                print(f"  node {node.id:>2} {labels[node.id]:<3} "
                      f"then -> {[labels[i] for i in node.successors]}")
            problems = order_violations(workflow.graph, trace)
            if info.status != "succeeded":
                problems.append(f"run ended {info.status}, expected succeeded")
            if info.counts() != {"succeeded": len(workflow.graph.nodes)}:
                problems.append(f"node counts {info.counts()}, expected every node succeeded")
            for problem in problems:
                print(f"  VIOLATION: {problem}")
            failed = failed or bool(problems)
            # The checker itself must not be vacuous: the same trace backwards is invalid.
            if not order_violations(workflow.graph, trace[::-1]):
                print("  VIOLATION: order_violations accepted a reversed trace")
                failed = True
    print("ORDER VIOLATED" if failed else "order respected in every run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
