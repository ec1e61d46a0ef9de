"""Small builders shared by the contract suites."""

from __future__ import annotations

from typing import Any

from sideline.core.jobs import Signature
from sideline.core.payload import Payload, encode
from sideline.core.run import RunPlan, RunState, Transition, start
from sideline.core.workflow import Step, compile


def payload(jid: str, queue: str = "default", **fields: Any) -> Payload:
    return Payload(name="job", jid=jid, queue=queue, created_at=1.0, **fields)


def sig(label: str, **options: Any) -> Signature:
    return Signature("job", (label,), **options)


def new_run(tree: Step, run_id: str = "run1", now: float = 100.0, ttl_s: int = 60,
            callbacks: bool = True) -> tuple[RunState, Transition]:
    graph = compile(tree)
    payloads = tuple(
        encode(payload(f"{run_id}.{n.id}", n.queue or "default", args=list(n.args),
                       run_id=run_id, node_id=n.id))
        for n in graph.nodes)
    on_success = encode(payload(f"{run_id}.success", "callbacks", args=[run_id]))
    on_failure = encode(payload(f"{run_id}.failure", "callbacks", args=[run_id]))
    plan = RunPlan(run_id, graph, payloads, on_success if callbacks else None,
                   on_failure if callbacks else None, ttl_s)
    return start(plan, now)
