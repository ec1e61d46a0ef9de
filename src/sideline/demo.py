"""The proof demo: workflows run on an embedded 4-thread worker, their order checked.

Used by `sideline demo` and by examples/proof.py. Each step sleeps a little so
the threads really overlap; a server middleware records when each workflow node
starts and ends, and the trace is checked against the compiled graph.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from sideline.core.verify import Event, order_violations
from sideline.core.workflow import Chain, Group, Step
from sideline.runtime.app import App
from sideline.runtime.middleware import JobContext
from sideline.runtime.workflows import RunInfo, Workflow

__all__ = ["DemoResult", "build_app", "run_demo"]

DemoResult = tuple[str, RunInfo, list[str]]
"""(workflow label, final status, order violations)."""


class _Trace:
    """Thread-safe per-run recorder of node start/end events."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: dict[str, list[Event]] = {}

    def middleware(self, context: JobContext, call_next: Callable[[], Any]) -> Any:
        run_id, node_id = context.payload.run_id, context.payload.node_id
        if run_id is None or node_id is None:
            return call_next()
        self._add(run_id, Event("start", node_id))
        result = call_next()
        self._add(run_id, Event("end", node_id))
        return result

    def _add(self, run_id: str, event: Event) -> None:
        with self.lock:
            self.events.setdefault(run_id, []).append(event)


def build_app() -> tuple[App, dict[str, Step], _Trace]:
    """The demo app, its two workflows, and the trace recorder installed as middleware."""
    app = App()
    trace = _Trace()
    app.server_middleware.append(trace.middleware)

    @app.job(name="demo.step")
    def step(label: str, sleep_ms: int) -> str:
        time.sleep(sleep_ms / 1000)
        return label

    def s(label: str) -> Any:
        return step.s(label, random.randint(5, 40))

    workflows: dict[str, Step] = {
        "Chain(T1, Group(T2, T3), T4)": Chain(s("T1"), Group(s("T2"), s("T3")), s("T4")),
        "Chain(A, Group(Chain(B1, B2, B3), Chain(C1, C2), D), E)": Chain(
            s("A"), Group(Chain(s("B1"), s("B2"), s("B3")), Chain(s("C1"), s("C2")), s("D")),
            s("E")),
    }
    return app, workflows, trace


def run_demo(concurrency: int = 4, timeout_s: float = 30.0) -> list[DemoResult]:
    """Run every demo workflow at once on one embedded worker; return their outcomes."""
    app, trees, trace = build_app()
    results: list[DemoResult] = []
    with app.worker(concurrency=concurrency, shutdown_timeout_s=5):
        started = [(label, Workflow(tree, app=app)) for label, tree in trees.items()]
        runs = [(label, wf, wf.run()) for label, wf in started]
        for label, wf, run_id in runs:
            info = app.wait(run_id, timeout_s)
            problems = order_violations(wf.graph, trace.events.get(run_id, []))
            if info.status != "succeeded":
                problems.append(f"run ended {info.status}, expected succeeded")
            results.append((label, info, problems))
    return results
