"""QueuePort.push_once: an idempotent push by jid, over every adapter."""

from __future__ import annotations

import time

from sideline.core.payload import Payload, decode
from sideline.core.ports import Backend


def _payload(jid: str, queue: str = "default") -> Payload:
    return Payload(name="job", args=[jid], kwargs={}, jid=jid, queue=queue, created_at=1.0,
                   enqueued_at=1.0)


def _jids(backend: Backend, queue: str = "default") -> list[str]:
    return [decode(raw).jid for raw in backend.peek(queue, 1000)]


def test_push_once_pushes_each_jid_once(backend: Backend) -> None:
    assert backend.push_once([_payload("a"), _payload("b")], 60, 1000.0) == 2
    assert backend.push_once([_payload("a"), _payload("b"), _payload("c")], 60, 1001.0) == 1
    assert _jids(backend) == ["a", "b", "c"]


def test_push_once_routes_each_payload_to_its_queue(backend: Backend) -> None:
    assert backend.push_once([_payload("a", "low"), _payload("b", "high")], 60, 1000.0) == 2
    assert _jids(backend, "low") == ["a"]
    assert _jids(backend, "high") == ["b"]
    assert backend.queue_sizes() == {"low": 1, "high": 1}


def test_push_once_of_nothing(backend: Backend) -> None:
    assert backend.push_once([], 60, 1000.0) == 0
    assert backend.queue_sizes() == {}


def test_push_once_ignores_a_plain_push_of_the_same_jid(backend: Backend) -> None:
    backend.push([_payload("a")])
    assert backend.push_once([_payload("a")], 60, 1000.0) == 1
    assert _jids(backend) == ["a", "a"]


def test_a_marker_survives_the_job_being_fetched(backend: Backend) -> None:
    assert backend.push_once([_payload("a")], 60, 1000.0) == 1
    assert backend.fetch("w1", ["default"], 0) is not None
    assert backend.push_once([_payload("a")], 60, 1000.0) == 0
    assert backend.queue_sizes().get("default", 0) == 0


def test_a_marker_expires_after_its_ttl(backend: Backend) -> None:
    assert backend.push_once([_payload("a")], 0.05, 1000.0) == 1
    time.sleep(0.15)  # Redis expires the marker by its own clock, memory by `now`
    assert backend.push_once([_payload("a")], 0.05, 1000.15) == 1
    assert _jids(backend) == ["a", "a"]
