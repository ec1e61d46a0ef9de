"""Perform one fetched job: decode, look up, run through middleware, decide, settle.

What happens when a job ends is one pure decision (`core.settlement.decide`: ack, retry
at a time, or bury with a reason; the workflow event; the error record; the counters),
applied by ONE atomic backend call (`settle`), which also hands back the calling thread's
next job. Death handlers and observers see the settlement after it is written.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from sideline.core.errors import (
    BackendError,
    JobStopped,
    JobTimeout,
    PoisonPill,
    RunExpired,
    SerializationError,
    UnknownJob,
    WorkflowError,
)
from sideline.core.jobs import JobOptions, JobSpec
from sideline.core.payload import Payload, check_json_native, decode
from sideline.core.ports import Delivery, begun
from sideline.core.results import JobState, info_fields
from sideline.core.run import Begin
from sideline.core.settlement import (
    Action,
    Outcome,
    Settlement,
    bury,
    decide,
    is_plain_ack,
    recording,
)
from sideline.runtime import typed
from sideline.runtime._env import new_id
from sideline.runtime.aio import AsyncRunner, run_blocking
from sideline.runtime.control import JobControl, RunningJobs
from sideline.runtime.middleware import JobContext, run_server_chain, running
from sideline.runtime.observers import notify

if TYPE_CHECKING:
    from sideline.runtime.context import Runtime
    from sideline.runtime.isolation import ProcessPool

__all__ = ["Defer", "ErrorSink", "Lanes", "Persist", "process"]

log = logging.getLogger("sideline.worker")

ErrorSink = Callable[[Payload, BaseException], None]
"""Told about every error a job raised (drain() uses it to re-raise in the test thread)."""
Defer = Callable[[Delivery, Settlement], None]
"""Takes a plain ack (core.settlement.is_plain_ack) to write later, with others; whoever
writes it calls the observers' after_settle then."""

T = TypeVar("T")

