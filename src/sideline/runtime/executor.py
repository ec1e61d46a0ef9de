"""Perform one fetched job: decode, look up, run through middleware, decide, settle.

What happens when a job ends is one pure decision (`core.settlement.decide`: ack, retry
at a time, or bury with a reason; the workflow event; the error record; the counters),
applied by ONE atomic backend call (`settle`), which also hands back the calling thread's
next job. Death handlers and observers see the settlement after it is written.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sideline.core.errors import (
    BackendError,
    PoisonPill,
    RunExpired,
    UnknownJob,
    WorkflowError,
)
from sideline.core.jobs import JobSpec
from sideline.core.payload import Payload, decode
from sideline.core.ports import Delivery, begun
from sideline.core.run import Begin
from sideline.core.settlement import Action, Outcome, Settlement, bury, decide
from sideline.runtime import typed
from sideline.runtime._env import new_id
from sideline.runtime.middleware import JobContext, run_server_chain, running
from sideline.runtime.observers import notify

if TYPE_CHECKING:
    from sideline.runtime.context import Runtime

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


def process(runtime: Runtime, worker_id: str, delivery: Delivery, *, on_error: ErrorSink | None = None,
            persist: Persist = _once, fetch_from: Sequence[str] = ()) -> Delivery | None:
    """Perform the job in `delivery` and settle it; never raises for a job's own failure.

    Every backend call goes through `persist`. Each is safe to repeat (completing a
    node twice counts once, acking twice is a no-op), so retrying after a lost reply
    cannot double anything.

    Whatever cannot be processed (an undecodable payload, an unknown job, a forged
    workflow step, an unexpected error while settling) goes to the dead set with a
    reason; nothing is left behind in the in-progress list of a live worker.

    Args:
        fetch_from: queues to take the caller's next job from in the settling call.

    Returns:
        The next job for the caller (already in its in-progress list), if one was asked
        for and found.

    Raises:
        BackendError: the backend failed and `persist` gave up (the worker is stopping);
            the job stays in the worker's in-progress list.
    """
    settler = _Settler(runtime, worker_id, delivery, persist, fetch_from)
    try:
        payload = decode(delivery.raw)
    except Exception as exc:  # decode raises PayloadError; be sure anyway
        return settler.bury_undecodable(exc)
    try:
        return _process(runtime, worker_id, payload, settler, on_error)
    except BackendError:
        raise
    except Exception as exc:  # the last line: dead-letter, never strand
        log.exception("could not process %s jid=%s", payload.name, payload.jid)
        return settler.bury(payload, exc,
                            f"could not process: {type(exc).__name__}: {exc}", workflow=False)


def _process(runtime: Runtime, worker_id: str, payload: Payload, settler: _Settler,
             on_error: ErrorSink | None) -> Delivery | None:
    max_recoveries = runtime.settings.max_recoveries
    if payload.recoveries > max_recoveries:
        reason = f"poison pill: recovered {payload.recoveries} times"
        return settler.bury(
            payload, PoisonPill(f"{reason} (max_recoveries={max_recoveries})"), reason)
    try:
        spec = runtime.registry.get(payload.name)
    except UnknownJob as exc:
        return settler.bury(payload, exc, str(exc))
    run_id, node_id = payload.run_id, payload.node_id
    if run_id is not None and node_id is not None:
        try:
            if settler.begin(run_id, node_id) is Begin.SKIP:
                return settler.apply(Settlement(Action.ACK, payload, processed=0))
        except WorkflowError as exc:  # the run is gone, or has no such node (a forged step)
            return settler.reject(payload, exc)
    started = time.perf_counter()
    context = JobContext(app=runtime.app, payload=payload, spec=spec, worker_id=worker_id)
    produced: list[dict[str, Any]] = []
    interrupted: KeyboardInterrupt | None = None
    notify(runtime.observers, "before_perform", context)
    try:
        with running(context):
            value = run_server_chain(runtime.server_middleware, context,
                                     lambda: _perform(runtime, spec, payload, produced))
        outcome = Outcome(value=value, opened_batches=tuple(context.opened))
    except BaseException as exc:  # a job's failure is data: retry or bury it
        if on_error is not None:
            on_error(payload, exc)
        outcome = Outcome(error=exc)
        if isinstance(exc, KeyboardInterrupt) and (
                threading.current_thread() is threading.main_thread()):
            interrupted = exc  # settled as a failure; a Ctrl-C in drain() still stops the caller
    elapsed_ms = (time.perf_counter() - started) * 1000
    notify(runtime.observers, "after_perform", context, outcome)
    now = runtime.clock.now()
    if outcome.succeeded and run_id is not None and produced and produced[-1]:
        # Written before the atomic advance: a crash in between re-runs the step, which
        # writes the same keys again (last write wins), so nothing is lost or doubled.
        values = typed.memory_values(spec, payload, produced[-1])
        ttl_s = runtime.settings.run_ttl_s
        settler.persist(lambda: runtime.backend.write(run_id, values, ttl_s, now))
    settlement = decide(outcome, payload, spec.options, now, runtime.random.random())
    try:
        following = settler.apply(settlement)
    except WorkflowError as exc:
        return settler.reject(payload, exc)
    _log(settlement, elapsed_ms)
    if settlement.exhausted and outcome.error is not None:
        notify(runtime.observers, "retries_exhausted", settlement.payload, outcome.error)
    notify(runtime.observers, "after_settle", payload, settlement)
    if interrupted is not None:
        raise interrupted
    return following


def _log(settlement: Settlement, elapsed_ms: float) -> None:
    payload = settlement.payload
    if settlement.action is Action.ACK:
        # DEBUG: a line per job written by the job's thread costs about a quarter of a
        # no-op job's time (issue "Throughput"); failures stay at WARNING and ERROR
        if log.isEnabledFor(logging.DEBUG):
            log.debug("done %s jid=%s run=%s in %.1f ms", payload.name, payload.jid,
                      payload.run_id or "-", elapsed_ms)
    elif settlement.action is Action.RETRY:
        log.warning("retry %s jid=%s at %.3f after %s: %s", payload.name, payload.jid,
                    settlement.retry_at or 0.0, payload.error_class, payload.error_message)
    else:
        log.error("dead %s jid=%s run=%s: %s", payload.name, payload.jid,
                  payload.run_id or "-", settlement.reason)


def _perform(runtime: Runtime, spec: JobSpec, payload: Payload,
             produced: list[dict[str, Any]]) -> Any:
    """Call the job; a typed one is hydrated from run memory and its output kept for it."""
    if not spec.typed:
        return runtime.perform(spec, payload.args, payload.kwargs)
    outcome = typed.perform(spec, typed.hydrate(runtime, spec, payload), payload.args, payload.kwargs)
    produced.append(outcome.memory)
    return outcome.value


class _Settler:
    """Settles one delivery: every backend call goes through `persist`."""

    def __init__(self, runtime: Runtime, worker_id: str, delivery: Delivery, persist: Persist,
                 fetch_from: Sequence[str]) -> None:
        self.runtime = runtime
        self.backend = runtime.backend
        self.worker_id = worker_id
        self.delivery = delivery
        self.persist = persist
        self.fetch_from = fetch_from

    def begin(self, run_id: str, node_id: int) -> Begin:
        """The step's begin: done by the call that fetched it, else one backend call."""
        decision = begun(self.delivery, run_id, node_id)
        if decision is not None:
            return decision
        now = self.runtime.clock.now()
        return self.persist(lambda: self.backend.begin_node(run_id, node_id, now))

    def apply(self, settlement: Settlement) -> Delivery | None:
        """Write the settlement in one atomic call; return the caller's next job, its
        workflow step already begun."""
        now = self.runtime.clock.now()
        settled = self.persist(lambda: self.backend.settle(
            self.worker_id, self.delivery, settlement, now, self.fetch_from,
            begin_next=bool(self.fetch_from)))
        return settled.next

    def bury(self, payload: Payload, exc: BaseException, reason: str, *,
             workflow: bool = True) -> Delivery | None:
        """Send a job to the dead set without running it (failing its workflow node unless
        `workflow` is False)."""
        settlement = bury(payload, exc, reason, self.runtime.clock.now(), workflow=workflow)
        _log(settlement, 0.0)
        try:
            following = self.apply(settlement)
        except WorkflowError:  # the run has no such node: keep the job, touch no run
            settlement = bury(payload, exc, reason, self.runtime.clock.now(), workflow=False)
            following = self.apply(settlement)
        notify(self.runtime.observers, "after_settle", payload, settlement)
        return following

    def reject(self, payload: Payload, exc: WorkflowError) -> Delivery | None:
        """Bury a workflow step its run cannot take (the run is gone, or has no such node),
        touching no run."""
        reason = str(exc) if isinstance(exc, RunExpired) else f"workflow step rejected: {exc}"
        return self.bury(payload, exc, reason, workflow=False)

    def bury_undecodable(self, exc: Exception) -> Delivery | None:
        """Keep an undecodable job in the dead set under a placeholder payload: its text in
        `args[0]` and, when the bytes are not UTF-8, the exact bytes in base64 in
        `kwargs["raw_base64"]`, so nothing is lost."""
        data = self.delivery.raw.encode("utf-8", "surrogateescape")
        text = data.decode("utf-8", "backslashreplace")
        extra = {} if text == self.delivery.raw else {
            "raw_base64": base64.b64encode(data).decode("ascii")}
        placeholder = Payload(name="<undecodable>", jid=new_id(), queue=self.delivery.queue,
                              args=[text], kwargs=extra, created_at=self.runtime.clock.now())
        return self.bury(placeholder, exc, f"undecodable payload: {exc}", workflow=False)
