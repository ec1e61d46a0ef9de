"""QueuePort contract: FIFO queues, strict order, blocking fetch, reliable in-progress lists."""

from __future__ import annotations

import threading
import time

from sideline.core.payload import decode
from sideline.core.ports import Backend

from .helpers import payload


def test_fetch_is_fifo_per_queue_and_follows_the_given_queue_order(backend: Backend) -> None:
    backend.push([payload("a1", "a"), payload("b1", "b"), payload("a2", "a")])
    order = [backend.fetch("w", ["b", "a"], 0) for _ in range(3)]
    assert [decode(d.raw).jid for d in order if d] == ["b1", "a1", "a2"]
    assert [d.queue for d in order if d] == ["b", "a", "a"]
    assert backend.fetch("w", ["a", "b"], 0) is None


def test_fetched_job_stays_in_progress_until_acked(backend: Backend) -> None:
    backend.push([payload("j1")])
    delivery = backend.fetch("w1", ["default"], 0)
    assert delivery is not None
    assert backend.in_progress("w1") == [delivery.raw]
    assert backend.in_progress("w2") == []
    assert backend.queue_sizes().get("default", 0) == 0
    backend.ack("w1", delivery)
    assert backend.in_progress("w1") == []


def test_requeue_puts_the_job_back_at_the_head(backend: Backend) -> None:
    backend.push([payload("j1"), payload("j2")])
    first = backend.fetch("w", ["default"], 0)
    assert first is not None
    backend.requeue("w", first)
    assert backend.in_progress("w") == []
    assert [decode(raw).jid for raw in backend.peek("default")] == ["j1", "j2"]


def test_blocking_fetch_wakes_when_a_job_is_pushed(backend: Backend) -> None:
    got: list[float] = []

    def consumer() -> None:
        started = time.monotonic()
        delivery = backend.fetch("w", ["default"], 5.0)
        assert delivery is not None
        got.append(time.monotonic() - started)

    thread = threading.Thread(target=consumer)
    thread.start()
    time.sleep(0.1)
    backend.push([payload("late")])
    thread.join(5)
    assert got
    assert got[0] < 4.0


def test_fetch_times_out_with_none(backend: Backend) -> None:
    started = time.monotonic()
    assert backend.fetch("w", ["empty"], 0.05) is None
    assert time.monotonic() - started >= 0.04


def test_bulk_push_and_sizes(backend: Backend) -> None:
    backend.push([payload(f"j{i}", "bulk") for i in range(50)])
    assert backend.queue_sizes()["bulk"] == 50
    assert len(backend.peek("bulk", limit=10)) == 10
