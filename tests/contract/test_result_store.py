"""ResultStore contract: results and job state written by settle, blocking waits on results
and on runs finishing (woken by the writer, never by polling), and stop requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from sideline.adapters.memory import MemoryBackend
from sideline.core.jobs import JobOptions
from sideline.core.payload import decode
from sideline.core.ports import Backend, Delivery
from sideline.core.results import JobState, ResultRecord, info_fields
from sideline.core.settlement import Action, Outcome, Settlement, decide
from sideline.core.workflow import Chain, Group

from .conftest import make_backend
from .helpers import new_run, payload, sig

NOW = 1_700_000_000.0
TRACKED = JobOptions(store_result=True, result_ttl_s=600)
SHORT = 0.2
"""The timeout of a wait that is meant to time out (s)."""


def held(backend: Backend, queue: str = "default", worker: str = "w") -> Delivery:
    delivery = backend.fetch(worker, [queue], 0)
    assert delivery is not None
    return delivery


def push_and_fetch(backend: Backend, jid: str = "j1", **fields: Any) -> Delivery:
    backend.push([payload(jid, **fields)])
    return held(backend)


def run_job(backend: Backend, outcome: Outcome, options: JobOptions | None = TRACKED,
            jid: str = "j1", now: float = NOW, **fields: Any) -> Settlement:
    """Push, fetch and settle one job as the worker would: decide, then settle."""
    delivery = push_and_fetch(backend, jid, **fields)
    settlement = decide(outcome, decode(delivery.raw), options or JobOptions(), now, 0.5)
    backend.settle("w", delivery, settlement, now)
    return settlement


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start `target` in a thread; its return value lands in the list."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(target()), daemon=True)
    thread.start()
    return thread, out


def redis_pttl(backend: Backend, *parts: str) -> int | None:
    """The PTTL (ms) of a key of the namespace; None on the memory backend."""
    client = getattr(backend, "client", None)
    if client is None:
        return None
    ttl: int = client.pttl(backend.keys(*parts))  # type: ignore[attr-defined]
    return ttl


class Clock:
    def __init__(self, now: float) -> None:
        self.current = now

    def now(self) -> float:
        return self.current


# -- results written by settle ----------------------------------------------------------


def test_a_tracked_ack_stores_its_result_and_state(backend: Backend) -> None:
    settlement = run_job(backend, Outcome(value={"total": 3}))
    assert settlement.tracked
    [stored] = backend.get_results(["j1"])
    assert stored is not None
    assert ResultRecord.decode(stored) == ResultRecord(JobState.SUCCEEDED, {"total": 3},
                                                       finished_at=NOW)
    info = backend.job_info("j1")
    assert info["state"] == "succeeded"
    assert float(info["finished_at"]) == NOW
    assert backend.in_progress("w") == []


def test_get_results_keeps_the_order_and_says_none_where_nothing_is_stored(
        backend: Backend) -> None:
    run_job(backend, Outcome(value=1), jid="a")
    run_job(backend, Outcome(value=2), jid="b")
    found = backend.get_results(["b", "missing", "a"])
    assert [None if text is None else ResultRecord.decode(text).value for text in found] == [
        2, None, 1]
    assert backend.get_results([]) == []


def test_a_tracked_bury_stores_a_failed_record(backend: Backend) -> None:
    settlement = run_job(backend, Outcome(error=ValueError("bad input")), retry=0)
    assert settlement.action is Action.BURY
    [stored] = backend.get_results(["j1"])
    assert stored is not None
    record = ResultRecord.decode(stored)
    assert (record.state, record.error_class, record.error_message) == (
        JobState.FAILED, "ValueError", "bad input")
    assert backend.job_info("j1")["state"] == "failed"
    assert [entry.payload.jid for entry in backend.entries("dead")] == ["j1"]


def test_a_tracked_retry_stores_its_state_and_count_and_no_result(backend: Backend) -> None:
    settlement = run_job(backend, Outcome(error=ValueError("flaky")), retry=3)
    assert settlement.action is Action.RETRY
    assert backend.get_results(["j1"]) == [None]
    info = backend.job_info("j1")
    assert (info["state"], info["retry_count"]) == ("retrying", "1")
    assert "finished_at" not in info


def test_an_untracked_settle_stores_nothing(backend: Backend) -> None:
    settlement = run_job(backend, Outcome(value=1), options=None)
    assert not settlement.tracked
    assert backend.get_results(["j1"]) == [None]
    assert backend.job_info("j1") == {}
    client = getattr(backend, "client", None)
    if client is not None:  # not even an empty key
        assert client.exists(backend.keys("result", "j1"),  # type: ignore[attr-defined]
                             backend.keys("jobinfo", "j1")) == 0  # type: ignore[attr-defined]


def test_a_later_result_replaces_an_earlier_one(backend: Backend) -> None:
    run_job(backend, Outcome(error=ValueError("first")), retry=0)
    run_job(backend, Outcome(value="second"), now=NOW + 5)
    [stored] = backend.get_results(["j1"])
    assert stored is not None
    assert ResultRecord.decode(stored) == ResultRecord(JobState.SUCCEEDED, "second",
                                                       finished_at=NOW + 5)
    assert backend.job_info("j1")["state"] == "succeeded"
    client = getattr(backend, "client", None)
    if client is not None:
        assert client.llen(backend.keys("result", "j1")) == 1  # type: ignore[attr-defined]


def test_a_retry_then_a_success_merges_into_one_info_record(backend: Backend) -> None:
    backend.set_job_info("j1", info_fields(state=JobState.RUNNING, progress=0.5), 600)
    run_job(backend, Outcome(error=ValueError("flaky")), retry=3)
    run_job(backend, Outcome(value=7), now=NOW + 10, retry=3)
    info = backend.job_info("j1")
    assert (info["state"], info["retry_count"], info["progress"]) == ("succeeded", "1", "0.5")
    assert float(info["finished_at"]) == NOW + 10


# -- waiting for a result --------------------------------------------------------------


def test_wait_result_returns_at_once_when_stored(backend: Backend) -> None:
    run_job(backend, Outcome(value="done"))
    started = time.monotonic()
    found = backend.wait_result("j1", 5)
    assert found is not None
    assert ResultRecord.decode(found).value == "done"
    assert time.monotonic() - started < 1
    assert backend.wait_result("j1", 0) == found  # a stored result is never consumed


def test_wait_result_times_out_with_none(backend: Backend) -> None:
    started = time.monotonic()
    assert backend.wait_result("nobody", SHORT) is None
    assert SHORT * 0.9 <= time.monotonic() - started < SHORT + 1
    assert backend.wait_result("nobody", 0) is None


def test_two_waiters_are_woken_by_a_settle_from_another_thread(backend: Backend) -> None:
    delivery = push_and_fetch(backend)
    settlement = decide(Outcome(value=[1, 2]), decode(delivery.raw), TRACKED, NOW, 0.5)
    waiters = [in_thread(lambda: backend.wait_result("j1", 10)) for _ in range(2)]
    time.sleep(0.2)  # let both block
    assert all(thread.is_alive() for thread, _ in waiters)
    started = time.monotonic()
    backend.settle("w", delivery, settlement, NOW)
    for thread, out in waiters:
        thread.join(5)
        assert not thread.is_alive()
        assert out == [settlement.result]
    assert time.monotonic() - started < 5
    assert backend.get_results(["j1"]) == [settlement.result]  # still there for the next


def test_a_retry_does_not_wake_a_result_waiter(backend: Backend) -> None:
    delivery = push_and_fetch(backend, retry=3)
    settlement = decide(Outcome(error=ValueError("x")), decode(delivery.raw), TRACKED, NOW, 0.5)
    thread, out = in_thread(lambda: backend.wait_result("j1", 0.6))
    time.sleep(0.1)
    backend.settle("w", delivery, settlement, NOW)
    thread.join(5)
    assert out == [None]


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
def short_timeout_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A Redis backend whose socket timeout is 0.4 s: a blocking call may last 0.2 s."""
    yield from make_backend(request.param, timeout_s=0.4)


