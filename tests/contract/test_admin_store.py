"""AdminStore contract: queue and set windows, latency, deletes, retry-now, kill, signals."""

from __future__ import annotations

from typing import cast

import pytest

from sideline.core.payload import decode
from sideline.core.ports import Backend
from sideline.runtime.admin import AdminBackend

from .helpers import payload


@pytest.fixture
def store(backend: Backend) -> AdminBackend:
    return cast(AdminBackend, backend)


def _jids(raws: list[str]) -> list[str]:
    return [decode(raw).jid for raw in raws]


def test_queue_page_is_a_window_from_the_head(store: AdminBackend) -> None:
    store.push([payload(f"j{i}") for i in range(7)])
    assert _jids(store.queue_page("default", 0, 3)) == ["j0", "j1", "j2"]
    assert _jids(store.queue_page("default", 3, 3)) == ["j3", "j4", "j5"]
    assert _jids(store.queue_page("default", 6, 3)) == ["j6"]
    assert store.queue_page("default", 9, 3) == []
    assert store.queue_page("default", 0, 0) == []
    assert store.queue_page("nowhere", 0, 10) == []


def test_latency_is_the_age_of_the_head(store: AdminBackend) -> None:
    assert store.queue_latency_s("default", 100.0) == 0.0
    store.push([payload("a", enqueued_at=40.0), payload("b", enqueued_at=90.0)])
    assert store.queue_latency_s("default", 100.0) == pytest.approx(60.0)
    store.push([payload("c", queue="other")])  # no enqueued_at: created_at (1.0) counts
    assert store.queue_latency_s("other", 100.0) == pytest.approx(99.0)
    assert store.queue_latency_s("default", 10.0) == 0.0  # a clock behind: never negative


def test_latency_of_an_unreadable_head_is_zero(store: AdminBackend) -> None:
    store.push_raw("bad", "not json")  # type: ignore[attr-defined]
    assert store.queue_latency_s("bad", 100.0) == 0.0


def test_delete_queued_removes_one_exact_job(store: AdminBackend) -> None:
    store.push([payload("a"), payload("b"), payload("c")])
    raw_b = store.queue_page("default", 1, 1)[0]
    assert store.delete_queued("default", raw_b) is True
    assert store.delete_queued("default", raw_b) is False
    assert _jids(store.peek("default")) == ["a", "c"]


def test_delete_queued_of_bytes_that_are_not_utf8(store: AdminBackend) -> None:
    store.push_raw("default", b"\xff\xfe junk")  # type: ignore[attr-defined]
    [raw] = store.queue_page("default", 0, 1)
    assert store.delete_queued("default", raw) is True
    assert store.queue_sizes().get("default", 0) == 0


def test_clear_queue_counts_what_it_removed(store: AdminBackend) -> None:
    store.push([payload(f"j{i}") for i in range(4)] + [payload("x", queue="keep")])
    assert store.clear_queue("default") == 4
    assert store.clear_queue("default") == 0
    assert store.queue_sizes().get("default", 0) == 0
    assert _jids(store.peek("keep")) == ["x"]


def test_set_size_and_pages_earliest_first(store: AdminBackend) -> None:
    for i in range(5):
        store.schedule(payload(f"s{i}"), 100.0 + (5 - i))
    assert store.set_size("scheduled") == 5
    assert store.set_size("retry") == 0
    first = store.set_page("scheduled", 0, 2)
    assert [e.key for e in first] == ["s4", "s3"]
    assert [e.at for e in first] == [101.0, 102.0]
    assert [e.payload.jid for e in store.set_page("scheduled", 2, 10)] == ["s2", "s1", "s0"]
    assert store.set_page("scheduled", 5, 10) == []


def test_equal_times_page_by_key(store: AdminBackend) -> None:
    for jid in ("c", "a", "b"):
        store.schedule(payload(jid), 50.0)
    assert [e.key for e in store.set_page("scheduled", 0, 3)] == ["a", "b", "c"]


def test_set_find(store: AdminBackend) -> None:
    store.schedule(payload("s"), 120.5)
    found = store.set_find("scheduled", "s")
    assert found is not None
    assert (found.at, found.key, found.payload.jid) == (120.5, "s", "s")
    assert store.set_find("scheduled", "missing") is None
    assert store.set_find("retry", "s") is None


