"""Client and server middleware: hooks around pushing and around performing a job.

Client middleware sees each payload before it is pushed and returns it (maybe
changed) or None to drop it; raising JobRejected refuses it loudly. Server
middleware wraps the call of the job, like Sidekiq's `yield`: call `call_next()`
to continue the chain, and return (or transform) its result.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from sideline.core.errors import SidelineError, WorkflowError
from sideline.core.payload import Payload
from sideline.core.results import info_fields
from sideline.runtime.control import JobControl

if TYPE_CHECKING:
    from sideline.core.jobs import JobSpec
    from sideline.runtime.app import App
    from sideline.runtime.batches import Batch

__all__ = ["ClientMiddleware", "JobContext", "ServerMiddleware", "current_job", "run_client_chain",
           "run_server_chain", "running"]


@attrs.frozen
class JobContext:
    """What server middleware knows about the job being performed."""

    app: App
    payload: Payload
    spec: JobSpec
    worker_id: str
    opened: list[str] = attrs.field(factory=list)
    """Batches this run of a workflow step opened (its successors wait for them)."""
    control: JobControl = attrs.field(factory=JobControl)
    """The job's deadline and stop flag (runtime/control.py)."""

    def should_stop(self) -> bool:
        """True when the job should return now: its timeout passed, or someone asked it
        to stop (`app.admin.stop_job`, or its workflow run was cancelled).

        A thread job cannot be interrupted safely; a long one checks this between units
        of work. Whatever it returns after that is settled as a timeout (retried under
        its retry policy) or a stop (not retried).
        """
        return self.control.should_stop()

    def progress(self, fraction: float, message: str | None = None, *,
                 meta: Mapping[str, Any] | None = None) -> None:
        """Record how far the job is (0.0 to 1.0), an optional message and a small JSON
        `meta` dict, readable through its JobHandle, `app.admin.job(jid)` and the
        dashboard. Each call is one backend write: report per chunk of work, not per item.

        Raises:
            SidelineError: `fraction` is not a number from 0 to 1.
            SerializationError: `meta` is not JSON-native.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not (
                0.0 <= fraction <= 1.0):
            raise SidelineError(f"progress takes a fraction from 0.0 to 1.0, got {fraction!r}")
        fields = info_fields(progress=float(fraction), message=message, meta=meta)
        self.app.backend.set_job_info(self.payload.jid, fields, self.spec.options.result_ttl_s)

    @property
    def batch(self) -> Batch | None:
        """The batch this job belongs to, or whose callback it is (None: neither).

        `with current_job().batch.jobs(): ...` adds jobs to it; `.valid` says whether it
        was invalidated; `.status()` reads it; in a callback, `.options` are the options
        given to `on`.
        """
        from sideline.runtime.batches import Batch  # noqa: PLC0415 (batches imports this)

        payload = self.payload
        bid = payload.callback_of or payload.batch_id  # a child's callback is also a member
        if bid is None:
            return None
        return Batch.existing(self.app.client, bid, event=payload.callback_event)

    def extend_ttl(self, ttl_s: int) -> bool:
        """Keep this step's run alive for at least `ttl_s` more seconds (and its memory).

        For a step that runs longer than the run's TTL: the run's state (and memory)
        would otherwise expire under it. The expiry is pushed back to at least now +
        `ttl_s`, never brought forward; a later advance of the run (a sibling step
        finishing) sets it to max(current expiry, now + the run's own ttl_s), so it never
        shortens this extension. Only the step that finishes the run replaces it, with
        the app's finished_ttl_s linger. Returns False if the run's state is gone.

        Raises:
            WorkflowError: the job is not a workflow step.
        """
        run_id = self.payload.run_id
        if run_id is None:
            raise WorkflowError(
                f"extend_ttl() needs a workflow step; job {self.payload.name} "
                f"({self.payload.jid}) is not part of a run")
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s <= 0:
            raise WorkflowError(f"extend_ttl() takes whole seconds > 0, got {ttl_s!r}")
        backend, now = self.app.backend, self.app.clock.now()
        extended = backend.extend_run_ttl(run_id, ttl_s, now)
        if extended:
            backend.write(run_id, {}, ttl_s, now)  # existing memory lives as long
        return extended


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "sideline_current_job", default=None)


class running:  # noqa: N801 (used as `with running(context):`, like a function)
    """Make `context` what `current_job()` returns while the job runs (the executor's).

    A class, not a generator: every job enters one."""

    __slots__ = ("context", "token")

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.token: contextvars.Token[JobContext | None] | None = None

    def __enter__(self) -> None:
        self.token = _current.set(self.context)

    def __exit__(self, *exc_info: object) -> None:
        if self.token is not None:
            _current.reset(self.token)


def current_job() -> JobContext:
    """The job being performed in this thread (from inside the job or its middleware).

    Raises:
        SidelineError: called outside a job run by a worker or drain().
    """
    context = _current.get()
    if context is None:
        raise SidelineError("current_job() is only available inside a job run by a worker "
                            "or drain()")
    return context


ClientMiddleware = Callable[[Payload], Payload | None]
ServerMiddleware = Callable[[JobContext, Callable[[], Any]], Any]


def run_client_chain(chain: Sequence[ClientMiddleware], payload: Payload) -> Payload | None:
    """Pass `payload` through every client middleware; None when one drops it."""
    current: Payload | None = payload
    for middleware in chain:
        if current is None:
            return None
        current = middleware(current)
    return current


def run_server_chain(chain: Sequence[ServerMiddleware], context: JobContext,
                     perform: Callable[[], Any]) -> Any:
    """Call `perform` inside every server middleware, the first one outermost."""

    def step(index: int) -> Any:
        if index == len(chain):
            return perform()
        return chain[index](context, lambda: step(index + 1))

    return step(0)
