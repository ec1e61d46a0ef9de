"""The settle combiner (adapters/redis/_combine.py): every caller gets its own answer,
whatever rode in one call with it; a caller sends alone while fewer than `in_flight`
calls are on their way; errors stay with their settle; the lead always passes on (no
caller is left waiting). Most tests hold one call in flight (`in_flight=1`) to queue the
others behind it."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from sideline.adapters.redis._combine import MAX_BATCH, Combiner


class Echo:
    """A fake Redis: a settle's reply is its own arguments; counts the calls it got."""

    def __init__(self, delay_s: float = 0.0, jitter_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self.ones = 0
        self.batches: list[int] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()

    def _pause(self) -> None:
        self.gate.wait(10)
        time.sleep(self.delay_s + random.random() * self.jitter_s)

    def one(self, keys: list[Any], args: list[Any]) -> Any:
        with self.lock:
            self.ones += 1
        self._pause()
        if args and args[0] == "fail":
            raise ValueError(f"refused {keys}")
        return ("reply", keys, args)

    def many(self, items: Sequence[tuple[list[Any], list[Any]]]) -> list[Any]:
        with self.lock:
            self.batches.append(len(items))
        self._pause()
        if any(args and args[0] == "down" for _, args in items):
            raise ConnectionError("the connection went away")
        return [ValueError(f"refused {keys}") if args and args[0] == "fail"
                else ("reply", keys, args) for keys, args in items]


def _run_threads(count: int, target: Any) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _join(threads: list[threading.Thread], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.01))
    assert not any(thread.is_alive() for thread in threads), "a caller was left waiting"


