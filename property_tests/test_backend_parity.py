"""Memory and Redis adapters driven side by side: after every step they must agree.

A RuleBasedStateMachine creates random workflow runs and then fetches, begins,
completes, fails, settles with random Settlements (the settle port), retries later,
requeues (held and no longer held deliveries), abandons (crash), recovers, retries
dead jobs, cancels (with scheduled and retry entries present, callbacks' too),
extends a run's TTL, writes run memory, completes nodes of finished runs and moves
time past expiries, applying each step to every backend. After every step the
invariant compares what each backend stores: run states or summaries (and which runs
expired), run memory, queue contents, in-progress jobs, the scheduled, retry and dead
sets and the stats counters. A behaviour that differs is a bug in one adapter.

The fakeredis machine runs in every profile; the real-Redis one runs fewer steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from sideline.core.errors import SidelineError
from sideline.core.jobs import Signature
from sideline.core.payload import Payload, decode, encode
from sideline.core.ports import Backend, Delivery, Settled
from sideline.core.run import NodeStatus, RunPlan, RunSummary, Transition, start
from sideline.core.settlement import Action, NodeEvent, Settlement, stat_buckets
from sideline.core.workflow import Dag, DagStep, WithDelay, compile

WORKER = "w1"
QUEUE = "default"
SUCCEEDED, DEAD = NodeStatus.SUCCEEDED, NodeStatus.DEAD


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


def _plan(run_id: str, dag: Dag, ttl_s: int = 3600, finished_ttl_s: int = 3600,
          keep_memory: bool = False) -> RunPlan:
    graph = compile(dag)
    payloads = tuple(
        encode(Payload(name="job", jid=f"{run_id}.{n.id}", queue=QUEUE, args=list(n.args),
                       created_at=0.0, run_id=run_id, node_id=n.id))
        for n in graph.nodes)
    callbacks = [encode(Payload(name="cb", jid=f"{run_id}.{which}", queue="callbacks",
                                args=[run_id], created_at=0.0)) for which in ("success", "failure")]
    return RunPlan(run_id, graph, payloads, callbacks[0], callbacks[1], ttl_s=ttl_s,
                   finished_ttl_s=finished_ttl_s, keep_memory=keep_memory)


_SETTLEMENT_CHOICES = st.fixed_dictionaries({
    "action": st.sampled_from(list(Action)),
    "node": st.sampled_from([None, NodeEvent.SUCCEEDED, NodeEvent.FAILED]),
    "keep_dead": st.booleans(), "counts": st.sampled_from([(1, 0), (1, 1), (0, 0)]),
    "unique": st.sampled_from([None, "right", "wrong"]),
    "fetch_from": st.sampled_from([(), (QUEUE,), ("callbacks", QUEUE)])})
"""A random Settlement's choices, as settle_port takes them."""


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
        self.stale: list[list[Delivery]] = [[] for _ in self.backends]
        """Deliveries no longer held (settled, requeued or recovered), per backend."""
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
    @rule(target=runs, dag=random_dags(), ttl_s=st.sampled_from([20, 3600]),
          finished_ttl_s=st.sampled_from([10, 3600]), keep_memory=st.booleans())
    def create_run(self, dag: Dag, ttl_s: int, finished_ttl_s: int, keep_memory: bool) -> str:
        run_id = f"r{len(self.run_ids)}"
        self.run_ids.append(run_id)
        plan = _plan(run_id, dag, ttl_s, finished_ttl_s, keep_memory)
        now = self.tick()
        for backend in self.backends:
            state, transition = start(plan, now)
            backend.create_run(state, transition, now)
        return run_id

    @rule(callbacks_first=st.booleans())
    def fetch(self, callbacks_first: bool = False) -> None:
        queues = ["callbacks", QUEUE] if callbacks_first else [QUEUE, "callbacks"]
        fetched = [b.fetch_many(WORKER, queues, 1) for b in self.backends]
        jids = [[decode(d.raw).jid for d in found] for found in fetched]
        assert all(j == jids[0] for j in jids), f"fetch order differs: {jids}"
        for held, found in zip(self.held, fetched, strict=True):
            held.extend(found)

    @rule(action=st.sampled_from(["complete", "fail"]))
    def fetch_and_settle(self, action: str) -> None:
        """The common path: take the next job and finish it at once."""
        self.fetch()
        if self.held[0]:
            self.settle(len(self.held[0]) - 1, action)

    @precondition(lambda self: bool(self.held[0]))
    @rule(index=st.integers(0, 10), action=st.sampled_from(["complete", "fail", "begin", "ack"]))
    def settle(self, index: int, action: str) -> None:
        """Settle a held job as a worker would: a begin that says skip acks it, a run whose
        state is gone (RunExpired) buries it."""
        index %= len(self.held[0])
        now = self.tick()
        outcomes = []
        for backend, held, stale in zip(self.backends, self.held, self.stale, strict=True):
            delivery = held[index]
            outcome = _outcome(_settle, backend, delivery, action, now)
            if outcome == "RunExpired":
                backend.kill(WORKER, delivery, decode(delivery.raw), now)
            elif outcome == "run":
                continue  # begun: still held
            elif outcome == "skip":
                backend.ack(WORKER, delivery)
            stale.append(held.pop(index))
            outcomes.append(outcome)
        assert all(o == outcomes[0] for o in outcomes), f"{action} differs: {outcomes}"

    @rule(callbacks_first=st.booleans(), choices=_SETTLEMENT_CHOICES)
    def fetch_and_settle_port(self, callbacks_first: bool, choices: dict[str, Any]) -> None:
        """The common path through the settle port: take the next job and settle it at once."""
        self.fetch(callbacks_first)
        if self.held[0]:
            self.settle_port(index=len(self.held[0]) - 1, **choices)

    @precondition(lambda self: bool(self.held[0]))
    @rule(index=st.integers(0, 10), choices=_SETTLEMENT_CHOICES)
    def settle_port_held(self, index: int, choices: dict[str, Any]) -> None:
        """Settle any held job (not only the newest) through the settle port."""
        self.settle_port(index=index, **choices)

    def settle_port(self, *, index: int, action: Action, node: NodeEvent | None, keep_dead: bool,
                    counts: tuple[int, int], unique: str | None,
                    fetch_from: tuple[str, ...]) -> None:
        """Settle a held job with a random Settlement through the one atomic port; a run whose
        state is gone (RunExpired) leaves it held, and it is buried as a worker would."""
        index %= len(self.held[0])
        now = self.tick()
        outcomes, locks = [], []
        for backend, held, stale in zip(self.backends, self.held, self.stale, strict=True):
            delivery = held[index]
            payload = decode(delivery.raw)
            token = None if unique is None else backend.acquire_lock("u", 60, now)
            if token is not None:
                payload = attrs.evolve(payload, unique_key="u",
                                       unique_token=token if unique == "right" else "wrong")
            settlement = Settlement(
                action, attrs.evolve(payload, error_class="Boom", error_message="broke"),
                retry_at=now + 3.0 if action is Action.RETRY else None,
                reason="died" if action is Action.BURY else None, keep_dead=keep_dead,
                node=node if payload.node_id is not None else None,
                processed=counts[0], failed=counts[1], release_unique=unique is not None)
            settled = _outcome(backend.settle, WORKER, delivery, settlement, now,
                               list(fetch_from))
            if token is not None:
                locks.append(backend.release_lock("u", token))
            if isinstance(settled, Settled):
                stale.append(held.pop(index))
                if settled.next is not None:
                    held.append(settled.next)
                outcomes.append((_brief(settled.transition), settled.next and _ident(
                    settled.next.raw)))
            else:
                backend.kill(WORKER, delivery, decode(delivery.raw), now)
                stale.append(held.pop(index))
                outcomes.append(settled)
        assert all(o == outcomes[0] for o in outcomes), f"settle differs: {outcomes}"
        assert len(set(locks)) <= 1, f"unique lock release differs: {locks}"

    @rule()
    def crash_and_recover(self) -> None:
        """The worker dies holding its jobs; recovery puts them back at the queue heads."""
        counts = [b.recover(WORKER) for b in self.backends]
        assert len(set(counts)) == 1, counts
        for held, stale in zip(self.held, self.stale, strict=True):
            stale.extend(held)
            held.clear()

    @rule(callbacks_first=st.sampled_from([True, True, False]),
          delay_s=st.sampled_from([3.0, 30.0]))
    def fetch_and_retry_later(self, callbacks_first: bool, delay_s: float) -> None:
        """A job (a callback, when its queue is fetched first) fails and waits to retry."""
        self.fetch(callbacks_first)
        if self.held[0]:
            self.retry_later(len(self.held[0]) - 1, delay_s)

    @precondition(lambda self: bool(self.held[0]))
    @rule(index=st.integers(0, 10), delay_s=st.sampled_from([0.5, 3.0, 30.0]))
    def retry_later(self, index: int, delay_s: float) -> None:
        """A job failed and waits in the retry set (a node stays running; a callback too)."""
        index %= len(self.held[0])
        at = self.tick() + delay_s
        for backend, held, stale in zip(self.backends, self.held, self.stale, strict=True):
            delivery = held.pop(index)
            stale.append(delivery)
            payload = decode(delivery.raw)
            retry = attrs.evolve(payload, retry_count=payload.retry_count + 1,
                                 error_class="Flaky", error_message="try again")
            backend.retry_later(WORKER, delivery, retry, at)

    @precondition(lambda self: bool(self.held[0]))
    @rule(index=st.integers(0, 10))
    def requeue(self, index: int) -> None:
        """Graceful shutdown: a held job goes back to the head of its queue."""
        index %= len(self.held[0])
        results = []
        for backend, held, stale in zip(self.backends, self.held, self.stale, strict=True):
            delivery = held.pop(index)
            stale.append(delivery)
            results.append(backend.requeue(WORKER, delivery))
        assert results == [True] * len(self.backends), results

    @precondition(lambda self: bool(self.stale[0]))
    @rule(index=st.integers(0, 10))
    def requeue_not_held(self, index: int) -> None:
        """Requeueing a delivery that was settled or recovered meanwhile (unless an identical
        copy is held again): nothing is pushed, both say so."""
        index %= len(self.stale[0])
        results = [b.requeue(WORKER, stale[index])
                   for b, stale in zip(self.backends, self.stale, strict=True)]
        assert len(set(results)) == 1, f"requeue of a stale delivery differs: {results}"
        if results[0]:  # an identical copy was held: it left the held list
            for held, stale in zip(self.held, self.stale, strict=True):
                held.remove(stale[index])

    @rule(run_id=runs, ttl_s=st.sampled_from([5, 60, 3600]))
    def extend_run_ttl(self, run_id: str, ttl_s: int) -> None:
        now = self.tick()
        results = [b.extend_run_ttl(run_id, ttl_s, now) for b in self.backends]
        assert len(set(results)) == 1, results

    @rule(run_id=runs, value=st.integers(0, 9))
    def write_memory(self, run_id: str, value: int) -> None:
        """A step writes its output to run memory (cleared when the run is compacted)."""
        now = self.tick()
        for backend in self.backends:
            backend.write(run_id, {"out": value}, 1_000_000, now)

    @rule(run_id=runs, node=st.integers(0, 6), begin=st.booleans())
    def late_copy_of_a_finished_run(self, run_id: str, node: int, begin: bool) -> None:
        """A stray copy of a node of a finished run (compacted, or failed and lingering) is
        fetched again, or completes: skipped and acked, never an error."""
        found = self.backends[0].get_run(run_id, self.now)
        if isinstance(found, RunSummary):
            candidates = list(range(sum(found.counts.values())))
        elif found is not None and found.finished_at is not None:
            candidates = [i for i, s in enumerate(found.nodes) if s in (SUCCEEDED, DEAD)]
        else:
            return
        if not candidates:
            return
        node = candidates[node % len(candidates)]
        now = self.tick()
        late = Delivery("late copy", QUEUE)
        call = "begin_node" if begin else "complete_late"
        outcomes = [_outcome(_late, b, call, (late, run_id, node, now)) for b in self.backends]
        assert all(o == outcomes[0] for o in outcomes), f"late copy differs: {outcomes}"

    @rule(seconds=st.sampled_from([0.5, 5.0, 5.0, 12.0, 25.0]))
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
        results = [_outcome(b.cancel_run, run_id, now) for b in self.backends]
        assert len(set(results)) == 1, results

    def _runs_waiting(self) -> list[str]:
        """Runs with a job (a node's or a callback's) in the scheduled or retry set."""
        waiting = {e.payload.jid.split(".")[0] for kind in ("scheduled", "retry")
                   for e in self.backends[0].entries(kind, 1000)}
        return [run_id for run_id in self.run_ids if run_id in waiting]

    @precondition(lambda self: bool(self._runs_waiting()))
    @rule(data=st.data())
    def cancel_with_waiting_entries(self, data: st.DataObject) -> None:
        """Cancel a run while jobs of it wait: its nodes' entries go, its callbacks' stay."""
        self.cancel(data.draw(st.sampled_from(self._runs_waiting())))

    @invariant()
    def backends_agree(self) -> None:
        views = [self._view(b) for b in self.backends]
        for view in views[1:]:
            assert view == views[0]

    def _view(self, backend: Backend) -> dict[str, Any]:
        runs: dict[str, Any] = {}
        for run_id in self.run_ids:
            state = backend.get_run(run_id, self.now)
            if isinstance(state, RunSummary):
                runs[run_id] = state
            elif state is not None:
                runs[run_id] = (state.status, state.nodes, state.remaining, state.finished_at,
                                state.updated_at, state.failure_fired, state.errors,
                                state.started_at, state.ended_at, state.attempts)
        listed = backend.recent_runs(0, 10, self.now)  # the runs index, newest first
        return {
            "runs": runs,
            "index": [r.run_id if isinstance(r, RunSummary) else r.plan.run_id for r in listed],
            "memory": {run_id: backend.read(run_id, None, self.now) for run_id in self.run_ids},
            "queues": {q: [_ident(r) for r in backend.peek(q, 1000)] for q in (QUEUE, "callbacks")},
            "in_progress": sorted(_ident(r) for r in backend.in_progress(WORKER)),
            "sets": {kind: [(e.at, e.key, e.payload.jid, e.payload.dead_reason)
                            for e in backend.entries(kind, 1000)]
                     for kind in ("scheduled", "retry", "dead")},
            "stats": backend.stats([f"{name}{bucket}" for name in ("processed", "failed")
                                    for bucket in ("", *(f":{b}" for b in stat_buckets(
                                        self.now)))]),
        }


