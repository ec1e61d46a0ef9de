"""Memory and Redis adapters driven side by side: after every step they must agree.

A RuleBasedStateMachine creates random workflow runs and then fetches, begins,
completes, fails, abandons (crash), recovers, retries dead jobs, cancels and moves
time, applying each step to every backend. After every step the invariant compares
what each backend stores: run states, queue contents, in-progress jobs and the
scheduled, retry and dead sets. A behaviour that differs is a bug in one adapter.

The fakeredis machine runs in every profile; the real-Redis one runs fewer steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from tests.support import fake_redis_backend, real_redis_backend

from sideline.adapters.memory import MemoryBackend
from sideline.core.jobs import Signature
from sideline.core.payload import Payload, decode, encode
from sideline.core.ports import Backend, Delivery
from sideline.core.run import RunPlan, start
from sideline.core.workflow import Dag, DagStep, WithDelay, compile

WORKER = "w1"
QUEUE = "default"


@st.composite
def random_dags(draw: st.DrawFn) -> Dag:
    """1-7 steps; each waits for a random subset of earlier ones; some delayed or allowed to fail."""
    dag = Dag()
    handles: list[DagStep] = []
    for index in range(draw(st.integers(1, 7))):
        after = draw(st.lists(st.sampled_from(handles), max_size=3, unique=True)) if handles else []
        sig = Signature("job", (f"n{index}",), allow_failure=draw(st.booleans().map(
            lambda b: b and draw(st.integers(0, 4)) == 0)))
        step: Any = sig
        if draw(st.integers(0, 5)) == 0:
            step = WithDelay(sig, draw(st.sampled_from([10, 2000])))
        handles.append(dag.add(step, after=after))
    return dag


def _plan(run_id: str, dag: Dag) -> RunPlan:
    graph = compile(dag)
    payloads = tuple(
        encode(Payload(name="job", jid=f"{run_id}.{n.id}", queue=QUEUE, args=list(n.args),
                       created_at=0.0, run_id=run_id, node_id=n.id))
        for n in graph.nodes)
    callbacks = [encode(Payload(name="cb", jid=f"{run_id}.{which}", queue="callbacks",
                                args=[run_id], created_at=0.0)) for which in ("success", "failure")]
    return RunPlan(run_id, graph, payloads, callbacks[0], callbacks[1], ttl_s=3600)


class Parity(RuleBasedStateMachine):
    """Drive a memory backend and a Redis-backed one with the same operations."""

    redis_kind = "fakeredis"
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self._contexts: list[Iterator[Any]] = []
        self.backends: list[Backend] = [MemoryBackend()]
        factory = fake_redis_backend if self.redis_kind == "fakeredis" else real_redis_backend
        context = factory()
        self._contexts.append(context)
        self.backends.append(next(context))
        self.now = 1000.0
        self.held: list[list[Delivery]] = [[] for _ in self.backends]
        self.run_ids: list[str] = []

    def teardown(self) -> None:
        for context in self._contexts:
            for _ in context:  # finish the generator: flush and close
                pass

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    @initialize()
    def start_clean(self) -> None:
        assert all(not b.queue_sizes() or not any(b.queue_sizes().values()) for b in self.backends)

    @precondition(lambda self: len(self.run_ids) < 3)
    @rule(target=runs, dag=random_dags())
    def create_run(self, dag: Dag) -> str:
        run_id = f"r{len(self.run_ids)}"
        self.run_ids.append(run_id)
        plan = _plan(run_id, dag)
        now = self.tick()
        for backend in self.backends:
            state, transition = start(plan, now)
            backend.create_run(state, transition, now)
        return run_id

    @rule()
    def fetch(self) -> None:
        fetched = [b.fetch_many(WORKER, [QUEUE, "callbacks"], 1) for b in self.backends]
        jids = [[decode(d.raw).jid for d in found] for found in fetched]
        assert all(j == jids[0] for j in jids), f"fetch order differs: {jids}"
        for held, found in zip(self.held, fetched, strict=True):
            held.extend(found)

    @rule(action=st.sampled_from(["complete", "complete", "complete", "fail"]))
    def fetch_and_settle(self, action: str) -> None:
        """The common path: take the next job and finish it at once."""
        self.fetch()
        if self.held[0]:
            self.settle(len(self.held[0]) - 1, action)

    @precondition(lambda self: bool(self.held[0]))
    @rule(index=st.integers(0, 10), action=st.sampled_from(["complete", "fail", "begin", "ack"]))
    def settle(self, index: int, action: str) -> None:
        index %= len(self.held[0])
        now = self.tick()
        outcomes = []
        for backend, held in zip(self.backends, self.held, strict=True):
            delivery = held[index] if action == "begin" else held.pop(index)
            payload = decode(delivery.raw)
            if payload.run_id is None or payload.node_id is None or action == "ack":
                backend.ack(WORKER, delivery)
                outcomes.append(None)
            elif action == "begin":
                outcomes.append(backend.begin_node(payload.run_id, payload.node_id, now))
            elif action == "complete":
                t = backend.complete_node(WORKER, delivery, payload.run_id, payload.node_id, now)
                outcomes.append((sorted(t.releases, key=lambda r: r.node_id), t.status,
                                 t.callback, t.finished))
            else:
                dead = attrs.evolve(payload, dead_reason="died")
                t = backend.fail_node(WORKER, delivery, dead, now)
                outcomes.append((sorted(t.releases, key=lambda r: r.node_id), t.status,
                                 t.callback, t.finished))
        assert all(o == outcomes[0] for o in outcomes), f"{action} differs: {outcomes}"

    @rule()
    def crash_and_recover(self) -> None:
        """The worker dies holding its jobs; recovery puts them back at the queue heads."""
        counts = [b.recover(WORKER) for b in self.backends]
        assert len(set(counts)) == 1, counts
        for held in self.held:
            held.clear()

    @rule(seconds=st.sampled_from([0.5, 5.0]))
    def move_time(self, seconds: float) -> None:
        self.now += seconds
        moved = [b.move_due(self.now) for b in self.backends]
        assert len(set(moved)) == 1, moved

    @rule(data=st.data())
    def retry_dead(self, data: st.DataObject) -> None:
        dead = self.backends[0].entries("dead")
        if not dead:
            return
        jid = data.draw(st.sampled_from(sorted(e.payload.jid for e in dead)))
        now = self.tick()
        results = [b.retry_dead(jid, now) for b in self.backends]
        assert len(set(results)) == 1, results

    @rule(run_id=runs)
    def cancel(self, run_id: str) -> None:
        now = self.tick()
        results = [b.cancel_run(run_id, now) for b in self.backends]
        assert len(set(results)) == 1, results

    @invariant()
    def backends_agree(self) -> None:
        views = [self._view(b) for b in self.backends]
        for view in views[1:]:
            assert view == views[0]

    def _view(self, backend: Backend) -> dict[str, Any]:
        runs = {}
        for run_id in self.run_ids:
            state = backend.get_run(run_id, self.now)
            if state is not None:
                runs[run_id] = (state.status, state.nodes, state.remaining,
                                 state.finished_at is None, state.failure_fired)
        return {
            "runs": runs,
            "queues": {q: [_ident(r) for r in backend.peek(q, 1000)] for q in (QUEUE, "callbacks")},
            "in_progress": sorted(_ident(r) for r in backend.in_progress(WORKER)),
            "sets": {kind: [(e.at, e.payload.jid, e.payload.dead_reason)
                            for e in backend.entries(kind, 1000)]
                     for kind in ("scheduled", "retry", "dead")},
        }


def _ident(raw: str) -> tuple[str, int, int | None]:
    payload = decode(raw)
    return payload.jid, payload.recoveries, payload.node_id


TestParityFakeRedis = Parity.TestCase
TestParityFakeRedis.settings = settings(stateful_step_count=30)


class RealRedisParity(Parity):
    redis_kind = "redis"


TestParityRealRedis = pytest.mark.redis(RealRedisParity.TestCase)
TestParityRealRedis.settings = settings(max_examples=15, stateful_step_count=20)