def test_a_wait_longer_than_the_socket_timeout_blocks_in_slices(
        short_timeout_backend: Backend) -> None:
    backend = short_timeout_backend
    started = time.monotonic()
    assert backend.wait_result("nobody", 0.9) is None
    assert backend.wait_run("nobody", 0.9) is False
    assert 1.7 <= time.monotonic() - started < 3
    delivery = push_and_fetch(backend)
    settlement = decide(Outcome(value=1), decode(delivery.raw), TRACKED, NOW, 0.5)
    thread, out = in_thread(lambda: backend.wait_result("j1", 5))
    time.sleep(0.7)  # a few slices have passed
    backend.settle("w", delivery, settlement, NOW)
    thread.join(5)
    assert out == [settlement.result]


# -- expiry ----------------------------------------------------------------------------


def test_a_result_and_its_info_expire_after_result_ttl(backend: Backend) -> None:
    options = JobOptions(store_result=True, result_ttl_s=30)
    if isinstance(backend, MemoryBackend):
        clock = Clock(5_000.0)
        backend = MemoryBackend(clock=clock)
        run_job(backend, Outcome(value=1), options=options)
        clock.current += 29.9
        assert backend.get_results(["j1"]) != [None]
        assert backend.job_info("j1")["state"] == "succeeded"
        clock.current += 0.2
        assert backend.get_results(["j1"]) == [None]
        assert backend.wait_result("j1", 0) is None
        assert backend.job_info("j1") == {}
        return
    run_job(backend, Outcome(value=1), options=options)
    for key in ("result", "jobinfo"):
        ttl = redis_pttl(backend, key, "j1")
        assert ttl is not None
        assert 0 < ttl <= 30_000


