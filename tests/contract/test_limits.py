"""Limits contract: concurrency slots and parking at fetch, release at settle, recovery,
requeue and discard; rate windows and scheduling; the admin view; malformed limit fields.

Every test runs on memory, fakeredis, Redis and a Redis Cluster (conftest.ADAPTERS). The
jobs are pushed through the port (as the client writes them) or raw (as a forger would).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest

from sideline import App
from sideline.core.admin import LimitView
from sideline.core.limits import PARK_PER_FETCH
from sideline.core.payload import Payload, decode
from sideline.core.ports import Backend, Delivery
from sideline.core.settlement import Action, Settlement
from sideline.runtime.admin import AdminBackend

from .helpers import payload

NOW = 1_000.0
Q = ["default"]


@pytest.fixture
def store(backend: Backend) -> AdminBackend:
    return cast(AdminBackend, backend)


def limited(jid: str, key: str = "k", max_: int = 1, **fields: Any) -> Payload:
    return payload(jid, limit_key=key, limit_max=max_, **fields)


def rated(jid: str, key: str = "api", limit: int = 2, per_s: float = 10.0) -> Payload:
    return payload(jid, limit_key=key, limit_rate=limit, limit_per_s=per_s)


def jids(raws: Sequence[str]) -> list[str]:
    return [decode(raw).jid for raw in raws]


def take(store: AdminBackend, worker: str = "w", at: float = NOW,
         queues: Sequence[str] = Q) -> Delivery | None:
    """One fetch without waiting, at time `at`."""
    found = store.fetch_many(worker, queues, 1, 0, lambda: at)
    return found[0] if found else None


def taken(store: AdminBackend, worker: str = "w", at: float = NOW) -> Delivery:
    delivery = take(store, worker, at)
    assert delivery is not None
    return delivery


def ack(store: AdminBackend, worker: str, delivery: Delivery, *, fetch_from: Sequence[str] = (),
        action: Action = Action.ACK) -> Delivery | None:
    settlement = Settlement(action, decode(delivery.raw),
                            retry_at=NOW + 30 if action is Action.RETRY else None,
                            reason="died" if action is Action.BURY else None)
    return store.settle(worker, delivery, settlement, NOW, fetch_from).next


def concurrency(key: str, max_: int, running: int, parked: int = 0) -> LimitView:
    return LimitView(key, "concurrency", max_, None, running, parked, 0)


# -- concurrency: slots and parking ---------------------------------------------------------

def test_a_full_key_parks_its_jobs_and_the_fetch_goes_on_to_the_next_job(
        store: AdminBackend) -> None:
    store.push([*(limited(f"k{i}", max_=2) for i in range(5)), payload("u1"),
                limited("m1", key="m")])
    assert jids([taken(store, "w1").raw, taken(store, "w2").raw]) == ["k0", "k1"]
    assert jids([taken(store, "w3").raw]) == ["u1"]  # k2..k4 parked on the way
    assert jids([taken(store, "w3").raw]) == ["m1"]
    assert take(store, "w1") is None
    assert store.limits(NOW) == [concurrency("k", 2, 2, 3), concurrency("m", 1, 1)]
    assert jids(store.parked_page("k", 0, 10)) == ["k2", "k3", "k4"]
    assert jids(store.parked_page("k", 1, 1)) == ["k3"]
    assert store.queue_sizes().get("default", 0) == 0
    assert store.stats(["processed", "failed"]) == {"processed": 0, "failed": 0}
    assert [store.entries(kind) for kind in ("scheduled", "retry", "dead")] == [[], [], []]


def test_max_is_respected_by_concurrent_blocking_fetchers(store: AdminBackend) -> None:
    store.push([limited(f"k{i}", max_=2) for i in range(16)])
    lock = threading.Lock()
    running, peak, done = [0], [0], [0]

    def work(worker: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if done[0] >= 16:
                    return
            delivery = store.fetch(worker, Q, 0.2)
            if delivery is None:
                continue
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.005)
            with lock:  # before the settle: the settle frees the slot for the next fetch
                running[0] -= 1
                done[0] += 1
            ack(store, worker, delivery)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert done[0] == 16
    assert peak[0] == 2
    assert store.limits(NOW) == []  # nothing holds the key: it left the index
    assert store.stats(["processed"]) == {"processed": 16}


def test_settle_frees_the_slot_and_releases_the_oldest_parked_job_to_the_queue_head(
        store: AdminBackend) -> None:
    store.push([limited("a0"), limited("a1"), payload("u1"), limited("a2"), payload("u2")])
    first = taken(store, "w1")
    assert jids([taken(store, "w2").raw]) == ["u1"]  # a1 parked
    assert jids(store.queue_page("default", 0, 10)) == ["a2", "u2"]
    assert ack(store, "w1", first) is None
    assert jids(store.queue_page("default", 0, 10)) == ["a1", "a2", "u2"]
    assert store.limits(NOW) == []
    assert jids([taken(store, "w2").raw]) == ["a1"]
    assert jids([taken(store, "w2").raw]) == ["u2"]  # a2 parked behind a1's slot
    assert store.limits(NOW) == [concurrency("k", 1, 1, 1)]


@pytest.mark.parametrize("action", [Action.ACK, Action.RETRY, Action.BURY])
def test_every_settle_action_frees_the_slot_and_the_next_fetch_takes_the_released_job(
        store: AdminBackend, action: Action) -> None:
    store.push([limited("a0"), limited("a1")])
    first = taken(store, "w1")
    assert take(store, "w2") is None  # a1 parked
    following = ack(store, "w1", first, fetch_from=Q, action=action)
    assert following is not None
    assert jids([following.raw]) == ["a1"]
    assert store.limits(NOW) == [concurrency("k", 1, 1)]
    assert store.in_progress("w1") == [following.raw]
    if action is Action.RETRY:  # a retry due later holds no slot while it waits
        assert [e.payload.jid for e in store.entries("retry")] == ["a0"]


def test_a_blocked_fetch_wakes_when_a_parked_job_is_released(store: AdminBackend) -> None:
    store.push([limited("a0"), limited("a1")])
    first = taken(store, "w1")
    assert take(store, "w2") is None  # a1 parked: the queue is empty
    got: list[tuple[str, float]] = []

    def blocked() -> None:
        started = time.monotonic()
        delivery = store.fetch("w2", Q, 5.0)
        if delivery is not None:
            got.append((decode(delivery.raw).jid, time.monotonic() - started))

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.2)
    ack(store, "w1", first)
    thread.join(6)
    assert [jid for jid, _ in got] == ["a1"]
    assert got[0][1] < 2.0


def test_parking_is_bounded_per_call_and_light_keys_behind_a_backlog_are_reached(
        store: AdminBackend) -> None:
    heavy = PARK_PER_FETCH + 20
    store.push([*(limited(f"h{i}", key="heavy") for i in range(heavy)),
                *(limited(f"l{i}", key="light", max_=2) for i in range(2))])
    assert jids([taken(store, "w1").raw]) == ["h0"]
    assert take(store, "w2") is None  # PARK_PER_FETCH parked, then the call gives up
    assert store.limits(NOW)[0] == concurrency("heavy", 1, 1, PARK_PER_FETCH)
    assert jids([taken(store, "w2").raw]) == ["l0"]  # the rest of the backlog parked
    assert jids([taken(store, "w3").raw]) == ["l1"]
    assert store.limits(NOW) == [concurrency("heavy", 1, 1, heavy - 1),
                                 concurrency("light", 2, 2)]


def test_a_blocking_fetch_goes_on_past_the_park_bound(store: AdminBackend) -> None:
    store.push([*(limited(f"h{i}", key="heavy") for i in range(PARK_PER_FETCH + 5)),
                payload("u1")])
    taken(store, "w1")
    started = time.monotonic()
    found = store.fetch("w2", Q, 3.0)
    assert found is not None
    assert jids([found.raw]) == ["u1"]
    assert time.monotonic() - started < 1.0  # a wake token, not the timeout, went on


def test_prefetched_jobs_hold_slots_and_a_claim_keeps_them(store: AdminBackend) -> None:
    store.push([limited(f"a{i}", max_=2) for i in range(4)])
    found = store.fetch_many("w", Q, 1, 2)
    assert [(decode(d.raw).jid, d.prefetched) for d in found] == [("a0", False), ("a1", True)]
    assert store.limits(NOW) == [concurrency("k", 2, 2, 2)]
    claimed = store.claim("w", found[1])
    assert claimed is not None
    assert store.limits(NOW) == [concurrency("k", 2, 2, 2)]
    assert store.requeue("w", claimed)
    assert jids(store.queue_page("default", 0, 10)) == ["a1", "a2"]  # a2 released behind it


# -- what takes a job out of a worker's hands frees its slot ------------------------------

def test_recovery_of_a_dead_workers_jobs_frees_their_slots(store: AdminBackend) -> None:
    store.push([limited("a0"), limited("b0", key="b"), limited("a1"), limited("b1", key="b")])
    taken(store, "dead")
    taken(store, "dead")
    assert take(store, "w2") is None  # a1 and b1 parked
    assert store.recover("dead") == 2
    assert jids(store.queue_page("default", 0, 10)) == ["a0", "a1", "b0", "b1"]
    assert store.limits(NOW) == []
    assert [decode(raw).recoveries for raw in store.queue_page("default", 0, 2)] == [1, 0]


def test_recover_job_and_discard_free_the_slot(store: AdminBackend) -> None:
    store.push([limited("a0"), limited("b0", key="b"), limited("a1"), limited("b1", key="b")])
    a0, b0 = taken(store, "dead"), taken(store, "dead")
    assert take(store, "w2") is None
    assert store.recover_job("dead", a0)
    assert store.discard("dead", b0)
    assert not store.discard("dead", b0)
    assert jids(store.queue_page("default", 0, 10)) == ["b1", "a0", "a1"]
    assert store.limits(NOW) == []


def test_requeue_frees_the_slot_and_the_requeued_job_stays_first(store: AdminBackend) -> None:
    store.push([limited("a0"), limited("a1")])
    first = taken(store, "w1")
    assert take(store, "w2") is None
    assert store.requeue("w1", first)
    assert not store.requeue("w1", first)
    assert jids(store.queue_page("default", 0, 10)) == ["a0", "a1"]
    assert store.limits(NOW) == []


def test_a_settle_of_a_job_no_longer_held_frees_nobodys_slot(store: AdminBackend) -> None:
    store.push([limited("a0"), limited("a1")])
    first = taken(store, "w1")
    store.recover("w1")  # w1 was judged dead; w2 runs a0 again
    again = taken(store, "w2")
    ack(store, "w1", first)  # w1's late settle: a0's slot is w2's
    assert store.limits(NOW) == [concurrency("k", 1, 1)]
    assert take(store, "w3") is None  # a1 parked: the slot is still taken
    ack(store, "w2", again)
    assert jids([taken(store, "w3").raw]) == ["a1"]


def test_forgetting_a_worker_frees_any_slot_still_recorded_for_it(store: AdminBackend) -> None:
    store.push([limited("a0"), limited("a1")])
    taken(store, "gone")
    assert take(store, "w2") is None
    store.forget_worker("gone")  # it holds no job any more: its slot could only leak
    assert jids(store.queue_page("default", 0, 10)) == ["a1"]
    assert store.limits(NOW) == []


def test_ack_frees_the_slot(store: AdminBackend) -> None:
    store.push([limited("a0"), limited("a1")])
    first = taken(store, "w1")
    assert take(store, "w2") is None
    store.ack("w1", first)
    assert jids(store.queue_page("default", 0, 10)) == ["a1"]


def test_a_limit_written_with_other_json_spacing_is_enforced(store: AdminBackend) -> None:
    for jid in ("a0", "a1"):  # as another language's client might write it
        cast(Any, store).push_raw("default", f'{{ "name" : "job", "jid" : "{jid}", '
                                             '"queue" : "default", "limit_key" : "k", '
                                             '"limit_max" : 1 }')
    assert jids([taken(store).raw]) == ["a0"]
    assert take(store) is None
    assert store.limits(NOW) == [concurrency("k", 1, 1, 1)]


# -- rate ------------------------------------------------------------------------------------

def test_a_rate_over_its_limit_is_scheduled_for_when_the_window_has_room(
        store: AdminBackend) -> None:
    store.push([rated("r0"), rated("r1"), rated("r2"), payload("u1")])
    assert jids([taken(store, at=100.0).raw, taken(store, at=101.0).raw]) == ["r0", "r1"]
    assert jids([taken(store, at=102.0).raw]) == ["u1"]  # r2 waits for the window
    [entry] = store.entries("scheduled")
    assert (entry.at, entry.key) == (110.0, "r2")
    assert (entry.payload.retry_count, entry.payload.error_class) == (0, None)
    assert store.stats(["processed"]) == {"processed": 0}
    assert store.limits(102.0) == [LimitView("api", "rate", 2, 10.0, 0, 0, 2)]
    assert store.move_due(109.9) == 0
    assert store.move_due(110.0) == 1
    assert jids([taken(store, at=110.0).raw]) == ["r2"]
    assert store.limits(110.0) == [LimitView("api", "rate", 2, 10.0, 0, 0, 2)]
    assert store.limits(115.0) == [LimitView("api", "rate", 2, 10.0, 0, 0, 1)]
    assert store.limits(200.0) == []  # no start left in the window: the key left the index


def test_each_rate_key_has_its_own_window(store: AdminBackend) -> None:
    store.push([rated("a0", key="a", limit=1), rated("a1", key="a", limit=1),
                rated("b0", key="b", limit=1)])
    assert jids([taken(store, at=50.0).raw, taken(store, at=51.0).raw]) == ["a0", "b0"]
    assert [(e.key, e.at) for e in store.entries("scheduled")] == [("a1", 60.0)]


# -- malformed limit fields -------------------------------------------------------------------

MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"limit_key": "k", "limit_max": "2"}, "payload field 'limit_max' must be an int, got str"),
    ({"limit_key": "k", "limit_max": 0}, "payload field 'limit_max' must be >= 1"),
    ({"limit_key": "k", "limit_max": 2.5}, "payload field 'limit_max' must be an int, got float"),
    ({"limit_key": "k", "limit_max": 2.0}, "payload field 'limit_max' must be an int, got float"),
    ({"limit_key": 7, "limit_max": 2}, "payload field 'limit_key' must be a str, got int"),
    ({"limit_key": "k"}, "payload field 'limit_key' needs either limit_max"),
    ({"limit_max": 2}, "payload field(s) limit_max need a limit_key"),
    ({"limit_key": "k", "limit_max": 1, "limit_rate": 1, "limit_per_s": 1},
     "payload field 'limit_key' needs either limit_max"),
    ({"limit_key": "k", "limit_rate": 2, "limit_per_s": "1"},
     "payload field 'limit_per_s' must be a number, got str"),
    ({"limit_key": "k", "limit_rate": 2, "limit_per_s": 0}, "payload field 'limit_per_s' must be > 0"),
]


@pytest.mark.parametrize(("fields", "reason"), MALFORMED,
                         ids=[json.dumps(f)[:40] for f, _ in MALFORMED])
def test_malformed_limit_fields_send_the_job_to_the_dead_set_with_the_reason(
        store: AdminBackend, fields: dict[str, Any], reason: str) -> None:
    app = App(store)
    ran: list[Any] = []
    app.job(name="job")(ran.append)
    raw = json.dumps({"name": "job", "jid": "forged", "queue": "default", "args": [1], **fields})
    cast(Any, store).push_raw("default", raw)
    app.enqueue("job", [2])
    assert app.drain() == 2
    assert ran == [2]
    [entry] = store.entries("dead")
    assert entry.payload.name == "<undecodable>"
    assert entry.payload.args == [raw]
    assert entry.payload.dead_reason is not None
    assert reason in entry.payload.dead_reason
    assert store.limits(NOW) == []  # a slot it may have taken was freed as it was buried


def test_a_rate_job_the_worker_refuses_is_buried_even_after_waiting_for_its_window(
        store: AdminBackend) -> None:
    # limit_rate 1.0: the adapters read a rate of 1 (Lua cannot tell 1.0 from 1), the
    # strict decode refuses a float: the second copy waits for the window, then is buried.
    app = App(store)
    app.job(name="job")(lambda *_: None)
    for jid in ("r1", "r2"):
        cast(Any, store).push_raw("default", json.dumps({
            "name": "job", "jid": jid, "queue": "default", "limit_key": "api",
            "limit_rate": 1.0, "limit_per_s": 60}))
    assert app.drain() == 2
    dead = store.entries("dead")
    assert len(dead) == 2
    assert all("payload field 'limit_rate' must be an int, got float" in (e.payload.dead_reason or "")
               for e in dead)
    assert store.entries("scheduled") == []
