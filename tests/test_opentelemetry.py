"""sideline.contrib.opentelemetry: one trace from enqueue to perform, across processes and
across the steps of a workflow run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sideline import App, Chain, MemoryBackend, Payload, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.contrib.opentelemetry import (
    TracingMiddleware,
    TracingObserver,
    TracingServerMiddleware,
    instrument,
)
from tests.redis.helpers import spawn_worker, wait_until
from tests.support import memory_or_fake_backend, real_redis_backend

# One provider for the module, never set as the global one: instrument() gets it explicitly.
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture(autouse=True)
def _clear_spans() -> Iterator[None]:
    EXPORTER.clear()
    yield
    EXPORTER.clear()


def spans(prefix: str = "") -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.name.startswith(prefix)]


def only(name: str) -> ReadableSpan:
    found = spans(name)
    assert [s.name for s in found] == [name]
    return found[0]


def traced_app(backend: Any = None) -> App:
    app = App(backend or MemoryBackend())
    instrument(app, tracer_provider=PROVIDER)
    return app


def test_instrument_is_idempotent() -> None:
    app = traced_app()
    instrument(app, tracer_provider=PROVIDER)
    assert sum(isinstance(m, TracingMiddleware) for m in app.client_middleware) == 1
    assert sum(isinstance(m, TracingServerMiddleware) for m in app.server_middleware) == 1
    assert sum(isinstance(o, TracingObserver) for o in app.observers) == 1


def test_enqueue_and_perform_by_an_embedded_worker_are_one_trace() -> None:
    app = traced_app()
    done: list[int] = []
    app.job(name="rec", queue="mail")(done.append)
    handle = app.enqueue("rec", [7])
    with app.worker(queues=["mail"], concurrency=1, fetch_timeout_s=0.05) as worker:
        deadline = time.monotonic() + 5
        while not spans("sideline settle") and time.monotonic() < deadline:
            time.sleep(0.01)
    assert done == [7]
    assert worker.processed == 1
    enqueue, perform = only("sideline enqueue rec"), only("sideline perform rec")
    settle = only("sideline settle rec")
    assert enqueue.kind is SpanKind.PRODUCER
    assert perform.kind is SpanKind.CONSUMER
    assert enqueue.parent is None
    assert perform.parent is not None
    assert perform.parent.span_id == enqueue.context.span_id
    assert {perform.context.trace_id, settle.context.trace_id} == {enqueue.context.trace_id}
    assert dict(enqueue.attributes or {}) == {
        "messaging.system": "sideline", "messaging.operation.type": "send",
        "messaging.destination.name": "mail", "messaging.message.id": handle.jid}
    assert dict(perform.attributes or {})["sideline.retry_count"] == 0
    assert dict(perform.attributes or {})["messaging.destination.name"] == "mail"
    assert dict(settle.attributes or {})["sideline.action"] == "ack"
    assert perform.status.status_code is StatusCode.UNSET


def test_the_trace_context_travels_in_the_payload_headers() -> None:
    app = traced_app()
    app.job(name="rec")(lambda: None)
    pushed: list[Payload] = []
    app.client_middleware.append(lambda payload: pushed.append(payload) or payload)
    app.enqueue("rec")
    [payload] = pushed
    assert list(payload.headers) == ["traceparent"]
    enqueue = only("sideline enqueue rec")
    trace_id, span_id = f"{enqueue.context.trace_id:032x}", f"{enqueue.context.span_id:016x}"
    assert payload.headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")


def test_a_failing_job_has_an_error_status_and_an_exception_event() -> None:
    app = traced_app()

    @app.job(name="boom", retry=0)
    def boom() -> None:
        raise ValueError("card declined")

    boom.enqueue()
    app.drain()
    perform = only("sideline perform boom")
    assert perform.status.status_code is StatusCode.ERROR
    assert perform.status.description == "ValueError: card declined"
    [event] = perform.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "ValueError"
    assert dict(event.attributes or {})["exception.message"] == "card declined"
    assert dict(only("sideline settle boom").attributes or {})["sideline.action"] == "bury"


@pytest.fixture(params=["memory", "fakeredis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from memory_or_fake_backend(request.param)


def test_a_retry_keeps_the_trace_context(backend: Any) -> None:
    app = traced_app(backend)
    calls: list[int] = []

    @app.job(name="flaky", retry=1, retry_in=lambda count, exc: 0)
    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TimeoutError("first try")

    flaky.enqueue()
    app.drain()
    assert len(calls) == 2
    enqueue = only("sideline enqueue flaky")
    performs = spans("sideline perform flaky")
    assert [dict(s.attributes or {})["sideline.retry_count"] for s in performs] == [0, 1]
    assert {s.parent.span_id for s in performs if s.parent} == {enqueue.context.span_id}
    assert [dict(s.attributes or {})["sideline.action"] for s in spans("sideline settle")] == [
        "retry", "ack"]


def test_a_dead_job_retried_by_hand_keeps_the_trace_context(backend: Any) -> None:
    app = traced_app(backend)
    calls: list[int] = []

    @app.job(name="once", retry=0)
    def once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first try")

    once.enqueue()
    app.drain()
    [entry] = app.admin.dead().entries
    assert entry.payload.headers  # the dead payload still carries the context
    assert app.admin.retry_now("dead", [entry.key]) == 1
    app.drain()
    assert len(calls) == 2
    enqueue = only("sideline enqueue once")
    performs = spans("sideline perform once")
    assert [s.status.status_code for s in performs] == [StatusCode.ERROR, StatusCode.UNSET]
    assert {s.parent.span_id for s in performs if s.parent} == {enqueue.context.span_id}


def test_an_async_job_runs_inside_its_perform_span() -> None:
    app = traced_app()
    seen: list[bool] = []

    @app.job(name="nap")
    async def nap() -> None:
        from opentelemetry import trace  # noqa: PLC0415 (read inside the job)

        seen.append(trace.get_current_span().get_span_context().is_valid)

    nap.enqueue()
    app.drain()
    assert seen == [True]
    perform = only("sideline perform nap")
    assert perform.end_time is not None
    assert perform.parent is not None


def test_a_chain_run_started_inside_a_span_is_one_trace_under_it(backend: Any) -> None:
    app = traced_app(backend)
    step = app.job(name="step")(lambda name: name)
    with PROVIDER.get_tracer("test").start_as_current_span("request") as request:
        run_id = Workflow(Chain(step.s("A"), step.s("B"), step.s("C"))).run()
    app.drain()
    performs = spans("sideline perform step")
    assert len(performs) == 3
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in performs} == {trace_id}
    enqueues = {s.context.span_id: s for s in spans("sideline enqueue step")}
    for perform in performs:
        assert perform.parent is not None
        producer = enqueues[perform.parent.span_id]  # each step's own enqueue span...
        assert producer.parent is not None
        assert producer.parent.span_id == request.get_span_context().span_id  # ...under run()
        assert dict(perform.attributes or {})["sideline.run_id"] == run_id


def test_a_chain_run_started_outside_any_span_is_still_one_trace() -> None:
    app = traced_app()
    step = app.job(name="step")(lambda name: name)
    run_id = Workflow(Chain(step.s("A"), step.s("B"), step.s("C"))).run()
    app.drain()
    run_span = only(f"sideline run {run_id}")
    performs = spans("sideline perform step")
    assert len(performs) == 3
    assert {s.context.trace_id for s in performs} == {run_span.context.trace_id}


def test_malformed_headers_send_the_job_to_the_dead_set() -> None:
    backend = MemoryBackend()
    app = traced_app(backend)
    ran: list[int] = []
    app.job(name="rec")(ran.append)
    raw = json.dumps({"name": "rec", "jid": "j1", "queue": "default", "args": [1],
                      "headers": {"traceparent": 5}})
    backend.push_raw("default", raw)
    app.drain()
    assert ran == []
    [dead] = [e.payload for e in backend.entries("dead")]
    assert dead.name == "<undecodable>"
    assert dead.args == [raw]
    assert dead.dead_reason is not None
    assert dead.dead_reason.startswith(
        "undecodable payload: payload field 'headers' value of 'traceparent' must be a str, got int")


@pytest.fixture
def redis_ns() -> Iterator[RedisBackend]:
    yield from real_redis_backend()


@pytest.mark.redis
def test_a_job_performed_by_another_process_continues_the_enqueue_trace(
        redis_ns: RedisBackend, tmp_path: Path) -> None:
    from tests.redis.apps.otel_app import build_app  # noqa: PLC0415 (its module needs the SDK)

    spans_path = tmp_path / "worker-spans.jsonl"
    app = build_app(redis_ns.keys.namespace)  # the job declared, but traced by PROVIDER here
    app.client_middleware.clear()
    app.server_middleware.clear()
    app.observers.clear()
    instrument(app, tracer_provider=PROVIDER)
    try:
        handle = app.enqueue("traced", [21])
        enqueue = only("sideline enqueue traced")
        worker = spawn_worker(redis_ns, tmp_path, "otel", app="tests.redis.apps.otel_app:app",
                              env={"OTEL_SPANS_PATH": str(spans_path)})
        try:
            def performed() -> list[dict[str, Any]]:
                lines = spans_path.read_text().splitlines() if spans_path.exists() else []
                return [line for line in map(json.loads, lines)
                        if line["name"] == "sideline perform traced"]

            [perform] = wait_until(performed, 20, "the worker's perform span")
        finally:
            worker.kill()
    finally:
        app.backend.close()
    assert perform["trace_id"] == f"{enqueue.context.trace_id:032x}"
    assert perform["parent"] == f"{enqueue.context.span_id:016x}"
    assert handle.jid
