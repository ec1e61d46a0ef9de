"""SettlePort contract: one Settlement applied atomically, the stats it counts, the next job."""

from __future__ import annotations

import datetime

import attrs
import pytest

from sideline.core.errors import RunExpired
from sideline.core.jobs import JobOptions
from sideline.core.payload import decode, encode
from sideline.core.ports import Backend, Delivery
from sideline.core.run import NodeError, NodeStatus, Release, RunStatus, RunSummary
from sideline.core.settlement import Action, NodeEvent, Outcome, Settlement, bury, decide
from sideline.core.workflow import Chain

from .helpers import new_run, payload, sig

NOW = datetime.datetime(2026, 11, 29, 23, 59, 30, tzinfo=datetime.UTC).timestamp()


def held(backend: Backend, queue: str = "default", worker: str = "w") -> Delivery:
    delivery = backend.fetch(worker, [queue], 0)
    assert delivery is not None
    return delivery


def push_and_fetch(backend: Backend, jid: str = "j1", **fields: object) -> Delivery:
    backend.push([payload(jid, **fields)])
    return held(backend)


def queued_jids(backend: Backend, queue: str = "default") -> list[str]:
    return [decode(raw).jid for raw in backend.peek(queue)]


def test_ack_of_a_plain_job_leaves_nothing(backend: Backend) -> None:
    delivery = push_and_fetch(backend)
    settled = backend.settle("w", delivery, Settlement(Action.ACK, decode(delivery.raw)), NOW)
    assert settled.transition.noop
    assert settled.next is None
    assert backend.in_progress("w") == []
    assert [backend.entries(kind) for kind in ("scheduled", "retry", "dead")] == [[], [], []]


def test_retry_lands_in_the_retry_set_at_retry_at_with_the_stored_payload(
        backend: Backend) -> None:
    delivery = push_and_fetch(backend, retry=3)
    settlement = decide(Outcome(error=ValueError("flaky")), decode(delivery.raw), JobOptions(),
                        NOW, 0.5)
    assert settlement.action is Action.RETRY
    assert settlement.retry_at is not None
    backend.settle("w", delivery, settlement, NOW)
    assert backend.in_progress("w") == []
    [entry] = backend.entries("retry")
    assert entry.at == settlement.retry_at
    assert entry.payload == settlement.payload
    assert (entry.payload.retry_count, entry.payload.error_class) == (1, "ValueError")


def test_bury_keeps_the_payload_in_the_dead_set(backend: Backend) -> None:
    delivery = push_and_fetch(backend)
    settlement = bury(decode(delivery.raw), ValueError("poison"), "poison pill", NOW)
    backend.settle("w", delivery, settlement, NOW)
    assert backend.in_progress("w") == []
    [entry] = backend.entries("dead")
    assert (entry.at, entry.payload) == (NOW, settlement.payload)
    assert entry.payload.dead_reason == "poison pill"


def test_bury_twice_keeps_both_under_distinct_keys(backend: Backend) -> None:
    for _ in range(2):
        delivery = push_and_fetch(backend)
        backend.settle("w", delivery, bury(decode(delivery.raw), ValueError("x"), "r", NOW), NOW)
    assert sorted(e.key for e in backend.entries("dead")) == ["j1", "j1~2"]


def test_bury_drops_the_payload_when_keep_dead_is_false(backend: Backend) -> None:
    delivery = push_and_fetch(backend, dead=False)
    settlement = bury(decode(delivery.raw), ValueError("poison"), "poison pill", NOW)
    assert not settlement.keep_dead
    backend.settle("w", delivery, settlement, NOW)
    assert backend.in_progress("w") == []
    assert backend.entries("dead") == []