def _off_main(call: Any) -> Any:
    """`call()` on a worker-like thread (the main thread never takes a turn); its result,
    or the exception it raised, as the caller's own."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(("value", call()))
        except Exception as exc:
            outcome.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    _join([thread])
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


def _queued_behind(echo: Echo, first: int, count: int, settle: Any,
                   settle_s: float = 0.2) -> None:
    """Start `first` callers, whose calls stay in flight (the gate is closed), then the
    callers up to `count`, which queue behind them; open the gate; wait for them all."""
    echo.gate.clear()
    leaders = _run_threads(first, settle)
    while echo.ones < first:
        time.sleep(0.001)
    rest = [threading.Thread(target=settle, args=(i,), daemon=True) for i in range(first, count)]
    for thread in rest:
        thread.start()
    time.sleep(settle_s)  # all of them queued behind the calls in flight
    assert echo.ones == first
    echo.gate.set()
    _join(leaders + rest)


def test_a_lone_caller_sends_its_settle_alone() -> None:
    echo = Echo()
    combiner = Combiner(echo.one, echo.many)
    for i in range(5):
        assert _off_main(lambda i=i: combiner.call([f"k{i}"], [i])) == ("reply", [f"k{i}"], [i])
    assert (echo.ones, echo.batches) == (5, [])


def test_settles_arriving_during_a_call_go_together_in_the_next() -> None:
    echo = Echo()
    combiner = Combiner(echo.one, echo.many, in_flight=1)
    answers: dict[int, Any] = {}

    def settle(i: int) -> None:
        answers[i] = combiner.call([f"k{i}"], [i])

    _queued_behind(echo, 1, 6, settle)
    assert answers == {i: ("reply", [f"k{i}"], [i]) for i in range(6)}
    assert echo.ones == 1
    assert echo.batches == [5]


def test_an_error_stays_with_its_own_settle() -> None:
    echo = Echo()
    combiner = Combiner(echo.one, echo.many, in_flight=1)
    outcomes: dict[int, Any] = {}

    def settle(i: int) -> None:
        try:
            outcomes[i] = combiner.call([f"k{i}"], ["fail" if i == 3 else i])
        except ValueError as exc:
            outcomes[i] = exc

    _queued_behind(echo, 1, 5, settle)
    assert isinstance(outcomes[3], ValueError)
    assert "k3" in str(outcomes[3])
    assert all(outcomes[i] == ("reply", [f"k{i}"], [i]) for i in (0, 1, 2, 4))


def test_a_failed_call_fails_each_settle_in_it_and_the_next_calls_go_on() -> None:
    echo = Echo()
    combiner = Combiner(echo.one, echo.many, in_flight=1)
    outcomes: dict[int, Any] = {}

    def settle(i: int) -> None:
        try:
            outcomes[i] = combiner.call([f"k{i}"], ["down" if i == 2 else i])
        except ConnectionError as exc:
            outcomes[i] = exc

    _queued_behind(echo, 1, 4, settle)
    assert outcomes[0] == ("reply", ["k0"], [0])
    assert all(isinstance(outcomes[i], ConnectionError) for i in (1, 2, 3))
    # the turn was given back
    assert _off_main(lambda: combiner.call(["after"], [9])) == ("reply", ["after"], [9])


def test_a_lone_callers_failure_passes_the_lead_on() -> None:
    echo = Echo()
    combiner = Combiner(echo.one, echo.many)
    combiner = Combiner(echo.one, echo.many, in_flight=1)
    with pytest.raises(ValueError, match="refused"):
        _off_main(lambda: combiner.call(["k"], ["fail"]))
    assert _off_main(lambda: combiner.call(["k"], [1])) == ("reply", ["k"], [1])


def test_a_batch_carries_at_most_max_batch_settles() -> None:
    echo = Echo()
    combiner = Combiner(echo.one, echo.many, in_flight=1)
    count = MAX_BATCH + 10
    answers: dict[int, Any] = {}

    def settle(i: int) -> None:
        answers[i] = combiner.call([f"k{i}"], [i])

    _queued_behind(echo, 1, count, settle, settle_s=0.5)
    assert len(answers) == count
    assert max(echo.batches) <= MAX_BATCH
    assert echo.ones + sum(echo.batches) == count


def test_many_threads_each_get_their_own_answers() -> None:
    """16 threads x 300 settles with jittered calls: every answer is the caller's own,
    no caller waits forever, and calls are fewer than settles."""
    echo = Echo(jitter_s=0.0005)
    combiner = Combiner(echo.one, echo.many)
    wrong: list[tuple[int, int, Any]] = []

    def settle(i: int) -> None:
        for n in range(300):
            answer = combiner.call([f"t{i}"], [n])
            if answer != ("reply", [f"t{i}"], [n]):
                wrong.append((i, n, answer))

    _join(_run_threads(16, settle), timeout_s=60)
    assert wrong == []
    assert echo.ones + sum(echo.batches) == 16 * 300
    assert echo.ones + len(echo.batches) < 16 * 300


def test_up_to_in_flight_calls_go_at_once_and_the_rest_queue() -> None:
    echo = Echo()
    combiner = Combiner(echo.one, echo.many, in_flight=3)
    answers: dict[int, Any] = {}

    def settle(i: int) -> None:
        answers[i] = combiner.call([f"k{i}"], [i])

    _queued_behind(echo, 3, 7, settle)  # three alone, the other four queued
    assert answers == {i: ("reply", [f"k{i}"], [i]) for i in range(7)}
    assert echo.ones + sum(echo.batches) == 7
    # the four queued went with the three calls' turns: in at most three calls
    assert (echo.ones - 3) + len(echo.batches) <= 3
    assert _off_main(lambda: combiner.call(["again"], [1])) == ("reply", ["again"], [1])


def test_the_main_thread_sends_alone_and_never_queues() -> None:
    """A KeyboardInterrupt reaches only the main thread; were it queued, the settles behind
    it would wait for a turn it never takes. It sends its settle alone, even while every
    turn is taken."""
    gate = threading.Event()
    sent: list[str] = []

    def one(keys: list[Any], args: list[Any]) -> Any:
        sent.append(keys[0])
        if keys[0] == "busy":
            gate.wait(10)
        return ("reply", keys, args)

    def many(items: Sequence[tuple[list[Any], list[Any]]]) -> list[Any]:
        raise AssertionError("nothing should be queued")

    combiner = Combiner(one, many, in_flight=1)
    busy = _run_threads(1, lambda i: combiner.call(["busy"], [i]))
    while not sent:
        time.sleep(0.001)
    opener = threading.Timer(3.0, gate.set)  # would free a queued main thread, late
    opener.start()
    try:
        started = time.monotonic()
        assert combiner.call(["main"], [1]) == ("reply", ["main"], [1])
        assert time.monotonic() - started < 1.0
        assert not gate.is_set()  # the busy call was still in flight
    finally:
        gate.set()
        opener.cancel()
    _join(busy)
    assert sent == ["busy", "main"]
