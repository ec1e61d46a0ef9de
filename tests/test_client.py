"""Declaring and enqueueing jobs: options, JSON-only args, client middleware, testing modes."""

from __future__ import annotations

import datetime

import pytest

from sideline import App, ConfigurationError, JobRejected, Payload, SerializationError, UnknownJob
from sideline.core.payload import decode

from .conftest import FakeClock


def queued(app: App, queue: str = "default") -> list[Payload]:
    return [decode(raw) for raw in app.backend.peek(queue)]


def test_enqueue_builds_a_payload_with_the_declared_options(clock: FakeClock) -> None:
    app = App(clock=clock)

    @app.job(queue="mail", retry=3, tags=["io"])
    def send(to: str, urgent: bool = False) -> None: ...

    jid = send.enqueue("a@b.c", urgent=True)
    [payload] = queued(app, "mail")
    assert payload.jid == jid
    assert (payload.name, payload.args, payload.kwargs) == (
        f"{__name__}.test_enqueue_builds_a_payload_with_the_declared_options.<locals>.send",
        ["a@b.c"], {"urgent": True})
    assert (payload.retry, payload.tags, payload.created_at, payload.enqueued_at) == (
        3, ["io"], 1000.0, 1000.0)


def test_enqueue_in_and_at_go_to_the_scheduled_set(clock: FakeClock) -> None:
    app = App(clock=clock)

    @app.job(name="later")
    def later(x: int) -> None: ...

    later.enqueue_in(2.5, 1)
    later.enqueue_at(1500.0, 2)
    assert [(e.at, e.payload.args) for e in app.backend.entries("scheduled")] == [
        (1002.5, [1]), (1500.0, [2])]
    assert queued(app) == []


def test_enqueue_bulk_pushes_in_one_call(clock: FakeClock) -> None:
    app = App(clock=clock)

    @app.job(name="item")
    def item(n: int) -> None: ...

    jids = item.enqueue_bulk([[n] for n in range(100)])
    assert len(set(jids)) == 100
    assert [p.args[0] for p in queued(app)][:3] == [0, 1, 2]
    assert app.backend.queue_sizes()["default"] == 100


def test_non_json_argument_fails_naming_it_and_pushes_nothing() -> None:
    app = App()

    @app.job(name="report")
    def report(day: object, options: object = None) -> None: ...

    with pytest.raises(SerializationError) as info:
        report.enqueue("ok", options={"since": datetime.date(2026, 1, 1)})
    assert str(info.value) == (
        "report keyword argument 'options'['since'] is a date, which is not JSON-native "
        "(pass a JSON-native value such as an id or an ISO string instead): "
        "datetime.date(2026, 1, 1)")
    with pytest.raises(SerializationError, match="report argument 0 is a tuple"):
        report.s((1, 2))
    assert app.backend.queue_sizes() == {}


def test_unknown_job_name_cannot_be_enqueued() -> None:
    with pytest.raises(UnknownJob, match="unknown job 'nope'"):
        App().enqueue("nope")


def test_duplicate_job_name_is_a_configuration_error() -> None:
    app = App()
    app.job(name="x")(lambda: None)
    with pytest.raises(ConfigurationError, match="job name 'x' is already declared"):
        app.job(name="x")(lambda: None)


@pytest.mark.parametrize(("options", "message"), [
    ({"queue": "bad queue"}, "queue name 'bad queue' is invalid"),
    ({"retry": -1}, "retry must be True, False or a count >= 0"),
])
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        App().job(**options)(lambda: None)  # type: ignore[arg-type]


def test_class_job_needs_perform() -> None:
    app = App()

    class NoPerform:
        pass

    with pytest.raises(ConfigurationError, match="needs a perform"):
        app.job(NoPerform)


def test_client_middleware_can_change_drop_or_reject(clock: FakeClock) -> None:
    app = App(clock=clock)

    @app.job(name="j")
    def j(n: int) -> None: ...

    def tag(payload: Payload) -> Payload:
        return Payload(**{**payload.__getstate__(), "tags": ["tagged"]})  # type: ignore[arg-type]

    def drop_odd(payload: Payload) -> Payload | None:
        return None if payload.args[0] % 2 else payload

    def refuse_big(payload: Payload) -> Payload:
        if payload.args[0] > 100:
            raise JobRejected(f"n={payload.args[0]} is too big")
        return payload

    app.client_middleware.extend([tag, drop_odd, refuse_big])
    assert j.enqueue(1) is None
    assert j.enqueue(2) is not None
    with pytest.raises(JobRejected, match="n=102 is too big"):
        j.enqueue(102)
    assert [(p.args, p.tags) for p in queued(app)] == [([2], ["tagged"])]


def test_calling_a_job_runs_it_here() -> None:
    app = App()

    @app.job
    def add(a: int, b: int) -> int:
        return a + b

    @app.job
    class Mul:
        def perform(self, a: int, b: int) -> int:
            return a * b

    assert add(2, 3) == 5
    assert Mul(2, 3) == 6  # type: ignore[call-arg]


def test_testing_mode_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="testing must be None, 'inline' or 'collect'"):
        App(testing="sometimes")  # type: ignore[arg-type]


def test_inline_mode_runs_at_push_and_collect_waits_for_drain() -> None:
    ran: list[int] = []
    inline = App(testing="inline")
    collect = App(testing="collect")
    for app in (inline, collect):
        app.job(name="rec")(ran.append)
    inline.enqueue("rec", [1])
    assert ran == [1]
    collect.enqueue("rec", [2])
    collect.enqueue("rec", [3])
    assert ran == [1]
    assert collect.drain() == 2
    assert ran == [1, 2, 3]


def test_drain_runs_scheduled_jobs_without_waiting_and_can_reraise(clock: FakeClock) -> None:
    app = App(testing="collect", clock=clock)
    ran: list[str] = []
    app.job(name="rec")(ran.append)

    @app.job(name="bad", retry=False)
    def bad() -> None:
        raise RuntimeError("broken on purpose")

    app.enqueue("rec", ["tomorrow"], at=clock.now() + 86_400)
    assert app.drain(run_scheduled=False) == 0
    assert app.drain() == 1
    assert ran == ["tomorrow"]
    app.enqueue("bad")
    with pytest.raises(RuntimeError, match="broken on purpose"):
        app.drain(raise_errors=True)
    assert [e.payload.name for e in app.backend.entries("dead")] == ["bad"]