def test_node_succeeded_releases_successors_and_returns_the_transition(
        backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")), now=NOW)
    backend.create_run(state, transition, NOW)
    delivery = held(backend)
    settlement = decide(Outcome(value=1), decode(delivery.raw), JobOptions(), NOW + 1, 0.0)
    assert settlement.node is NodeEvent.SUCCEEDED
    settled = backend.settle("w", delivery, settlement, NOW + 1)
    assert settled.transition.nodes == {0: NodeStatus.SUCCEEDED, 1: NodeStatus.QUEUED}
    assert settled.transition.releases == (Release(1, 0),)
    assert backend.in_progress("w") == []
    assert queued_jids(backend) == ["run1.1"]
    last = held(backend)
    final = backend.settle("w", last, decide(Outcome(), decode(last.raw), JobOptions(),
                                             NOW + 2, 0.0), NOW + 2)
    assert (final.transition.status, final.transition.callback) == (RunStatus.SUCCEEDED,
                                                                     "success")
    assert isinstance(backend.get_run("run1", NOW + 2), RunSummary)
    assert queued_jids(backend, "callbacks") == ["run1.success"]


def test_node_of_a_finished_run_is_acked_and_ignored(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A")), now=NOW)
    backend.create_run(state, transition, NOW)
    delivery = held(backend)
    settlement = decide(Outcome(), decode(delivery.raw), JobOptions(), NOW + 1, 0.0)
    backend.settle("w", delivery, settlement, NOW + 1)
    backend.push([decode(delivery.raw)])  # a late copy of the node
    late = held(backend)
    settled = backend.settle("w", late, settlement, NOW + 2)
    assert settled.transition.noop
    assert backend.in_progress("w") == []
    assert queued_jids(backend, "callbacks") == ["run1.success"]


def test_node_failed_fails_the_run_and_keeps_the_error(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")), now=NOW)
    backend.create_run(state, transition, NOW)
    delivery = held(backend)
    settlement = decide(Outcome(error=KeyError("gone")), attrs.evolve(
        decode(delivery.raw), retry=0), JobOptions(), NOW + 1, 0.0)
    assert (settlement.action, settlement.node) == (Action.BURY, NodeEvent.FAILED)
    settled = backend.settle("w", delivery, settlement, NOW + 1)
    assert settled.transition.status is RunStatus.FAILED
    assert settled.transition.callback == "failure"
    assert settled.transition.errors == {0: NodeError("KeyError", "'gone'")}
    stored = backend.get_run("run1", NOW + 1)
    assert stored is not None
    assert not isinstance(stored, RunSummary)
    assert stored.nodes == [NodeStatus.DEAD, NodeStatus.SKIPPED]
    assert stored.errors == {0: NodeError("KeyError", "'gone'")}
    assert [e.payload.jid for e in backend.entries("dead")] == ["run1.0"]
    assert queued_jids(backend, "callbacks") == ["run1.failure"]


def test_run_expired_applies_nothing(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A")), now=NOW, ttl_s=60)
    backend.create_run(state, transition, NOW)
    delivery = held(backend)
    backend.push([payload("other")])
    stored = decode(delivery.raw)
    settlement = Settlement(Action.ACK, attrs.evolve(stored, unique_key="u", unique_token="t"),
                            node=NodeEvent.SUCCEEDED, release_unique=True)
    token = backend.acquire_lock("u", 3600, NOW)
    assert token is not None
    settlement = attrs.evolve(settlement, payload=attrs.evolve(settlement.payload,
                                                               unique_token=token))
    with pytest.raises(RunExpired):
        backend.settle("w", delivery, settlement, NOW + 1000, fetch_from=["default"])
    assert backend.in_progress("w") == [delivery.raw]
    assert queued_jids(backend) == ["other"]
    assert backend.stats(["processed"]) == {"processed": 0}
    assert backend.acquire_lock("u", 3600, NOW) is None  # still held


def test_release_unique_frees_the_lock_only_for_its_token(backend: Backend) -> None:
    token = backend.acquire_lock("unique:job", 3600, NOW)
    assert token is not None
    for guess, freed in (("not-the-token", False), (token, True)):
        delivery = push_and_fetch(backend, unique_key="unique:job", unique_token=guess)
        settlement = decide(Outcome(), decode(delivery.raw), JobOptions(), NOW, 0.0)
        assert settlement.release_unique
        backend.settle("w", delivery, settlement, NOW)
        assert (backend.acquire_lock("unique:job", 3600, NOW) is not None) is freed


def test_counters_add_to_totals_and_to_minute_and_day_buckets(backend: Backend) -> None:
    later = NOW + 60  # the next minute, and the next day
    for now, processed, failed in ((NOW, 1, 0), (NOW, 1, 1), (later, 1, 1)):
        delivery = push_and_fetch(backend)
        settlement = Settlement(Action.ACK, decode(delivery.raw), processed=processed,
                                failed=failed)
        backend.settle("w", delivery, settlement, now)
    names = ["processed", "failed", "processed:2026-11-29T23:59", "failed:2026-11-29T23:59",
             "processed:2026-11-29", "failed:2026-11-29", "processed:2026-11-30T00:00",
             "failed:2026-11-30", "processed:2026-11-28", "nothing"]
    assert backend.stats(names) == {
        "processed": 3, "failed": 2, "processed:2026-11-29T23:59": 2,
        "failed:2026-11-29T23:59": 1, "processed:2026-11-29": 2, "failed:2026-11-29": 1,
        "processed:2026-11-30T00:00": 1, "failed:2026-11-30": 1, "processed:2026-11-28": 0,
        "nothing": 0}


def test_fetch_from_hands_back_exactly_one_job_and_leaves_the_rest(backend: Backend) -> None:
    delivery = push_and_fetch(backend, "first")
    backend.push([payload("high1", "high"), payload("high2", "high"), payload("low1")])
    settled = backend.settle("w", delivery, Settlement(Action.ACK, decode(delivery.raw)), NOW,
                             fetch_from=["empty", "high", "default"])
    assert settled.next is not None
    assert (decode(settled.next.raw).jid, settled.next.queue) == ("high1", "high")
    assert not settled.next.prefetched
    assert backend.in_progress("w") == [settled.next.raw]
    assert queued_jids(backend, "high") == ["high2"]
    assert queued_jids(backend) == ["low1"]
    # the fetched job is held like any other: recovery finds it
    assert backend.recover("w") == 1
    assert queued_jids(backend, "high") == ["high1", "high2"]


def test_fetch_from_empty_queues_returns_no_job(backend: Backend) -> None:
    delivery = push_and_fetch(backend)
    settled = backend.settle("w", delivery, Settlement(Action.ACK, decode(delivery.raw)), NOW,
                             fetch_from=["default", "other"])
    assert settled.next is None


def test_settle_acks_the_exact_text_fetched(backend: Backend) -> None:
    # A payload whose stored text differs from a re-encoding (extra spaces) is still acked.
    raw = encode(payload("j1")).replace(",", ", ")
    backend.push_raw("default", raw)  # type: ignore[attr-defined]
    delivery = held(backend)
    backend.settle("w", delivery, Settlement(Action.ACK, decode(delivery.raw)), NOW)
    assert backend.in_progress("w") == []
