"""SettlePort.settle_acks contract: several plain acks in one call, each as `settle` would
write it, the first `fetch` of them taking the caller's next job (one each)."""

from __future__ import annotations

import datetime

import pytest

from sideline.core.payload import decode
from sideline.core.ports import Backend, Delivery
from sideline.core.settlement import Action, Settlement

from .helpers import payload

NOW = datetime.datetime(2026, 11, 30, 12, 0, 30, tzinfo=datetime.UTC).timestamp()


def _take(backend: Backend, count: int, worker: str = "w") -> list[Delivery]:
    taken = backend.fetch_many(worker, ["default"], count)
    assert len(taken) == count
    return taken


def _acks(deliveries: list[Delivery]) -> list[tuple[Delivery, Settlement]]:
    return [(delivery, Settlement(Action.ACK, decode(delivery.raw))) for delivery in deliveries]


def _queued(backend: Backend) -> list[str]:
    return [decode(raw).jid for raw in backend.peek("default")]


def test_acks_leave_nothing_held_and_count_each_job(backend: Backend) -> None:
    backend.push([payload(f"j{i}") for i in range(3)])
    taken = _take(backend, 3)
    assert backend.settle_acks("w", _acks(taken), NOW) == []
    assert backend.in_progress("w") == []
    minute = datetime.datetime.fromtimestamp(NOW, datetime.UTC).strftime("%Y-%m-%dT%H:%M")
    assert backend.stats(["processed", f"processed:{minute}", "failed"]) == {
        "processed": 3, f"processed:{minute}": 3, "failed": 0}


def test_the_first_fetch_acks_each_take_one_next_job_in_queue_order(backend: Backend) -> None:
    backend.push([payload(f"j{i}") for i in range(7)])
    taken = _take(backend, 3)
    following = backend.settle_acks("w", _acks(taken), NOW, ["default"], 2)
    assert [decode(d.raw).jid for d in following] == ["j3", "j4"]
    assert _queued(backend) == ["j5", "j6"]
    assert sorted(decode(raw).jid for raw in backend.in_progress("w")) == ["j3", "j4"]


def test_taking_from_an_emptied_queue_takes_what_there_is(backend: Backend) -> None:
    backend.push([payload(f"j{i}") for i in range(4)])
    taken = _take(backend, 3)
    following = backend.settle_acks("w", _acks(taken), NOW, ["default"], 3)
    assert [decode(d.raw).jid for d in following] == ["j3"]
    assert _queued(backend) == []


def test_no_acks_is_no_call(backend: Backend) -> None:
    backend.push([payload("j0")])
    assert backend.settle_acks("w", [], NOW, ["default"], 0) == []
    assert _queued(backend) == ["j0"]


@pytest.mark.parametrize("fetch", [-1, 3])
def test_more_jobs_than_acks_or_fewer_than_none_is_refused(backend: Backend,
                                                           fetch: int) -> None:
    backend.push([payload(f"j{i}") for i in range(4)])
    taken = _take(backend, 2)
    with pytest.raises(ValueError, match="one per ack"):
        backend.settle_acks("w", _acks(taken), NOW, ["default"], fetch)
    assert len(backend.in_progress("w")) == 2  # nothing applied


@pytest.mark.parametrize("settlement_of", [
    pytest.param(lambda p: Settlement(Action.RETRY, p, retry_at=NOW + 5, failed=1), id="retry"),
    pytest.param(lambda p: Settlement(Action.BURY, p, reason="x", failed=1), id="bury"),
    pytest.param(lambda p: Settlement(Action.ACK, p, tracked=True, result="{}"), id="tracked"),
    pytest.param(lambda p: Settlement(Action.ACK, p, failed=1), id="failed"),
])
def test_anything_but_a_plain_ack_is_refused_and_nothing_applied(
        backend: Backend, settlement_of: object) -> None:
    backend.push([payload("j0"), payload("j1")])
    first, second = _take(backend, 2)
    acks = [(first, Settlement(Action.ACK, decode(first.raw))),
            (second, settlement_of(decode(second.raw)))]  # type: ignore[operator]
    with pytest.raises(ValueError, match="plain acks only"):
        backend.settle_acks("w", acks, NOW)
    assert len(backend.in_progress("w")) == 2
    assert backend.stats(["processed"]) == {"processed": 0}


@pytest.mark.parametrize("field", [{"run_id": "r1", "node_id": 0}, {"batch_id": "b1"},
                                   {"unique_key": "u1", "unique_token": "t"},
                                   {"limit_key": "k", "limit_max": 1}])
def test_a_job_of_a_run_batch_lock_or_limit_is_never_a_plain_ack(
        backend: Backend, field: dict[str, object]) -> None:
    backend.push([payload("j0", **field)])
    [delivery] = _take(backend, 1)
    with pytest.raises(ValueError, match="plain acks only"):
        backend.settle_acks("w", _acks([delivery]), NOW)
    assert len(backend.in_progress("w")) == 1