def test_set_job_info_merges_fields_and_sets_the_expiry(backend: Backend) -> None:
    assert backend.job_info("j1") == {}
    backend.set_job_info("j1", info_fields(state=JobState.RUNNING, worker="w1"), 60)
    backend.set_job_info("j1", info_fields(progress=0.25, message="a quarter"), 60)
    backend.set_job_info("j1", {"progress": "0.5"}, 60)
    assert backend.job_info("j1") == {"state": "running", "worker": "w1", "progress": "0.5",
                                      "message": "a quarter"}
    ttl = redis_pttl(backend, "jobinfo", "j1")
    assert ttl is None or 0 < ttl <= 60_000


def test_job_info_expires_by_the_memory_backends_clock() -> None:
    clock = Clock(10.0)
    backend = MemoryBackend(clock=clock)
    backend.set_job_info("j1", {"state": "running"}, 10)
    clock.current += 9
    backend.set_job_info("j1", {"progress": "0.5"}, 10)  # pushes the expiry back
    clock.current += 9
    assert backend.job_info("j1") == {"state": "running", "progress": "0.5"}
    clock.current += 1.5
    assert backend.job_info("j1") == {}
    backend.set_job_info("j1", {"progress": "0.75"}, 10)  # a fresh record
    assert backend.job_info("j1") == {"progress": "0.75"}


# -- waiting for a run ------------------------------------------------------------------


def fetch_node(backend: Backend) -> tuple[Delivery, int]:
    delivery = held(backend)
    node_id = decode(delivery.raw).node_id
    assert node_id is not None
    return delivery, node_id


def settle_node(backend: Backend, outcome: Outcome, now: float) -> Settlement:
    delivery, _ = fetch_node(backend)
    settlement = decide(outcome, decode(delivery.raw), JobOptions(), now, 0.5)
    backend.settle("w", delivery, settlement, now)
    return settlement


