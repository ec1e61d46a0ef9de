"""settle_many (one call, several settles) does what the same settles do one by one, and
an error in one settle is that settle's alone; worker threads that settle together share
calls (the combiner) on real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from sideline.core.ports import Delivery
from sideline.core.settlement import Action, NodeEvent, Settlement
from tests.contract.helpers import payload
from tests.support import fake_redis_backend, real_redis_backend


@pytest.fixture(params=["fakeredis", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[RedisBackend]:
    if request.param == "fakeredis":
        yield from fake_redis_backend()
    else:
        yield from real_redis_backend()


def _captured(backend: RedisBackend) -> list[tuple[list[object], list[object]]]:
    """Record the keys and arguments of every settle call instead of sending it."""
    calls: list[tuple[list[object], list[object]]] = []

    class Capture:
        def __call__(self, keys: list[object], args: list[object]) -> object:
            calls.append((list(keys), list(args)))
            raise _Captured

    backend.scripts._scripts["settle"] = Capture()  # type: ignore[assignment]
    return calls


class _Captured(Exception):
    pass


def _settle_args(backend: RedisBackend, worker: str, delivery: Delivery, now: float,
                 **fields: object) -> tuple[list[object], list[object]]:
    """The keys and arguments settle() would send for `delivery` (nothing is sent)."""
    probe = RedisBackend(backend.client, namespace=backend.keys.namespace)
    calls = _captured(probe)
    job = decode(delivery.raw)
    with pytest.raises(_Captured):
        probe.settle(worker, delivery, Settlement(Action.ACK, job, **fields), now, ["default"])
    return calls[0]


def _settle_many(backend: RedisBackend,
                 items: list[tuple[list[object], list[object]]]) -> list[object]:
    """Call settle_many as the combiner does (adapters/redis/_settle.py)."""
    counts = [count for keys, args in items for count in (len(keys), len(args))]
    replies: list[object] = backend.scripts["settle_many"](
        keys=[key for keys, _ in items for key in keys],
        args=[len(items), *counts, *(arg for _, args in items for arg in args)])
    return replies


def _two_held(backend: RedisBackend) -> tuple[tuple[list[object], list[object]], ...]:
    """Jobs a, b, c pushed; w1 holds a and w2 holds b: the settle arguments of each."""
    backend.push([payload("a"), payload("b"), payload("c")])
    first = backend.fetch("w1", ["default"], 0)
    second = backend.fetch("w2", ["default"], 0)
    assert first is not None
    assert second is not None
    return (_settle_args(backend, "w1", first, 100.0),
            _settle_args(backend, "w2", second, 100.0))


def test_several_settles_in_one_call_each_ack_their_job_and_take_the_next(
        backend: RedisBackend) -> None:
    backend.push([payload(f"j{i}") for i in range(6)])
    held = [backend.fetch(f"w{i}", ["default"], 0) for i in range(3)]
    assert all(held)
    items = [_settle_args(backend, f"w{i}", delivery, 100.0) for i, delivery in enumerate(held)
             if delivery is not None]
    replies: list[Any] = _settle_many(backend, items)
    assert len(replies) == 3
    taken = sorted(decode(reply[2]).jid for reply in replies)
    assert taken == ["j3", "j4", "j5"]  # each settle handed its caller the next job
    for i in range(3):  # each worker now holds only its next job
        assert [decode(raw).jid for raw in backend.in_progress(f"w{i}")] == [
            decode(replies[i][2]).jid]
    assert backend.stats(["processed"]) == {"processed": 3}


def test_an_error_in_one_settle_leaves_the_others_done(backend: RedisBackend) -> None:
    good, (bad_keys, bad_args) = _two_held(backend)
    # a step of a run that does not exist: settle.lua answers "expired" for it alone
    forged = list(bad_args)
    forged[11], forged[12], forged[13] = str(NodeEvent.SUCCEEDED), "no-such-run", "0"
    run_keys = backend.keys.run("no-such-run")
    bad = ([*run_keys, backend.keys.memory("no-such-run"), *bad_keys[6:]], forged)
    items = [good, bad]
    replies: list[Any] = _settle_many(backend, items)
    assert replies[1] == "expired"
    assert decode(replies[0][2]).jid == "c"  # the good one acked and took the next job
    assert [decode(raw).jid for raw in backend.in_progress("w2")] == ["b"]  # untouched


def test_worker_threads_that_settle_together_share_calls() -> None:
    """On real Redis, eight threads draining no-op jobs send fewer settle calls than they
    settle jobs, and every job runs exactly once."""
    backends = real_redis_backend()
    backend = next(backends)
    try:
        app = App(backend)
        seen: list[int] = []
        lock = threading.Lock()

        @app.job(name="count", retry=False)
        def count(value: int) -> None:
            with lock:
                seen.append(value)

        count.enqueue_bulk([[i] for i in range(2000)])
        client = backend.client
        client.config_resetstat()
        with app.worker(concurrency=8, fetch_timeout_s=0.2):
            deadline = time.monotonic() + 60
            while len(seen) < 2000 and time.monotonic() < deadline:
                time.sleep(0.02)
        assert sorted(seen) == list(range(2000))
        stats = client.info("commandstats")
        settles = int(stats.get("cmdstat_fcall", {}).get("calls", 0))
        assert settles < 2000  # settle_many carried several jobs' settles at once
    finally:
        backends.close()


def test_a_failing_command_in_one_settle_is_its_error_alone(backend: RedisBackend) -> None:
    good, (bad_keys, bad_args) = _two_held(backend)
    wrong = backend.keys("not-a-list")
    backend.client.set(wrong, "a string")  # LREM on it fails with WRONGTYPE
    bad = ([*bad_keys[:6], wrong, *bad_keys[7:]], bad_args)
    items = [bad, good]
    replies: list[Any] = _settle_many(backend, items)
    assert isinstance(replies[0], Exception)
    assert "WRONGTYPE" in str(replies[0]) or "wrong kind" in str(replies[0]).lower()
    assert decode(replies[1][2]).jid == "c"
    assert [decode(raw).jid for raw in backend.in_progress("w2")] == ["b"]