def _settle(backend: Backend, delivery: Delivery, action: str, now: float) -> Any:
    payload = decode(delivery.raw)
    if payload.run_id is None or payload.node_id is None or action == "ack":
        backend.ack(WORKER, delivery)
        return None
    if action == "begin":
        return str(backend.begin_node(payload.run_id, payload.node_id, now))
    if action == "complete":
        return _brief(backend.complete_node(WORKER, delivery, payload.run_id, payload.node_id,
                                            now))
    dead = attrs.evolve(payload, dead_reason="died", error_class="Boom",
                        error_message=f"{payload.jid} broke")
    return _brief(backend.fail_node(WORKER, delivery, dead, now))


def _late(backend: Backend, call: str, args: tuple[Delivery, str, int, float]) -> Any:
    late, run_id, node, now = args
    if call == "begin_node":
        return str(backend.begin_node(run_id, node, now))
    return _brief(backend.complete_node(WORKER, late, run_id, node, now))


def _brief(t: Transition) -> Any:
    return (sorted(t.releases, key=lambda r: r.node_id), t.status, t.callback, t.finished,
            t.compacts, t.errors)


def _outcome(call: Callable[..., Any], *args: Any) -> Any:
    """What a call returned, or the name of the sideline error it raised."""
    try:
        return call(*args)
    except SidelineError as exc:
        return type(exc).__name__


