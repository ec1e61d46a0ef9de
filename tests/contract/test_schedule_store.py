"""ScheduleStore contract: scheduled, retry and dead sets."""

from __future__ import annotations

import attrs
import pytest

from sideline.core.payload import decode
from sideline.core.ports import Backend

from .helpers import payload


def test_move_due_moves_only_due_jobs_earliest_first(backend: Backend) -> None:
    backend.schedule(payload("late"), 300.0)
    backend.schedule(payload("early"), 100.5)
    backend.schedule(payload("mid"), 200.0)
    assert backend.next_due() == 100.5
    assert backend.move_due(250.0) == 2
    assert [decode(r).jid for r in backend.peek("default")] == ["early", "mid"]
    assert [e.payload.jid for e in backend.entries("scheduled")] == ["late"]
    assert decode(backend.peek("default")[0]).enqueued_at == 250.0


def test_sub_second_precision(backend: Backend) -> None:
    backend.schedule(payload("j"), 100.25)
    assert backend.move_due(100.2) == 0
    assert backend.move_due(100.25) == 1


def test_retry_later_acks_and_adds_to_the_retry_set(backend: Backend) -> None:
    backend.push([payload("j")])
    delivery = backend.fetch("w", ["default"], 0)
    assert delivery is not None
    backend.retry_later("w", delivery, payload("j", retry_count=1), 150.0)
    assert backend.in_progress("w") == []
    [entry] = backend.entries("retry")
    assert (entry.at, entry.payload.retry_count) == (150.0, 1)
    assert backend.move_due(150.0) == 1
    assert decode(backend.peek("default")[0]).retry_count == 1


def test_kill_acks_and_keeps_the_job_with_its_reason(backend: Backend) -> None:
    backend.push([payload("j")])
    delivery = backend.fetch("w", ["default"], 0)
    assert delivery is not None
    backend.kill("w", delivery, payload("j", dead_reason="boom"), 10.0)
    assert backend.in_progress("w") == []
    [entry] = backend.entries("dead")
    assert (entry.at, entry.payload.dead_reason) == (10.0, "boom")


def test_kill_of_a_job_declared_dead_false_drops_it(backend: Backend) -> None:
    backend.push([payload("j")])
    delivery = backend.fetch("w", ["default"], 0)
    assert delivery is not None
    backend.kill("w", delivery, payload("j", dead=False), 10.0)
    assert backend.entries("dead") == []
    assert backend.in_progress("w") == []


def test_dead_set_is_capped_by_size_and_age(small_dead_backend: Backend) -> None:
    backend = small_dead_backend
    for index in range(5):
        backend.push([payload(f"j{index}")])
        delivery = backend.fetch("w", ["default"], 0)
        assert delivery is not None
        backend.kill("w", delivery, payload(f"j{index}"), 10.0 + index)
    assert [e.payload.jid for e in backend.entries("dead")] == ["j2", "j3", "j4"]
    backend.push([payload("new")])
    delivery = backend.fetch("w", ["default"], 0)
    assert delivery is not None
    backend.kill("w", delivery, payload("new"), 113.5)  # j2 and j3 are older than 100 s now
    assert [e.payload.jid for e in backend.entries("dead")] == ["j4", "new"]


def test_retry_dead_and_delete(backend: Backend) -> None:
    for jid in ("a", "b"):
        backend.push([payload(jid)])
        delivery = backend.fetch("w", ["default"], 0)
        assert delivery is not None
        backend.kill("w", delivery, payload(jid, dead_reason="x"), 5.0)
    assert backend.retry_dead("a", 6.0) is True
    assert backend.retry_dead("a", 6.0) is False
    revived = decode(backend.peek("default")[0])
    assert (revived.jid, revived.dead_reason, revived.retried_at) == ("a", None, 6.0)
    assert backend.delete("dead", "b") is True
    assert backend.delete("dead", "b") is False
    assert backend.entries("dead") == []


def test_unknown_set_kind_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError, match="set kind must be one of scheduled, retry, dead"):
        backend.entries("morgue")


def test_a_second_dead_job_of_the_same_jid_is_kept_beside_the_first(backend: Backend) -> None:
    for attempt in range(3):
        backend.push([payload("same", "q")])
        delivery = backend.fetch("w", ["q"], 0)
        assert delivery is not None
        dead = attrs.evolve(decode(delivery.raw), dead_reason=f"death {attempt}")
        backend.kill("w", delivery, dead, 100.0 + attempt)
    entries = backend.entries("dead")
    assert [(e.key, e.payload.jid, e.payload.dead_reason) for e in entries] == [
        ("same", "same", "death 0"), ("same~2", "same", "death 1"), ("same~3", "same", "death 2")]
    assert backend.delete("dead", "same~2")
    assert [e.key for e in backend.entries("dead")] == ["same", "same~3"]