def test_wait_run_is_true_for_a_finished_run_and_false_on_timeout_for_a_running_one(
        backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    started = time.monotonic()
    assert backend.wait_run("run1", SHORT) is False
    assert SHORT * 0.9 <= time.monotonic() - started < SHORT + 1
    settle_node(backend, Outcome(value=1), 101.0)
    assert backend.wait_run("run1", 0) is False
    settle_node(backend, Outcome(value=2), 102.0)
    started = time.monotonic()
    assert backend.wait_run("run1", 5) is True  # succeeded, and compacted to its summary
    assert backend.wait_run("run1", 0) is True
    assert time.monotonic() - started < 1


def test_wait_run_of_an_unknown_run_times_out(backend: Backend) -> None:
    assert backend.wait_run("nobody", SHORT) is False


def test_an_empty_run_has_finished_at_creation(backend: Backend) -> None:
    state, transition = new_run(Chain())
    backend.create_run(state, transition, 100.0)
    assert backend.wait_run("run1", 0) is True


def test_a_cancelled_run_has_finished(backend: Backend) -> None:
    state, transition = new_run(Group(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    assert backend.cancel_run("run1", 100.5) is True
    assert backend.wait_run("run1", 0) is True


def test_waiters_are_woken_when_the_last_node_completes_in_another_thread(
        backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A")))
    backend.create_run(state, transition, 100.0)
    delivery, _ = fetch_node(backend)
    settlement = decide(Outcome(value=1), decode(delivery.raw), JobOptions(), 101.0, 0.5)
    waiters = [in_thread(lambda: backend.wait_run("run1", 10)) for _ in range(2)]
    time.sleep(0.2)
    assert all(thread.is_alive() for thread, _ in waiters)
    backend.settle("w", delivery, settlement, 101.0)
    for thread, out in waiters:
        thread.join(5)
        assert out == [True]


@pytest.fixture
def failed_run(backend: Backend) -> Backend:
    """run1 = A -> B, whose A died (it never retries): the run failed and finished."""
    state, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, node = fetch_node(backend)
    backend.fail_node("w", delivery, payload("run1.0", run_id="run1", node_id=node,
                                             error_class="ValueError", error_message="x"),
                      101.0)
    return backend


def test_a_failed_run_signals_until_retry_dead_revives_it(failed_run: Backend) -> None:
    backend = failed_run
    assert backend.wait_run("run1", 0) is True
    assert backend.retry_dead("run1.0", 102.0) is True
    assert backend.wait_run("run1", SHORT) is False  # running again
    settle_node(backend, Outcome(value=1), 103.0)
    assert backend.wait_run("run1", 0) is False
    settle_node(backend, Outcome(value=2), 104.0)
    assert backend.wait_run("run1", 0) is True


def test_a_node_dying_in_settle_finishes_the_run(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A"), sig("B")))
    backend.create_run(state, transition, 100.0)
    delivery, _ = fetch_node(backend)
    step = attrs.evolve(decode(delivery.raw), retry=0)
    settlement = decide(Outcome(error=ValueError("x")), step, JobOptions(), 101.0, 0.5)
    assert settlement.action is Action.BURY
    backend.settle("w", delivery, settlement, 101.0)
    assert backend.wait_run("run1", 0) is True
    assert backend.retry_dead("run1.0", 102.0) is True
    assert backend.wait_run("run1", 0) is False


def test_the_run_signal_lives_as_long_as_the_run(backend: Backend) -> None:
    state, transition = new_run(Chain(sig("A")))
    backend.create_run(state, transition, 100.0)
    settle_node(backend, Outcome(value=1), 101.0)
    done, run = redis_pttl(backend, "run", "run1", "done"), redis_pttl(backend, "run", "run1")
    if done is None or run is None:
        return
    assert 0 < done <= run + 1000
    assert run - done < 5000
    assert backend.extend_run_ttl("run1", 10 * 86_400, 102.0) is True  # the signal too
    done = redis_pttl(backend, "run", "run1", "done")
    assert done is not None
    assert done > 9 * 86_400_000


# -- stop requests ----------------------------------------------------------------------


def test_stop_requests_round_trip(backend: Backend) -> None:
    assert backend.stop_requests([]) == []
    assert backend.stop_requests(["jid:a"]) == []
    backend.request_stop(["jid:a", "run:r1"], NOW)
    backend.request_stop([], NOW)
    assert backend.stop_requests(["jid:b", "run:r1", "jid:a"]) == ["run:r1", "jid:a"]


def test_stop_requests_older_than_a_day_are_trimmed(backend: Backend) -> None:
    backend.request_stop(["jid:old"], NOW)
    backend.request_stop(["jid:recent"], NOW + 3600)
    backend.request_stop(["jid:new"], NOW + 86_400 + 1)
    assert backend.stop_requests(["jid:old", "jid:recent", "jid:new"]) == ["jid:recent",
                                                                          "jid:new"]
    backend.request_stop(["jid:recent"], NOW + 86_400 + 2)  # asked again: kept anew
    backend.request_stop(["jid:x"], NOW + 3600 + 86_400 + 10)
    assert backend.stop_requests(["jid:recent", "jid:new", "jid:x"]) == [
        "jid:recent", "jid:new", "jid:x"]
