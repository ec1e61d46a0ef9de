"""Perform one fetched job: decode, look up, run through middleware, then settle it.

Settling is one backend call per outcome, each atomic: success acks (and for a
workflow step advances the run in the same step), failure schedules a retry or
kills the job into the dead set (and for a workflow step fails the run).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from sideline.core.errors import (
    BackendError,
    PoisonPill,
    RunExpired,
    SchemaError,
    UnknownJob,
    WorkflowError,
)
from sideline.core.jobs import JobSpec
from sideline.core.payload import Payload, decode
from sideline.core.ports import Delivery
from sideline.core.retry import next_retry_delay_s
from sideline.core.run import Begin, Transition
from sideline.runtime import typed
from sideline.runtime._env import new_id
from sideline.runtime.middleware import JobContext, run_server_chain, running

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["ErrorSink", "Persist", "process"]

log = logging.getLogger("sideline.worker")

ErrorSink = Callable[[Payload, BaseException], None]
"""Told about every error a job raised (drain() uses it to re-raise in the test thread)."""

T = TypeVar("T")


class Persist(Protocol):
    """Runs one backend call; the worker's version retries it while Redis is unreachable."""

    def __call__(self, call: Callable[[], T], /) -> T: ...


def _once(call: Callable[[], T]) -> T:
    return call()


def process(app: App, worker_id: str, delivery: Delivery, on_error: ErrorSink | None = None,
            persist: Persist = _once) -> None:
    """Perform the job in `delivery` and settle it; never raises for a job's own failure.

    Every backend call goes through `persist`. Each is safe to repeat (completing a
    node twice counts once, acking twice is a no-op), so retrying after a lost reply
    cannot double anything.

    Whatever cannot be processed (an undecodable payload, an unknown job, a forged
    workflow step, an unexpected error while settling) goes to the dead set with a
    reason; nothing is left behind in the in-progress list of a live worker.

    Raises:
        BackendError: the backend failed and `persist` gave up (the worker is stopping);
            the job stays in the worker's in-progress list.
    """
    settle = _Settler(app, worker_id, delivery, persist)
    try:
        payload = decode(delivery.raw)
    except Exception as exc:  # decode raises PayloadError; be sure anyway
        settle.bury_undecodable(exc)
        return
    try:
        _process(app, worker_id, payload, settle, on_error)
    except BackendError:
        raise
    except Exception as exc:  # the last line: dead-letter, never strand
        log.exception("could not process %s jid=%s", payload.name, payload.jid)
        settle.bury(payload, exc, reason=f"could not process: {type(exc).__name__}: {exc}",
                    workflow=False)


def _process(app: App, worker_id: str, payload: Payload, settle: _Settler,
             on_error: ErrorSink | None) -> None:
    if payload.recoveries > app.max_recoveries:
        reason = f"poison pill: recovered {payload.recoveries} times"
        settle.bury(payload, PoisonPill(f"{reason} (max_recoveries={app.max_recoveries})"),
                    reason=reason)
        return
    try:
        spec = app.registry.get(payload.name)
    except UnknownJob as exc:
        settle.bury(payload, exc, reason=str(exc))
        return
    run_id, node_id = payload.run_id, payload.node_id
    if run_id is not None and node_id is not None:
        try:
            if settle.begin(run_id, node_id) is Begin.SKIP:
                settle.ack()
                return
        except RunExpired as exc:
            settle.bury(payload, exc, reason=str(exc))
            return
        except WorkflowError as exc:  # e.g. a forged step: the run has no such node
            settle.bury(payload, exc, reason=f"workflow step rejected: {exc}", workflow=False)
            return
    started = time.perf_counter()
    context = JobContext(app=app, payload=payload, spec=spec, worker_id=worker_id)
    produced: list[dict[str, Any]] = []
    try:
        with running(context):
            run_server_chain(app.server_middleware, context,
                             lambda: _perform(app, spec, payload, produced))
    except BaseException as exc:  # a job's failure is data: retry or bury it
        if on_error is not None:
            on_error(payload, exc)
        settle.failed(payload, exc)
        if isinstance(exc, KeyboardInterrupt) and (
                threading.current_thread() is threading.main_thread()):
            raise  # settled as a failure; a Ctrl-C in drain() still stops the caller
        return
    elapsed_ms = (time.perf_counter() - started) * 1000
    if run_id is not None and node_id is not None:
        if produced and produced[-1]:
            # Written before the atomic advance: a crash in between re-runs the step, which
            # writes the same keys again (last write wins), so nothing is lost or doubled.
            values = typed.memory_values(spec, payload, produced[-1])
            now = app.clock.now()
            settle.persist(lambda: app.backend.write(run_id, values, app.run_ttl_s, now))
        try:
            settle.complete(run_id, node_id)  # a run that finishes clears its memory too
        except RunExpired as exc:
            settle.bury(payload, exc, reason=str(exc))
            return
        except WorkflowError as exc:
            settle.bury(payload, exc, reason=f"workflow step rejected: {exc}", workflow=False)
            return
    else:
        settle.ack()
    if payload.unique_key is not None and payload.unique_token is not None:
        key, token = payload.unique_key, payload.unique_token
        settle.persist(lambda: app.backend.release_lock(key, token))
    log.info("done %s jid=%s run=%s in %.1f ms", payload.name, payload.jid, run_id or "-",
             elapsed_ms)


