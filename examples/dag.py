"""A Dag: a step that waits for two earlier steps, a WithDelay, and a success callback.

    fetch_users  --+
                   +--> WithDelay(merge, 200 ms) --> report
    fetch_orders --+

`merge` waits for both fetches (its barrier count is 2) and then starts 200 ms
(milliseconds) later. When every node succeeded, the `on_success` callback job is
pushed once, with the run id as its first argument.

Exits 0 when the order, the delay and the callback are right, 1 otherwise.
Run it with `python examples/dag.py`.
"""

from __future__ import annotations

import sys
import threading
import time

from sideline import App, Dag, WithDelay, Workflow

app = App()
_lock = threading.Lock()
times: dict[str, tuple[float, float]] = {}  # step -> (start, end), time.monotonic() seconds
callback_args: list[tuple[str, str]] = []
callback_ran = threading.Event()

MERGE_DELAY_MS = 200


@app.job(name="dag.step")
def step(label: str) -> None:
    """A step that takes about 30 ms and records when it ran."""
    started = time.monotonic()
    time.sleep(0.03)
    with _lock:
        times[label] = (started, time.monotonic())


@app.job(name="dag.finished")
def finished(run_id: str, note: str) -> None:
    """The success callback: receives the run id first, then its own arguments."""
    callback_args.append((run_id, note))
    callback_ran.set()


def build() -> Dag:
    """The workflow: two fetches, a delayed merge after both, then a report."""
    dag = Dag()
    users = dag.add(step.s("fetch_users"))
    orders = dag.add(step.s("fetch_orders"))
    merge = dag.add(WithDelay(step.s("merge"), delay=MERGE_DELAY_MS), after=[users, orders])
    dag.add(step.s("report"), after=[merge])
    return dag


def main() -> int:
    """Run the Dag on an embedded worker and check it; return the exit code."""
    workflow = Workflow(build(), on_success=finished.s("nightly import done"))
    print("compiled graph (ids are node indexes):")
    for node in workflow.graph.nodes:
        print(f"  node {node.id} {node.args[0]:<12} waits for {node.predecessors} "
              f"delay {node.delay_ms} ms -> {list(node.successors)}")

    with app.worker(concurrency=4):
        run_id = workflow.run()
        info = app.wait(run_id, timeout_s=10)
        callback_ran.wait(timeout=10)

    print(f"run {run_id}: {info.status}")
    ok = info.status == "succeeded" and len(times) == 4
    if ok:
        fetched = max(times["fetch_users"][1], times["fetch_orders"][1])
        gap_ms = (times["merge"][0] - fetched) * 1000
        print(f"merge started {gap_ms:.0f} ms after the last fetch ended "
              f"(asked for {MERGE_DELAY_MS} ms)")
        ok = gap_ms >= MERGE_DELAY_MS - 5 and times["report"][0] >= times["merge"][1]
    print(f"success callback called with {callback_args}")
    ok = ok and callback_args == [(run_id, "nightly import done")]
    print("dag OK" if ok else "dag FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
