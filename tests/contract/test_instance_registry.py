"""InstanceRegistry contract: heartbeats, recovery of a dead worker's jobs, named locks."""

from __future__ import annotations

import time

from sideline.core.payload import decode
from sideline.core.ports import Backend

from .helpers import payload


def test_heartbeat_registers_the_worker_until_its_ttl(backend: Backend) -> None:
    backend.heartbeat("w1", {"host": "h", "pid": "1"}, 15.0, 100.0)
    backend.heartbeat("w2", {"host": "h", "pid": "2"}, 15.0, 110.0)
    listed = {w.worker_id: w for w in backend.workers(120.0)}
    assert (listed["w1"].alive, listed["w2"].alive) == (False, True)
    assert listed["w2"].info == {"host": "h", "pid": "2"}
    assert listed["w2"].expires_at == 125.0
    backend.forget_worker("w1")
    assert [w.worker_id for w in backend.workers(120.0)] == ["w2"]


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