Offload = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking call without blocking the loop (the loop's settle threads)."""


class Persist(Protocol):
    """Runs one backend call; the worker's version retries it while Redis is unreachable."""

    def __call__(self, call: Callable[[], T], /) -> T: ...


def _once(call: Callable[[], T]) -> T:
    return call()


@attrs.frozen
class Lanes:
    """Where a worker runs what is not a plain thread job, and how it tracks running jobs.

    Attributes:
        running: the worker's running jobs, for stop requests.
        aio: the event loop async jobs are handed to (None: an async job runs to its end
            in the calling thread, as drain() does).
        pool: the child processes of `isolation="process"` jobs (None: they run in the
            calling thread, as drain() does).
        adopt: takes over the accounting of a job handed to the loop from the thread that
            fetched it; returns the function that releases it once settled.
        accepting: whether a thread may still wait for a free slot of the loop.
    """

    running: RunningJobs | None = None
    aio: AsyncRunner | None = None
    pool: ProcessPool | None = None
    adopt: Callable[[Delivery], Callable[[], None]] | None = None
    accepting: Callable[[], bool] = lambda: True


_NO_LANES = Lanes()


def process(runtime: Runtime, worker_id: str, delivery: Delivery, *, on_error: ErrorSink | None = None,
            persist: Persist = _once, fetch_from: Sequence[str] = (),
            lanes: Lanes = _NO_LANES, defer: Defer | None = None) -> Delivery | None:
    """Perform the job in `delivery` and settle it; never raises for a job's own failure.

    Every backend call goes through `persist`. Each is safe to repeat (completing a
    node twice counts once, acking twice is a no-op), so retrying after a lost reply
    cannot double anything.

    Whatever cannot be processed (an undecodable payload, an unknown job, a forged
    workflow step, an unexpected error while settling) goes to the dead set with a
    reason; nothing is left behind in the in-progress list of a live worker.

    An async job is handed to `lanes.aio` when there is one (this returns None at once;
    the loop settles it), else run to its end here.

    Args:
        fetch_from: queues to take the caller's next job from in the settling call.
        defer: where a plain ack goes instead of being written now (a worker taking
            several jobs per call); the job then hands back no next job.

    Returns:
        The next job for the caller (already in its in-progress list), if one was asked
        for and found.

    Raises:
        BackendError: the backend failed and `persist` gave up (the worker is stopping);
            the job stays in the worker's in-progress list.
    """
    settler = _Settler(runtime, worker_id, delivery, persist, fetch_from, defer=defer)
    try:
        payload = decode(delivery.raw)
    except Exception as exc:  # decode raises PayloadError; be sure anyway
        return settler.bury_undecodable(exc)
    try:
        started = _start(runtime, worker_id, payload, settler)
        if not isinstance(started, _Job):
            return started.following
        job = started
        if job.spec.is_async and lanes.aio is not None:
            _hand_over(job, lanes, on_error)
            return None
        if job.spec.is_async:
            outcome = run_blocking(lambda: job.perform_async(lanes.running, on_error))
        else:
            outcome = job.perform(lanes.running, lanes.pool, on_error)
        return job.finish(outcome)
    except BackendError:
        raise
    except Exception as exc:  # the last line: dead-letter, never strand
        log.exception("could not process %s jid=%s", payload.name, payload.jid)
        return settler.bury(payload, exc,
                            f"could not process: {type(exc).__name__}: {exc}", workflow=False)


@attrs.frozen
class _Settled:
    """A job settled before it ran (a poison pill, an unknown job, a skipped step)."""

    following: Delivery | None


def _start(runtime: Runtime, worker_id: str, payload: Payload,
           settler: _Settler) -> _Job | _Settled:
    """Check the job may run (and begin its workflow step); settle it now if not."""
    max_recoveries = runtime.settings.max_recoveries
    if payload.recoveries > max_recoveries:
        reason = f"poison pill: recovered {payload.recoveries} times"
        return _Settled(settler.bury(
            payload, PoisonPill(f"{reason} (max_recoveries={max_recoveries})"), reason))
    try:
        spec = runtime.registry.get(payload.name)
    except UnknownJob as exc:
        return _Settled(settler.bury(payload, exc, str(exc)))
    settler.options = spec.options
    run_id, node_id = payload.run_id, payload.node_id
    if run_id is not None and node_id is not None:
        try:
            if settler.begin(run_id, node_id) is Begin.SKIP:
                return _Settled(settler.apply(Settlement(Action.ACK, payload, processed=0)))
        except WorkflowError as exc:  # the run is gone, or has no such node (a forged step)
            return _Settled(settler.reject(payload, exc))
    if spec.options.store_result:
        fields = info_fields(state=JobState.RUNNING, worker=worker_id,
                             started_at=repr(runtime.clock.now()))
        settler.persist(lambda: runtime.backend.set_job_info(
            payload.jid, fields, spec.options.result_ttl_s))
    return _Job(runtime, worker_id, payload, spec, settler)


def _hand_over(job: _Job, lanes: Lanes, on_error: ErrorSink | None) -> None:
    """Run an async job on the loop; the loop's settle threads settle it."""
    aio = lanes.aio
    assert aio is not None
    job.settler.fetch_from = ()  # its settle runs on a settle thread: no next job for it
    job.settler.defer = None  # and is written there
    release = lanes.adopt(job.settler.delivery) if lanes.adopt is not None else _nothing

    async def run() -> None:
        outcome = await job.perform_async(lanes.running, on_error, offload=aio.settle)
        try:
            await aio.settle(lambda: job.finish(outcome))
        except BackendError:
            log.exception("could not settle %s jid=%s while stopping; it is pushed back",
                          job.payload.name, job.payload.jid)
            return  # still held: stop() pushes it back
        except Exception as exc:
            log.exception("could not process %s jid=%s", job.payload.name, job.payload.jid)
            failure, reason = exc, f"could not process: {type(exc).__name__}: {exc}"
            await aio.settle(lambda: job.settler.bury(job.payload, failure, reason,
                                                      workflow=False))
        release()

    aio.submit(run, lanes.accepting)  # not started: still held, so stop() pushes it back


def _nothing() -> None:
    return None


def _call_soon(loop: asyncio.AbstractEventLoop, call: Callable[[], object]) -> None:
    loop.call_soon_threadsafe(call)


async def _direct(call: Callable[[], T]) -> T:
    return call()


class _Job:
    """One run of a job that may start: perform it (thread, process or coroutine), then
    settle it."""

    def __init__(self, runtime: Runtime, worker_id: str, payload: Payload, spec: JobSpec,
                 settler: _Settler) -> None:
        self.runtime = runtime
        self.payload = payload
        self.spec = spec
        self.settler = settler
        self.context = JobContext(app=runtime.app, payload=payload, spec=spec,
                                  worker_id=worker_id, control=JobControl(payload.timeout_s))
        self.produced: list[dict[str, Any]] = []
        self.interrupted: KeyboardInterrupt | None = None
        self.started = 0.0
        self.elapsed_ms = 0.0

    # -- performing ------------------------------------------------------------------------

    def perform(self, running_jobs: RunningJobs | None, pool: ProcessPool | None,
                on_error: ErrorSink | None) -> Outcome:
        """Run a blocking job on this thread (or in an isolated process)."""
        self._begin()
        with self._tracked(running_jobs):
            try:
                with running(self.context):
                    value = run_server_chain(self.runtime.server_middleware, self.context,
                                             lambda: self._call(pool))
                outcome = self._ended(value)
            except BaseException as exc:  # a job's failure is data: retry or bury it
                outcome = self._failed(exc, on_error)
        return self._performed(outcome)

    async def perform_async(self, running_jobs: RunningJobs | None, on_error: ErrorSink | None,
                            offload: Offload = _direct) -> Outcome:
        """Run an async job on the current loop: cancelled at its timeout, or when stopped."""
        self._begin()
        control = self.context.control
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            cancel = task.cancel
            control.on_stop(lambda: _call_soon(loop, cancel))
        with self._tracked(running_jobs):
            try:
                with running(self.context):
                    made = run_server_chain(self.runtime.server_middleware, self.context,
                                            lambda: self._coroutine(offload))
                    value = await self._await(made) if inspect.isawaitable(made) else made
                outcome = self._ended(value)
            except asyncio.CancelledError as exc:
                if not control.is_stopped:
                    raise  # the worker is shutting down: pushed back, not settled
                if task is not None:
                    task.uncancel()
                outcome = self._failed(exc, on_error)
            except BaseException as exc:  # a job's failure is data: retry or bury it
                outcome = self._failed(exc, on_error)
        return self._performed(outcome)

    def _tracked(self, running_jobs: RunningJobs | None) -> AbstractContextManager[object]:
        """Registered with the worker's running jobs (for stop requests) while it runs."""
        if running_jobs is None:
            return contextlib.nullcontext()
        return running_jobs.tracking(self.payload, self.context.control)

    async def _await(self, made: Awaitable[Any]) -> Any:
        timeout_s = self.context.control.timeout_s
        if timeout_s is None:
            return await made
        try:
            return await asyncio.wait_for(made, timeout_s)
        except TimeoutError:
            if self.context.control.timed_out():
                raise self._timeout() from None
            raise

    def _begin(self) -> None:
        notify(self.runtime.observers, "before_perform", self.context)
        self.started = time.perf_counter()

    def _performed(self, outcome: Outcome) -> Outcome:
        self.elapsed_ms = (time.perf_counter() - self.started) * 1000
        notify(self.runtime.observers, "after_perform", self.context, outcome)
        return outcome

    def _call(self, pool: ProcessPool | None) -> Any:
        """Call the job's code: in a child process when isolated (and a pool is given)."""
        spec, payload = self.spec, self.payload
        if spec.options.isolation == "process" and pool is not None:
            return pool.run(spec.func, payload.args, payload.kwargs,
                            timeout_s=self.context.control.timeout_s,
                            stop=self.context.control.stopped)
        if not spec.typed:
            return self.runtime.perform(spec, payload.args, payload.kwargs)
        outcome = typed.perform(spec, typed.hydrate(self.runtime, spec, payload), payload.args,
                                payload.kwargs)
        self.produced.append(outcome.memory)
        return outcome.value

    def _coroutine(self, offload: Offload) -> Awaitable[Any]:
        spec, payload = self.spec, self.payload
        if not spec.typed:
            made: Awaitable[Any] = typed.invoke(spec, payload.args, payload.kwargs)
            return made

        async def typed_call() -> Any:
            arguments = await offload(lambda: typed.hydrate(self.runtime, spec, payload))
            outcome = await typed.perform_async(spec, arguments, payload.args, payload.kwargs)
            self.produced.append(outcome.memory)
            return outcome.value

        return typed_call()

    def _timeout(self) -> JobTimeout:
        return JobTimeout(f"the job ran past its timeout of {self.context.control.timeout_s:g} s")

    def _interrupted(self, error: BaseException | None) -> Outcome | None:
        """The outcome of a run that was stopped or ran past its deadline, whatever it
        returned or raised (`error`); None when it was neither."""
        control = self.context.control
        if control.is_stopped or isinstance(error, JobStopped):
            stopped = JobStopped(control.reason) if control.reason else (
                error if isinstance(error, JobStopped) else JobStopped("stopped"))
            return Outcome(error=stopped, stopped=True, run_cancelled=control.run_cancelled)
        if isinstance(error, JobTimeout) or control.timed_out():
            timeout = error if isinstance(error, JobTimeout) else self._timeout()
            return Outcome(error=timeout, timed_out=True)
        return None

    def _ended(self, value: Any) -> Outcome:
        """How a run that returned ended: a stop or a timeout overrides the value."""
        interrupted = self._interrupted(None)
        if interrupted is not None:
            return interrupted
        if self.spec.options.store_result:
            stored = self.produced[-1] if self.spec.typed and self.produced else value
            try:
                check_json_native(stored, f"the result of {self.spec.name}")
            except SerializationError as exc:
                return Outcome(error=SerializationError(
                    f"{exc}; a job declared with store_result=True must return JSON-native "
                    "data (or declare store_result=False)"))
            value = stored
        return Outcome(value=value, opened_batches=tuple(self.context.opened))

    def _failed(self, exc: BaseException, on_error: ErrorSink | None) -> Outcome:
        if on_error is not None:
            on_error(self.payload, exc)
        interrupted = self._interrupted(exc)
        if interrupted is not None:
            return interrupted
        if isinstance(exc, KeyboardInterrupt) and (
                threading.current_thread() is threading.main_thread()):
            self.interrupted = exc  # settled as a failure; a Ctrl-C in drain() still stops the caller
        return Outcome(error=exc)

    # -- settling --------------------------------------------------------------------------

    def finish(self, outcome: Outcome) -> Delivery | None:
        """Decide and settle the run (its step's output written to run memory first)."""
        runtime, payload, spec, settler = self.runtime, self.payload, self.spec, self.settler
        run_id = payload.run_id
        now = runtime.clock.now()
        if outcome.succeeded and run_id is not None and self.produced and self.produced[-1]:
            # Written before the atomic advance: a crash in between re-runs the step, which
            # writes the same keys again (last write wins), so nothing is lost or doubled.
            values = typed.memory_values(spec, payload, self.produced[-1])
            ttl_s = runtime.settings.run_ttl_s
            settler.persist(lambda: runtime.backend.write(run_id, values, ttl_s, now))
        settlement = decide(outcome, payload, spec.options, now, runtime.random.random())
        try:
            following = settler.apply(settlement)
        except WorkflowError as exc:
            return settler.reject(payload, exc)
        _log(settlement, self.elapsed_ms)
        if settlement.exhausted and outcome.error is not None:
            notify(runtime.observers, "retries_exhausted", settlement.payload, outcome.error)
        if not settler.deferred:  # else notified once written
            notify(runtime.observers, "after_settle", payload, settlement)
        if self.interrupted is not None:
            raise self.interrupted
        return following


def _log(settlement: Settlement, elapsed_ms: float) -> None:
    payload = settlement.payload
    if settlement.action is Action.ACK:
        # DEBUG: a line per job written by the job's thread costs about a quarter of a
        # no-op job's time (issue "Throughput"); failures stay at WARNING and ERROR
        if log.isEnabledFor(logging.DEBUG):
            log.debug("done %s jid=%s run=%s in %.1f ms", payload.name, payload.jid,
                      payload.run_id or "-", elapsed_ms, extra=_fields(settlement, elapsed_ms))
    elif settlement.action is Action.RETRY:
        log.warning("retry %s jid=%s at %.3f after %s: %s", payload.name, payload.jid,
                    settlement.retry_at or 0.0, payload.error_class, payload.error_message,
                    extra=_fields(settlement, elapsed_ms))
    else:
        log.error("dead %s jid=%s run=%s: %s", payload.name, payload.jid,
                  payload.run_id or "-", settlement.reason, extra=_fields(settlement, elapsed_ms))


def _fields(settlement: Settlement, elapsed_ms: float) -> dict[str, Any]:
    """The job's fields of a log record, for structured formatters (sideline.logs)."""
    payload = settlement.payload
    return {"jid": payload.jid, "run_id": payload.run_id, "job": payload.name,
            "queue": payload.queue, "duration_ms": round(elapsed_ms, 3),
            "outcome": settlement.action.value}


class _Settler:
    """Settles one delivery: every backend call goes through `persist`."""

    def __init__(self, runtime: Runtime, worker_id: str, delivery: Delivery, persist: Persist,
                 fetch_from: Sequence[str], *, defer: Defer | None = None) -> None:
        self.runtime = runtime
        self.backend = runtime.backend
        self.worker_id = worker_id
        self.delivery = delivery
        self.persist = persist
        self.fetch_from = fetch_from
        self.defer = defer
        self.deferred = False
        """The settlement was a plain ack handed to `defer`, not written yet."""
        self.options: JobOptions | None = None
        """The job's options once known (a burial of a store_result job stores its error)."""

    def begin(self, run_id: str, node_id: int) -> Begin:
        """The step's begin: done by the call that fetched it, else one backend call."""
        decision = begun(self.delivery, run_id, node_id)
        if decision is not None:
            return decision
        now = self.runtime.clock.now()
        return self.persist(lambda: self.backend.begin_node(run_id, node_id, now))

    def apply(self, settlement: Settlement) -> Delivery | None:
        """Write the settlement in one atomic call; return the caller's next job, its
        workflow step already begun. A plain ack goes to `defer` instead, if given."""
        if self.defer is not None and is_plain_ack(settlement):
            self.defer(self.delivery, settlement)
            self.deferred = True
            return None
        now = self.runtime.clock.now()
        settled = self.persist(lambda: self.backend.settle(
            self.worker_id, self.delivery, settlement, now, self.fetch_from,
            begin_next=bool(self.fetch_from)))
        return settled.next

    def bury(self, payload: Payload, exc: BaseException, reason: str, *,
             workflow: bool = True) -> Delivery | None:
        """Send a job to the dead set without running it (failing its workflow node unless
        `workflow` is False)."""
        now = self.runtime.clock.now()
        settlement = recording(bury(payload, exc, reason, now, workflow=workflow), self.options, now)
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
