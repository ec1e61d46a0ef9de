"""The PeriodicStore contract, on every adapter: reconciling entries, the atomic
compare-and-set that claims a tick and pushes its job, pause and resume."""

from __future__ import annotations

import threading

from sideline.core.payload import Payload, decode
from sideline.core.periodic import PeriodicEntry, tick_jid
from sideline.core.ports import Backend

NIGHTLY = PeriodicEntry(name="nightly", job="reports.build", args=(1,), cron="0 2 * * *",
                        tz="Europe/Warsaw")
EVERY = PeriodicEntry(name="every", job="beat", every_s=5)


def _payload(entry: PeriodicEntry, tick: float) -> Payload:
    return Payload(name=entry.job, jid=tick_jid(entry.name, tick), queue="default",
                   args=list(entry.args), created_at=tick, enqueued_at=tick)


def _state(backend: Backend, name: str) -> dict[str, object]:
    found = {s.name: s for s in backend.periodic_states()}
    state = found[name]
    return {"tick": state.last_tick_ms, "paused": state.paused, "fp": state.fingerprint}


def test_sync_stores_new_entries_from_now(backend: Backend) -> None:
    backend.sync_periodic([NIGHTLY, EVERY], ["reports.build", "beat"], 1000.0)
    states = backend.periodic_states()
    assert [s.name for s in states] == ["every", "nightly"]
    assert all(s.last_tick_ms == 1_000_000 and not s.paused for s in states)
    assert PeriodicEntry.from_definition(states[1].definition or "") == NIGHTLY


def test_sync_keeps_an_unchanged_entry_and_restarts_a_changed_one(backend: Backend) -> None:
    backend.sync_periodic([EVERY], ["beat"], 1000.0)
    assert backend.fire_periodic("every", EVERY.fingerprint, 1_000_000, 1_005_000,
                                 payloads=[], now=1005.0)
    backend.sync_periodic([EVERY], ["beat"], 2000.0)  # a restart: nothing changed
    assert _state(backend, "every")["tick"] == 1_005_000
    changed = PeriodicEntry(name="every", job="beat", every_s=10)
    backend.sync_periodic([changed], ["beat"], 3000.0)
    assert _state(backend, "every") == {"tick": 3_000_000, "paused": False,
                                        "fp": changed.fingerprint}


def test_sync_removes_only_entries_of_jobs_this_app_declares(backend: Backend) -> None:
    backend.sync_periodic([NIGHTLY, EVERY], ["reports.build", "beat"], 1000.0)
    backend.sync_periodic([], ["beat"], 1001.0)  # an app declaring "beat" but no entry
    assert [s.name for s in backend.periodic_states()] == ["nightly"]


def test_a_tick_is_claimed_once_and_its_job_pushed_with_it(backend: Backend) -> None:
    backend.sync_periodic([EVERY], ["beat"], 1000.0)
    job = _payload(EVERY, 1005.0)
    assert backend.fire_periodic("every", EVERY.fingerprint, 1_000_000, 1_005_000,
                                 payloads=[job], now=1005.1)
    # another worker, with the same stale view, loses: nothing pushed twice
    assert not backend.fire_periodic("every", EVERY.fingerprint, 1_000_000, 1_005_000,
                                     payloads=[job], now=1005.2)
    assert [decode(raw).jid for raw in backend.peek("default")] == [job.jid]
    state = backend.periodic_states()[0]
    assert (state.last_tick_ms, state.last_jid, state.last_fired_at) == (
        1_005_000, job.jid, 1005.1)


def test_racing_claims_of_one_tick_push_exactly_one_job(backend: Backend) -> None:
    backend.sync_periodic([EVERY], ["beat"], 1000.0)
    job = _payload(EVERY, 1005.0)
    wins: list[bool] = []
    start = threading.Barrier(8)

    def claim() -> None:
        start.wait()
        wins.append(backend.fire_periodic("every", EVERY.fingerprint, 1_000_000, 1_005_000,
                                          payloads=[job], now=1005.0))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(wins) == [False] * 7 + [True]
    assert len(backend.peek("default")) == 1


def test_a_claim_with_another_fingerprint_or_while_paused_is_refused(backend: Backend) -> None:
    backend.sync_periodic([EVERY], ["beat"], 1000.0)
    assert not backend.fire_periodic("every", "old-deploy", 1_000_000, 1_005_000,
                                     payloads=[_payload(EVERY, 1005.0)], now=1005.0)
    assert backend.pause_periodic("every", True, 1003.0)
    assert not backend.fire_periodic("every", EVERY.fingerprint, 1_000_000, 1_005_000,
                                     payloads=[_payload(EVERY, 1005.0)], now=1005.0)
    assert backend.peek("default") == []
    assert backend.pause_periodic("every", False, 1042.0)  # resumed: from now on
    assert _state(backend, "every") == {"tick": 1_042_000, "paused": False,
                                        "fp": EVERY.fingerprint}
    assert not backend.pause_periodic("missing", True, 1.0)
    assert not backend.fire_periodic("missing", "x", None, 1, payloads=[], now=1.0)
