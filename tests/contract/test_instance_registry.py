"""InstanceRegistry contract: heartbeats, recovery of a dead worker's jobs, named locks."""

from __future__ import annotations

import time

from sideline.core.payload import decode
from sideline.core.ports import Backend

from .helpers import payload


def test_heartbeat_registers_the_worker_until_its_ttl(backend: Backend) -> None:
    backend.heartbeat("w1", {"host": "h", "pid": "1"}, 15.0, 100.0)
    for now in (105.0, 110.0):  # the registry never falls silent for more than ttl / 2
        backend.heartbeat("w2", {"host": "h", "pid": "2"}, 15.0, now)
    listed = {w.worker_id: w for w in backend.workers(120.0)}
    assert (listed["w1"].alive, listed["w2"].alive) == (False, True)
    assert listed["w2"].info == {"host": "h", "pid": "2"}
    assert listed["w2"].expires_at == 125.0
    backend.forget_worker("w1")
    assert [w.worker_id for w in backend.workers(120.0)] == ["w2"]


def test_heartbeat_info_fields_merge(backend: Backend) -> None:
    backend.heartbeat("w1", {"host": "h", "pid": "1"}, 15.0, 100.0)
    backend.heartbeat("w1", {}, 15.0, 101.0)
    backend.heartbeat("w1", {"busy": "2"}, 15.0, 102.0)
    assert backend.workers(103.0)[0].info == {"host": "h", "pid": "1", "busy": "2"}


def test_a_silence_of_the_whole_registry_is_not_held_against_anyone(backend: Backend) -> None:
    """The outage rule: after 20 s in which no heartbeat arrived (Redis was unreachable),
    the workers alive when the silence began get those 20 s back; one already dead does not."""
    backend.heartbeat("gone", {}, 15.0, 80.0)       # its last beat: dead since 95
    for now in (86.0, 92.0, 98.0):
        backend.heartbeat("w1", {}, 15.0, now)      # alive until 113 ...
    backend.heartbeat("w2", {}, 15.0, 100.0)        # ... and 115; then the outage
    backend.heartbeat("w2", {}, 15.0, 120.0)        # back: the first beat after 20 s
    listed = {w.worker_id: w for w in backend.workers(120.0)}
    assert listed["w1"].alive
    assert listed["w1"].expires_at == 133.0
    assert listed["w2"].expires_at == 135.0
    assert not listed["gone"].alive
    assert listed["gone"].expires_at == 95.0
    backend.heartbeat("w2", {}, 15.0, 125.0)        # w1 never beats again: dead after 133
    assert {w.worker_id for w in backend.workers(133.5) if w.alive} == {"w2"}


def test_prefetched_jobs_are_claimed_to_start(backend: Backend) -> None:
    backend.push([payload(f"j{i}", "q") for i in range(4)])
    found = backend.fetch_many("w", ["q"], 1, 2)
    assert [(decode(d.raw).jid, d.prefetched) for d in found] == [
        ("j0", False), ("j1", True), ("j2", True)]
    assert [(decode(d.raw).jid, d.prefetched) for d in backend.held("w")] == [
        ("j0", False), ("j1", True), ("j2", True)]
    started = backend.claim("w", found[2])
    assert started is not None
    assert not started.prefetched
    assert [(decode(d.raw).jid, d.prefetched) for d in backend.held("w")] == [
        ("j0", False), ("j2", False), ("j1", True)]
    assert backend.claim("w", found[2]) is None  # no longer in the prefetch list
    assert backend.claim("w", started) == started  # a started delivery stays as it is
    rest = backend.fetch_many("w", ["q"], 2, 5)  # only j3 left: the limit is not met
    assert [(decode(d.raw).jid, d.prefetched) for d in rest] == [("j3", False)]


def test_prefetch_is_taken_only_once_the_limit_is_met(backend: Backend) -> None:
    backend.push([payload("a", "q")])
    found = backend.fetch_many("w", ["q"], 2, 3)
    assert [(decode(d.raw).jid, d.prefetched) for d in found] == [("a", False)]


def test_recovery_keeps_order_and_counts_only_started_jobs(backend: Backend) -> None:
    backend.push([payload(f"j{i}", "q") for i in range(5)])
    backend.fetch_many("dead", ["q"], 2, 2)          # j0, j1 started; j2, j3 prefetched
    assert backend.recover("dead") == 4
    assert [(decode(r).jid, decode(r).recoveries) for r in backend.peek("q")] == [
        ("j0", 1), ("j1", 1), ("j2", 0), ("j3", 0), ("j4", 0)]


def test_recover_job_one_by_one_in_reverse_keeps_order(backend: Backend) -> None:
    backend.push([payload(f"j{i}", "q") for i in range(4)])
    backend.fetch_many("dead", ["q"], 2, 1)
    for delivery in reversed(backend.held("dead")):
        assert backend.recover_job("dead", delivery)
    assert [(decode(r).jid, decode(r).recoveries) for r in backend.peek("q")] == [
        ("j0", 1), ("j1", 1), ("j2", 0), ("j3", 0)]


def test_recover_moves_jobs_back_to_their_queue_heads_counting_recoveries(
        backend: Backend) -> None:
    backend.push([payload("a", "q1"), payload("b", "q1"), payload("c", "q2"),
                  payload("next", "q1")])
    held = backend.fetch_many("dead-worker", ["q2", "q1"], 3)
    assert [decode(d.raw).jid for d in held] == ["c", "a", "b"]
    assert backend.recover("dead-worker") == 3
    assert backend.in_progress("dead-worker") == []
    q1 = [decode(raw) for raw in backend.peek("q1")]
    assert [(p.jid, p.recoveries) for p in q1] == [("a", 1), ("b", 1), ("next", 0)]
    assert [(decode(r).jid, decode(r).recoveries) for r in backend.peek("q2")] == [("c", 1)]
    assert backend.recover("dead-worker") == 0


def test_recover_keeps_unreadable_text_as_it_was(backend: Backend) -> None:
    backend.push_raw("q", "garbage")  # type: ignore[attr-defined]
    delivery = backend.fetch("w", ["q"], 0)
    assert delivery is not None
    assert backend.recover("w") == 1
    assert backend.peek("q") == ["garbage"]


def test_fetch_many_respects_the_limit_and_queue_order(backend: Backend) -> None:
    backend.push([payload(f"a{i}", "a") for i in range(3)] + [payload("b0", "b")])
    first = backend.fetch_many("w", ["b", "a"], 2)
    assert [(d.queue, decode(d.raw).jid) for d in first] == [("b", "b0"), ("a", "a0")]
    rest = backend.fetch_many("w", ["b", "a"], 10)
    assert [decode(d.raw).jid for d in rest] == ["a1", "a2"]
    assert backend.fetch_many("w", ["b", "a"], 10) == []
    assert len(backend.in_progress("w")) == 4


def test_lock_is_exclusive_and_only_its_token_releases_it(backend: Backend) -> None:
    now = time.time()
    token = backend.acquire_lock("recovery", 30.0, now)
    assert token is not None
    assert backend.acquire_lock("recovery", 30.0, now) is None
    assert backend.release_lock("recovery", "not-the-token") is False
    assert backend.acquire_lock("recovery", 30.0, now) is None
    assert backend.release_lock("recovery", token) is True
    assert backend.release_lock("recovery", token) is False
    assert backend.acquire_lock("recovery", 30.0, now) is not None


def test_expired_lock_can_be_taken_again(backend: Backend) -> None:
    assert backend.acquire_lock("short", 0.05, time.time()) is not None
    time.sleep(0.1)
    assert backend.acquire_lock("short", 0.05, time.time()) is not None