def _perform(app: App, spec: JobSpec, payload: Payload, produced: list[dict[str, Any]]) -> Any:
    """Call the job; a typed one is hydrated from run memory and its output kept for it."""
    if not spec.typed:
        return app.perform(spec, payload.args, payload.kwargs)
    outcome = typed.perform(spec, typed.hydrate(app, spec, payload), payload.args, payload.kwargs)
    produced.append(outcome.memory)
    return outcome.value


class _Settler:
    """Settles one delivery: every backend call goes through `persist`."""

    def __init__(self, app: App, worker_id: str, delivery: Delivery, persist: Persist) -> None:
        self.app = app
        self.backend = app.backend
        self.worker_id = worker_id
        self.delivery = delivery
        self.persist = persist

    def begin(self, run_id: str, node_id: int) -> Begin:
        now = self.app.clock.now()
        return self.persist(lambda: self.backend.begin_node(run_id, node_id, now))

    def ack(self) -> None:
        self.persist(lambda: self.backend.ack(self.worker_id, self.delivery))

    def complete(self, run_id: str, node_id: int) -> Transition:
        now = self.app.clock.now()
        return self.persist(lambda: self.backend.complete_node(
            self.worker_id, self.delivery, run_id, node_id, now))

    def failed(self, payload: Payload, exc: BaseException) -> None:
        """Schedule a retry, or bury the job when its retries are exhausted.

        Data that does not fit a typed job's schema is buried at once (retrying the same
        data cannot help), unless the job was declared with retry_schema_errors=True.
        """
        app = self.app
        now = app.clock.now()
        spec = app.registry.get(payload.name)
        failed = attrs.evolve(payload, error_class=type(exc).__name__, error_message=str(exc),
                              failed_at=now)
        if isinstance(exc, SchemaError) and not spec.options.retry_schema_errors:
            self.bury(failed, exc, reason=str(exc), exhausted=True)
            return
        delay_s = next_retry_delay_s(payload.retry_count, payload.retry, exc,
                                     app.random.random(), spec.options.retry_in)
        if delay_s is not None:
            log.warning("retry %s jid=%s in %.3g s after %s: %s", payload.name, payload.jid,
                        delay_s, type(exc).__name__, exc)
            retry = attrs.evolve(failed, retry_count=payload.retry_count + 1)
            self.persist(lambda: self.backend.retry_later(self.worker_id, self.delivery, retry,
                                                          now + delay_s))
            return
        reason = f"retries exhausted ({payload.retry}) after {type(exc).__name__}: {exc}"
        if payload.retry == 0:
            reason = f"failed (retry disabled) with {type(exc).__name__}: {exc}"
        self.bury(failed, exc, reason=reason, exhausted=True)

    def bury(self, payload: Payload, exc: BaseException, *, reason: str,
             exhausted: bool = False, workflow: bool = True) -> None:
        """Move a job to the dead set (and fail its workflow node unless `workflow` is
        False), after the death hooks."""
        now = self.app.clock.now()
        dead = attrs.evolve(payload, dead_reason=reason, failed_at=payload.failed_at or now,
                            error_class=payload.error_class or type(exc).__name__,
                            error_message=payload.error_message or str(exc))
        log.error("dead %s jid=%s run=%s: %s", payload.name, payload.jid,
                  payload.run_id or "-", reason)
        if exhausted:
            _call_hooks(self.app, dead, exc)
        if workflow and dead.run_id is not None and dead.node_id is not None and not isinstance(
                exc, RunExpired):
            try:
                self.persist(
                    lambda: self.backend.fail_node(self.worker_id, self.delivery, dead, now))
            except WorkflowError:  # the run has no such node: keep the job, touch no run
                self.persist(lambda: self.backend.kill(self.worker_id, self.delivery, dead, now))
        else:
            self.persist(lambda: self.backend.kill(self.worker_id, self.delivery, dead, now))

    def bury_undecodable(self, exc: Exception) -> None:
        """Keep an undecodable job in the dead set under a placeholder payload: its text in
        `args[0]` and, when the bytes are not UTF-8, the exact bytes in base64 in
        `kwargs["raw_base64"]`, so nothing is lost."""
        data = self.delivery.raw.encode("utf-8", "surrogateescape")
        text = data.decode("utf-8", "backslashreplace")
        extra = {} if text == self.delivery.raw else {
            "raw_base64": base64.b64encode(data).decode("ascii")}
        placeholder = Payload(name="<undecodable>", jid=new_id(), queue=self.delivery.queue,
                              args=[text], kwargs=extra, created_at=self.app.clock.now())
        self.bury(placeholder, exc, reason=f"undecodable payload: {exc}", workflow=False)


def _call_hooks(app: App, payload: Payload, exc: BaseException) -> None:
    hooks = [app.exhausted_hooks.get(payload.name), *app.death_handlers]
    for hook in hooks:
        if hook is None:
            continue
        try:
            hook(payload, exc)
        except Exception:  # a broken hook must not lose the job: log and go on to bury it
            log.exception("death handler %r failed for jid=%s", hook, payload.jid)