def _ident(raw: str) -> tuple[str, int, int | None]:
    payload = decode(raw)
    return payload.jid, payload.recoveries, payload.node_id


TestParityFakeRedis = Parity.TestCase
# at most 120 examples (the ci profile's 200 took about 36 s; the suite should stay near
# 10 minutes)
TestParityFakeRedis.settings = settings(stateful_step_count=50,
                                        max_examples=min(120, settings().max_examples))


class RealRedisParity(Parity):
    redis_kind = "redis"


TestParityRealRedis = pytest.mark.redis(RealRedisParity.TestCase)
TestParityRealRedis.settings = settings(max_examples=15, stateful_step_count=20)


# -- divergences the machine catches, pinned as plain tests (each failed before the fix) ----

def _one_step_run(machine: Parity) -> str:
    dag = Dag()
    dag.add(Signature("job", ("n0",)))
    return machine.create_run(dag, ttl_s=3600, finished_ttl_s=3600, keep_memory=False)


def test_cancel_keeps_a_failure_callback_waiting_to_retry() -> None:
    # Redis removed every retry entry whose jid started with "<run_id>.", callbacks too.
    machine = Parity()
    try:
        run_id = _one_step_run(machine)
        machine.fetch_and_settle("fail")  # the run fails: its failure callback is pushed
        machine.fetch_and_retry_later(callbacks_first=True, delay_s=30.0)  # ... and fails once
        machine.cancel(run_id)
        machine.backends_agree()
        assert [e.payload.jid for e in machine.backends[1].entries("retry")] == [
            f"{run_id}.failure"]
    finally:
        machine.teardown()


def test_requeue_of_a_delivery_no_longer_held_pushes_nothing() -> None:
    # The memory backend pushed it again (a second copy of a settled job).
    machine = Parity()
    try:
        _one_step_run(machine)
        machine.fetch_and_settle("complete")
        machine.requeue_not_held(0)
        machine.backends_agree()
        assert machine.backends[0].peek(QUEUE) == []
    finally:
        machine.teardown()


def test_an_advance_does_not_undo_extend_run_ttl() -> None:
    # Both adapters reset the expiry to now + ttl_s on every advance.
    machine = Parity()
    try:
        dag = Dag()
        first = dag.add(Signature("job", ("n0",)))
        dag.add(Signature("job", ("n1",)))
        dag.add(Signature("job", ("n2",)), after=[first])
        run_id = machine.create_run(dag, ttl_s=20, finished_ttl_s=3600, keep_memory=False)
        machine.extend_run_ttl(run_id, 3600)
        machine.fetch_and_settle("complete")
        machine.move_time(25.0)
        machine.backends_agree()
        assert all(b.get_run(run_id, machine.now) is not None for b in machine.backends)
    finally:
        machine.teardown()