def test_unknown_kind_is_refused(store: AdminBackend) -> None:
    with pytest.raises(ValueError, match="set kind"):
        store.set_size("nope")
    with pytest.raises(ValueError, match="set kind"):
        store.set_page("nope", 0, 1)


def test_retry_now_pushes_a_scheduled_entry_with_enqueued_at(store: AdminBackend) -> None:
    store.schedule(payload("s", queue="q"), 500.0)
    assert store.set_retry_now("scheduled", "s", 10.0) is True
    assert store.set_retry_now("scheduled", "s", 10.0) is False
    assert store.set_size("scheduled") == 0
    [raw] = store.peek("q")
    assert (decode(raw).jid, decode(raw).enqueued_at) == ("s", 10.0)


def test_retry_now_pushes_a_retry_entry(store: AdminBackend) -> None:
    _retry(store, "r", 300.0)
    assert store.set_retry_now("retry", "r", 20.0) is True
    assert store.set_size("retry") == 0
    assert decode(store.peek("default")[0]).retry_count == 1


def test_retry_now_refuses_the_dead_set(store: AdminBackend) -> None:
    with pytest.raises(ValueError, match="retry now"):
        store.set_retry_now("dead", "x", 1.0)


def _retry(store: AdminBackend, jid: str, at: float) -> None:
    store.push([payload(jid)])
    delivery = store.fetch("w", ["default"], 0)
    assert delivery is not None
    store.retry_later("w", delivery, payload(jid, retry_count=1), at)


def test_kill_moves_a_retry_entry_to_the_dead_set(store: AdminBackend) -> None:
    _retry(store, "r", 300.0)
    assert store.set_kill("r", 50.0) is True
    assert store.set_kill("r", 50.0) is False
    assert store.set_size("retry") == 0
    dead = store.set_find("dead", "r")
    assert dead is not None
    assert (dead.at, dead.payload.dead_reason, dead.payload.retry_count) == (50.0, "killed", 1)


def test_kill_keeps_a_job_that_asked_not_to_be_kept(store: AdminBackend) -> None:
    store.push([payload("r", dead=False)])
    delivery = store.fetch("w", ["default"], 0)
    assert delivery is not None
    store.retry_later("w", delivery, payload("r", dead=False), 300.0)
    assert store.set_kill("r", 50.0) is True  # killing by hand is explicit: it is kept
    assert store.set_size("dead") == 1


def test_kill_of_a_jid_already_dead_keeps_both(store: AdminBackend) -> None:
    store.push([payload("r")])
    delivery = store.fetch("w", ["default"], 0)
    assert delivery is not None
    store.kill("w", delivery, payload("r"), 10.0)
    _retry(store, "r", 300.0)
    assert store.set_kill("r", 20.0) is True
    assert sorted(e.key for e in store.set_page("dead", 0, 10)) == ["r", "r~2"]


def test_kill_trims_the_dead_set(small_dead_backend: Backend) -> None:
    store = cast(AdminBackend, small_dead_backend)
    for i in range(4):
        _retry(store, f"r{i}", 300.0)
        assert store.set_kill(f"r{i}", 10.0 + i)
    assert [e.key for e in store.set_page("dead", 0, 10)] == ["r1", "r2", "r3"]


def test_signals_reach_only_registered_workers(store: AdminBackend) -> None:
    assert store.signal_worker("w1", "quiet") is False
    store.heartbeat("w1", {"busy": "2"}, 60.0, 100.0)
    assert store.worker_signal("w1") is None
    assert store.signal_worker("w1", "quiet") is True
    assert store.worker_signal("w1") == "quiet"
    assert store.signal_worker("w1", "stop") is True
    assert store.signal_worker("w1", "quiet") is True  # a stop is never downgraded
    assert store.worker_signal("w1") == "stop"
    store.heartbeat("w1", {"busy": "1"}, 60.0, 110.0)  # heartbeats keep the signal
    [worker] = store.workers(110.0)
    assert (worker.info["signal"], worker.info["busy"]) == ("stop", "1")
    with pytest.raises(ValueError, match="signal"):
        store.signal_worker("w1", "kill")

