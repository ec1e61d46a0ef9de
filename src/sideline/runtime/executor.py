"""Perform one fetched job: decode, look up, run through middleware, then settle it.

Settling is one backend call per outcome, each atomic: success acks (and for a
workflow step advances the run in the same step), failure schedules a retry or
kills the job into the dead set (and for a workflow step fails the run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from sideline.core.errors import PayloadError, RunExpired, UnknownJob
from sideline.core.payload import Payload, decode
from sideline.core.ports import Delivery
from sideline.core.retry import next_retry_delay_s
from sideline.core.run import Begin
from sideline.runtime._env import new_id
from sideline.runtime.middleware import JobContext, run_server_chain

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["ErrorSink", "process"]

log = logging.getLogger("sideline.worker")

ErrorSink = Callable[[Payload, BaseException], None]
"""Told about every error a job raised (drain() uses it to re-raise in the test thread)."""


def process(app: App, worker_id: str, delivery: Delivery, on_error: ErrorSink | None = None
            ) -> None:
    """Perform the job in `delivery` and settle it; never raises for a job's own failure."""
    backend = app.backend
    try:
        payload = decode(delivery.raw)
    except PayloadError as exc:
        _bury_unreadable(app, worker_id, delivery, exc)
        return
    try:
        spec = app.registry.get(payload.name)
    except UnknownJob as exc:
        _bury(app, worker_id, delivery, payload, exc, reason=str(exc))
        return
    run_id, node_id = payload.run_id, payload.node_id
    if run_id is not None and node_id is not None:
        try:
            if backend.begin_node(run_id, node_id, app.clock.now()) is Begin.SKIP:
                backend.ack(worker_id, delivery)
                return
        except RunExpired as exc:
            _bury(app, worker_id, delivery, payload, exc, reason=str(exc))
            return
    started = time.perf_counter()
    context = JobContext(app=app, payload=payload, spec=spec, worker_id=worker_id)
    try:
        run_server_chain(app.server_middleware, context,
                         lambda: app.perform(spec, payload.args, payload.kwargs))
    except Exception as exc:  # a job's failure is data: retry or bury it, keep the worker alive
        if on_error is not None:
            on_error(payload, exc)
        _failed(app, worker_id, delivery, payload, exc)
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    if run_id is not None and node_id is not None:
        try:
            backend.complete_node(worker_id, delivery, run_id, node_id, app.clock.now())
        except RunExpired as exc:
            _bury(app, worker_id, delivery, payload, exc, reason=str(exc))
            return
    else:
        backend.ack(worker_id, delivery)
    log.info("done %s jid=%s run=%s in %.1f ms", payload.name, payload.jid, run_id or "-",
             elapsed_ms)


def _failed(app: App, worker_id: str, delivery: Delivery, payload: Payload,
            exc: BaseException) -> None:
    now = app.clock.now()
    spec = app.registry.get(payload.name)
    failed = attrs.evolve(payload, error_class=type(exc).__name__, error_message=str(exc),
                          failed_at=now)
    delay_s = next_retry_delay_s(payload.retry_count, payload.retry, exc, app.random.random(),
                                 spec.options.retry_in)
    if delay_s is not None:
        log.warning("retry %s jid=%s in %.0f s after %s: %s", payload.name, payload.jid, delay_s,
                    type(exc).__name__, exc)
        app.backend.retry_later(worker_id, delivery,
                                attrs.evolve(failed, retry_count=payload.retry_count + 1),
                                now + delay_s)
        return
    reason = f"retries exhausted ({payload.retry}) after {type(exc).__name__}: {exc}"
    if payload.retry == 0:
        reason = f"failed (retry disabled) with {type(exc).__name__}: {exc}"
    _bury(app, worker_id, delivery, failed, exc, reason=reason, exhausted=True)


def _bury(app: App, worker_id: str, delivery: Delivery, payload: Payload, exc: BaseException,
          *, reason: str, exhausted: bool = False) -> None:
    """Move a job to the dead set (and fail its workflow node), after the death hooks."""
    now = app.clock.now()
    dead = attrs.evolve(payload, dead_reason=reason, failed_at=payload.failed_at or now,
                        error_class=payload.error_class or type(exc).__name__,
                        error_message=payload.error_message or str(exc))
    log.error("dead %s jid=%s run=%s: %s", payload.name, payload.jid, payload.run_id or "-",
              reason)
    if exhausted:
        _call_hooks(app, dead, exc)
    if dead.run_id is not None and dead.node_id is not None and not isinstance(exc, RunExpired):
        app.backend.fail_node(worker_id, delivery, dead, now)
    else:
        app.backend.kill(worker_id, delivery, dead, now)


def _bury_unreadable(app: App, worker_id: str, delivery: Delivery, exc: PayloadError) -> None:
    """Keep a malformed job's text in the dead set, under a placeholder payload."""
    placeholder = Payload(name="<unreadable>", jid=new_id(), queue=delivery.queue,
                          args=[delivery.raw], created_at=app.clock.now())
    _bury(app, worker_id, delivery, placeholder, exc, reason=f"unreadable payload: {exc}")


def _call_hooks(app: App, payload: Payload, exc: BaseException) -> None:
    hooks = [app.exhausted_hooks.get(payload.name), *app.death_handlers]
    for hook in hooks:
        if hook is None:
            continue
        try:
            hook(payload, exc)
        except Exception:  # a broken hook must not lose the job: log and go on to bury it
            log.exception("death handler %r failed for jid=%s", hook, payload.jid)
