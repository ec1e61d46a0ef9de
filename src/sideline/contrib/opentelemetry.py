"""OpenTelemetry tracing: one trace from enqueue to perform, across processes.

`instrument(app)` adds three pieces to an App:

- client middleware (`TracingMiddleware`) that wraps each push in a PRODUCER span
  "sideline enqueue <job>" and writes that span's context into `payload.headers` with
  the global propagator (W3C `traceparent` by default);
- server middleware (`TracingServerMiddleware`) that reads the context back from the
  headers and runs the job in a CONSUMER span "sideline perform <job>", its child;
- an observer (`TracingObserver`) that records each settlement as a span
  "sideline settle <job>" (child of the enqueue span) with `sideline.action`.

The headers travel in the payload, so retries, recoveries and workflow steps pushed by
the backend keep them. Needs the `opentelemetry` extra (`opentelemetry-api`).
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from sideline.core.payload import Payload
from sideline.runtime.observers import Observer

if TYPE_CHECKING:
    from sideline.core.settlement import Settlement
    from sideline.runtime.app import App
    from sideline.runtime.middleware import JobContext

__all__ = ["TracingMiddleware", "TracingObserver", "TracingServerMiddleware", "instrument"]

_TRACER_NAME = "sideline"
_RUNS_REMEMBERED = 256


def _tracer(tracer_provider: trace.TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)


def _attributes(payload: Payload, operation: str) -> dict[str, str | int]:
    attributes: dict[str, str | int] = {
        "messaging.system": "sideline",
        "messaging.operation.type": operation,
        "messaging.destination.name": payload.queue,
        "messaging.message.id": payload.jid,
    }
    if payload.run_id is not None:
        attributes["sideline.run_id"] = payload.run_id
    return attributes


def _run_of(payload: Payload) -> str | None:
    """The workflow run a payload belongs to: a step's run_id, or a run callback's
    (jid "<run_id>.success" / "<run_id>.failure")."""
    if payload.run_id is not None:
        return payload.run_id
    head, _, tail = payload.jid.rpartition(".")
    return head if head and tail in ("success", "failure") else None


def _extract(payload: Payload) -> otel_context.Context:
    return propagate.extract(payload.headers)


class TracingMiddleware:
    """Client middleware: a PRODUCER span per push, its context injected into the headers.

    Workflow steps are built together at `Workflow.run()`; when no span is active there,
    the steps of one run would each start their own trace, so the first one opens a
    short span "sideline run <run_id>" and every step (and callback) of that run is
    parented on it: a run is always one trace.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = _tracer(tracer_provider)
        self._runs: OrderedDict[str, otel_context.Context] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, payload: Payload) -> Payload:
        parent = self._parent(payload)
        with self.tracer.start_as_current_span(
                f"sideline enqueue {payload.name}", context=parent, kind=SpanKind.PRODUCER,
                attributes=_attributes(payload, "send")):
            headers = dict(payload.headers)
            propagate.inject(headers)
        return attrs.evolve(payload, headers=headers)

    def _parent(self, payload: Payload) -> otel_context.Context | None:
        """None (the current context) unless this is a workflow step built with no span
        active: then the run's own span (opened by its first step)."""
        run_id = _run_of(payload)
        if run_id is None or trace.get_current_span().get_span_context().is_valid:
            return None
        with self._lock:
            known = self._runs.get(run_id)
            if known is None:
                span = self.tracer.start_span(f"sideline run {run_id}", kind=SpanKind.INTERNAL,
                                              attributes={"messaging.system": "sideline",
                                                          "sideline.run_id": run_id})
                span.end()  # it marks the run's creation; the steps only need its context
                known = trace.set_span_in_context(span)
                self._runs[run_id] = known
                while len(self._runs) > _RUNS_REMEMBERED:
                    self._runs.popitem(last=False)
            return known


class TracingServerMiddleware:
    """Server middleware: runs the job in a CONSUMER span whose parent is the context
    found in its headers; an exception is recorded and sets the span's status to ERROR.

    For an async job the chain returns a coroutine: the span stays open until it ends.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = _tracer(tracer_provider)

    def __call__(self, context: JobContext, call_next: Callable[[], Any]) -> Any:
        payload = context.payload
        attributes = _attributes(payload, "process")
        attributes["sideline.retry_count"] = payload.retry_count
        span = self.tracer.start_span(f"sideline perform {payload.name}", context=_extract(payload),
                                      kind=SpanKind.CONSUMER, attributes=attributes)
        with trace.use_span(span, end_on_exit=False, record_exception=False,
                            set_status_on_exception=False):
            try:
                result = call_next()
            except BaseException as exc:
                _failed(span, exc)
                span.end()
                raise
        if inspect.isawaitable(result):
            return _awaited(span, result)
        span.end()
        return result


async def _awaited(span: trace.Span, awaitable: Any) -> Any:
    with trace.use_span(span, end_on_exit=True, record_exception=False,
                        set_status_on_exception=False):
        try:
            return await awaitable
        except BaseException as exc:
            _failed(span, exc)
            raise


def _failed(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class TracingObserver(Observer):
    """Records each settlement as a span "sideline settle <job>", a child of the job's
    enqueue span, with `sideline.action` ("ack", "retry" or "bury")."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = _tracer(tracer_provider)

    def after_settle(self, payload: Payload, settlement: Settlement) -> None:
        attributes = _attributes(payload, "settle")
        attributes["sideline.action"] = str(settlement.action)
        attributes["sideline.retry_count"] = payload.retry_count
        if settlement.reason is not None:
            attributes["sideline.reason"] = settlement.reason
        span = self.tracer.start_span(f"sideline settle {payload.name}", context=_extract(payload),
                                      kind=SpanKind.INTERNAL, attributes=attributes)
        span.end()


def instrument(app: App, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace `app`'s pushes, performs and settlements (idempotent: a second call on the
    same app adds nothing).

    Args:
        app: the App whose `client_middleware`, `server_middleware` and `observers` get
            the tracing pieces appended (they run after what is already there).
        tracer_provider: where spans go; None uses OpenTelemetry's global provider.
    """
    if not any(isinstance(m, TracingMiddleware) for m in app.client_middleware):
        app.client_middleware.append(TracingMiddleware(tracer_provider))
    if not any(isinstance(m, TracingServerMiddleware) for m in app.server_middleware):
        app.server_middleware.append(TracingServerMiddleware(tracer_provider))
    if not any(isinstance(o, TracingObserver) for o in app.observers):
        app.observers.append(TracingObserver(tracer_provider))

