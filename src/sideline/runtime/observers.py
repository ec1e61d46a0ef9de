"""Observers: a base class of no-op hooks that watch jobs without wrapping them.

In the spirit of dramatiq's `Middleware`: subclass `Observer`, override the hooks you
need, and pass instances to `App(observers=[...])` (or append to `app.observers`). An
observer sees what happened; it cannot change or veto it — what must wrap a call is
client or server middleware, and what must be atomic belongs in the settle port
(DESIGN.md section 6). `after_settle` runs after the settlement is written, never
inside the atomic step.

An observer that raises is logged and skipped: it never fails the push or the job,
and the observers after it still run (`notify`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sideline.core.payload import Payload
    from sideline.core.settlement import Outcome, Settlement
    from sideline.runtime.middleware import JobContext

__all__ = ["HOOKS", "DeathHandler", "DeathHandlers", "Observer", "Observers", "notify"]

log = logging.getLogger("sideline.observers")

HOOKS = frozenset({
    "after_enqueue", "after_perform", "after_settle", "before_enqueue", "before_perform",
    "heartbeat", "retries_exhausted", "worker_started", "worker_stopped",
})
"""The names `notify` accepts: every hook of `Observer`."""


class Observer:
    """Watches jobs being pushed, performed and settled, and workers living; every hook
    does nothing here, so a subclass overrides only what it needs and a hook added later
    breaks no existing observer."""

    def before_enqueue(self, payload: Payload) -> None:
        """A job is about to be pushed by the client (after client middleware)."""

    def after_enqueue(self, payload: Payload) -> None:
        """A job was pushed to its queue, or scheduled (`enqueue_in`, `enqueue_at`)."""

    def before_perform(self, context: JobContext) -> None:
        """A worker is about to perform a job (outside the server middleware chain)."""

    def after_perform(self, context: JobContext, outcome: Outcome) -> None:
        """A job's code returned or raised; `outcome` says which (before it is settled)."""

    def after_settle(self, payload: Payload, settlement: Settlement) -> None:
        """A job's settlement (ack, retry at t, or bury) was written atomically."""

    def retries_exhausted(self, payload: Payload, error: BaseException) -> None:
        """A job failed for the last time (its retries are used up, or it has none) and
        its burial was written; `payload` is the buried one, `error` the last error.
        Called before `after_settle`."""

    def worker_started(self, worker_id: str) -> None:
        """A worker process or thread began fetching jobs."""

    def worker_stopped(self, worker_id: str) -> None:
        """A worker stopped fetching and finished its jobs (or gave them up)."""

    def heartbeat(self, worker_id: str) -> None:
        """A worker wrote its heartbeat."""


DeathHandler = Callable[["Payload", BaseException], None]
"""Called with the dead payload and the last error when a job exhausts its retries."""


class DeathHandlers(Observer):
    """The retries-exhausted hooks as an observer: on `retries_exhausted`, the job's own
    `on_exhausted` hook, then every app-wide death handler, in order (Sidekiq's
    `sidekiq_retries_exhausted` and `death_handlers`).

    Both collections are the App's live ones. A hook that raises is logged and the next
    one still runs: the job is already buried, nothing is lost.
    """

    def __init__(self, per_job: Mapping[str, DeathHandler],
                 handlers: Sequence[DeathHandler]) -> None:
        self.per_job = per_job
        self.handlers = handlers

    def for_job(self, name: str) -> list[DeathHandler]:
        """The hooks to call for job `name`, its own first."""
        own = self.per_job.get(name)
        return [*([own] if own is not None else []), *self.handlers]

    def retries_exhausted(self, payload: Payload, error: BaseException) -> None:
        for hook in self.for_job(payload.name):
            try:
                hook(payload, error)
            except Exception:  # a broken hook must not stop the next one
                log.exception("death handler %r failed for jid=%s", hook, payload.jid)


class Observers:
    """Observers run before the user's (the App's death handlers) followed by the App's
    live `observers` list: iterating sees observers appended after a worker started."""

    def __init__(self, first: Sequence[Observer], rest: Sequence[Observer]) -> None:
        self.first = first
        self.rest = rest

    def __iter__(self) -> Iterator[Observer]:
        yield from self.first
        yield from self.rest


def notify(observers: Iterable[Observer], hook_name: str, *args: Any) -> None:
    """Call hook `hook_name` of every observer with `args`, in order.

    An observer's exception is logged (with its traceback) and the next observer is
    called: observing never changes what happens to a job.

    Raises:
        ValueError: `hook_name` is not an Observer hook (a bug in the caller).
    """
    if hook_name not in HOOKS:
        raise ValueError(f"{hook_name!r} is not an Observer hook; expected one of {sorted(HOOKS)}")
    for observer in observers:
        try:
            getattr(observer, hook_name)(*args)
        except Exception:
            log.exception("observer %r raised in %s; ignored", observer, hook_name)
