"""Observers: the enqueue hooks, and `notify` isolating an observer that raises."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sideline import App, Observer, Payload
from sideline.runtime.observers import HOOKS, notify

from .conftest import FakeClock


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def before_enqueue(self, payload: Payload) -> None:
        self.calls.append(("before", payload))

    def after_enqueue(self, payload: Payload) -> None:
        self.calls.append(("after", payload))


class Broken(Observer):
    def before_enqueue(self, payload: Payload) -> None:
        raise RuntimeError("observer bug")

    def after_enqueue(self, payload: Payload) -> None:
        raise RuntimeError("observer bug")


def test_enqueue_calls_before_then_after_with_the_pushed_payload(clock: FakeClock) -> None:
    recorder = Recorder()
    app = App(clock=clock, observers=[recorder])

    @app.job(name="send")
    def send(to: str) -> None: ...

    jid = send.enqueue("a@b.c")
    assert [(hook, p.jid, p.args) for hook, p in recorder.calls] == [
        ("before", jid, ["a@b.c"]), ("after", jid, ["a@b.c"])]
    assert recorder.calls[0][1].enqueued_at is None
    assert recorder.calls[1][1].enqueued_at == 1000.0


def test_scheduled_and_bulk_pushes_are_observed(clock: FakeClock) -> None:
    recorder = Recorder()
    app = App(clock=clock)
    app.observers.append(recorder)

    @app.job(name="later")
    def later(x: int) -> None: ...

    later.enqueue_in(60, 1)
    jids = later.enqueue_bulk([[2], [3]])
    assert [(hook, p.args) for hook, p in recorder.calls] == [
        ("before", [1]), ("after", [1]),
        ("before", [2]), ("before", [3]), ("after", [2]), ("after", [3])]
    assert [p.jid for hook, p in recorder.calls[-2:]] == jids


def test_a_job_dropped_by_client_middleware_is_not_observed(clock: FakeClock) -> None:
    recorder = Recorder()
    app = App(clock=clock, observers=[recorder])
    app.client_middleware.append(lambda payload: None)

    @app.job(name="dropped")
    def dropped() -> None: ...

    assert dropped.enqueue() is None
    assert recorder.calls == []


def test_a_raising_observer_is_logged_and_the_push_and_later_observers_go_on(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    app = App(clock=clock, testing="collect", observers=[Broken(), recorder])
    ran: list[int] = []

    @app.job(name="work")
    def work(x: int) -> None:
        ran.append(x)

    with caplog.at_level(logging.ERROR, logger="sideline.observers"):
        jid = work.enqueue(7)
    assert jid is not None
    assert [hook for hook, _ in recorder.calls] == ["before", "after"]
    assert app.drain() == 1
    assert ran == [7]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "before_enqueue" in messages[0]
    assert "after_enqueue" in messages[1]


def test_notify_calls_every_observer_in_order_and_rejects_unknown_hooks() -> None:
    seen: list[str] = []

    class Named(Observer):
        def __init__(self, name: str) -> None:
            self.name = name

        def heartbeat(self, worker_id: str) -> None:
            seen.append(f"{self.name}:{worker_id}")

    notify([Named("a"), Observer(), Named("b")], "heartbeat", "w1")
    assert seen == ["a:w1", "b:w1"]
    with pytest.raises(ValueError, match="not an Observer hook"):
        notify([Named("a")], "heart_beat", "w1")


def test_the_base_observer_has_a_no_op_for_every_hook() -> None:
    observer = Observer()
    assert {name for name in vars(Observer) if not name.startswith("_")} == HOOKS
    for name in HOOKS:
        assert callable(getattr(observer, name))


class Exhaustion(Observer):
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def retries_exhausted(self, payload: Payload, error: BaseException) -> None:
        self.calls.append(f"observer {payload.dead_reason} {type(error).__name__}")

    def after_settle(self, payload: Payload, settlement: Any) -> None:
        self.calls.append(f"after_settle {settlement.action}")


def test_retries_exhausted_runs_the_jobs_hook_the_death_handlers_then_observers(
        clock: FakeClock) -> None:
    calls: list[str] = []
    app = App(clock=clock, observers=[Exhaustion(calls)], testing="collect")

    def own(payload: Payload, exc: BaseException) -> None:
        calls.append(f"own {exc}")

    def broken(payload: Payload, exc: BaseException) -> None:
        calls.append("broken")
        raise RuntimeError("death handler bug")

    @app.job(name="fails", retry=False, on_exhausted=own)
    def fails() -> None:
        raise ValueError("boom")

    app.death_handlers.append(broken)
    app.death_handlers.append(lambda payload, exc: calls.append("global"))
    fails.enqueue()
    app.drain(raise_errors=False)
    assert calls == ["own boom", "broken", "global",
                     "observer failed (retry disabled) with ValueError: boom ValueError",
                     "after_settle bury"]


def test_a_job_that_retries_is_not_exhausted(clock: FakeClock) -> None:
    calls: list[str] = []
    app = App(clock=clock, observers=[Exhaustion(calls)], testing="collect")

    @app.job(name="flaky", retry=2)
    def flaky() -> None:
        raise ValueError("boom")

    flaky.enqueue()
    app.drain(run_scheduled=False)
    assert calls == ["after_settle retry"]
    app.drain()  # the two retries run, the second is the last
    assert calls == ["after_settle retry", "after_settle retry",
                     "observer retries exhausted (2) after ValueError: boom ValueError",
                     "after_settle bury"]
