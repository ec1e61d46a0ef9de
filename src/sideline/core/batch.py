"""Batches (Sidekiq Pro semantics): which callbacks a member job's ending fires.

A batch counts its member jobs: `pending` holds the jids that have not succeeded yet,
`failures` those of them that failed at least once (with their last error), `dead` those
that died. Its callbacks:

- `complete` fires once every job has run at least once, successful or not (every
  pending job has failed), and every child batch is complete;
- `success` fires once every job has succeeded and every child batch succeeded (a job
  that fails and later succeeds on retry counts as success, so `success` may fire after
  `complete`; when all succeed at once, `complete` fires first);
- `death` fires the first time a job of the batch, or of a batch nested in it, dies.

A child batch's callback jobs are members of its parent (`add_callback`), so the
parent's callbacks wait for them, and a child's callback can add to the parent.

Each fires at most once (its time is recorded). Everything here is pure: the functions
change a `BatchState` and return the callbacks that fired; the adapters apply them with
the pushes of those callbacks in one atomic step (the memory backend calls these
functions under its lock; the Redis scripts mirror them function by function, in
`_lib.lua`), and walk up to the parent batch when a child's `complete` or `success`
fired.
"""

from __future__ import annotations

import enum

import attrs

from sideline.core.errors import SidelineError
from sideline.core.payload import Payload

__all__ = [
    "BATCH_INDEX_SIZE",
    "BATCH_LINGER_S",
    "BATCH_TTL_S",
    "BatchError",
    "BatchEvent",
    "BatchFinished",
    "BatchPush",
    "BatchSpec",
    "BatchState",
    "BatchView",
    "Callback",
    "NodeLink",
    "add_callback",
    "add_child",
    "add_jobs",
    "check",
    "child_fired",
    "job_ended",
]

BATCH_TTL_S = 30 * 24 * 3600
"""Default seconds a batch that has not succeeded is kept (from its last addition)."""
BATCH_LINGER_S = 24 * 3600
"""Default seconds a batch lingers once it succeeded."""
BATCH_INDEX_SIZE = 10_000
"""How many batches the recent-batches index keeps (the oldest drop out of the list)."""


class BatchError(SidelineError):
    """A batch operation that cannot be done (an unknown batch, a bad callback)."""

    @classmethod
    def unknown(cls, bid: str) -> BatchError:
        """The one message for a batch that is not stored (expired, or never pushed)."""
        return cls(f"batch {bid} is unknown (it expired or never existed)")


class BatchFinished(BatchError):
    """Jobs or a child batch were added to a batch whose `complete` already fired."""

    @classmethod
    def of(cls, bid: str, what: str = "jobs or child batches") -> BatchFinished:
        """The one message for an addition of `what` to the complete batch `bid`."""
        return cls(f"batch {bid} is complete (every job has run): it takes no more {what}; "
                   "open a new batch instead")


class Callback(enum.StrEnum):
    """The callbacks of a batch. When one job's ending fires several, `death` comes
    first, then `complete`, then `success`."""

    COMPLETE = "complete"
    SUCCESS = "success"
    DEATH = "death"


class BatchEvent(enum.StrEnum):
    """What the ending of one run of a member job means for its batch."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """It failed and will be retried."""
    DIED = "died"
    """It failed for good (retries exhausted, buried, or killed)."""


@attrs.define
class BatchState:
    """A batch's counters and the times its callbacks fired.

    Attributes:
        pending: jids of member jobs that have not succeeded.
        failures: the pending jids that failed at least once: (error class, message).
        dead: the pending jids that died.
        kids_incomplete: child batches whose `complete` has not fired.
        kids_unsucceeded: child batches whose `success` has not fired.
    """

    bid: str
    description: str = ""
    parent: str | None = None
    created_at: float = 0.0
    total: int = 0
    pending: set[str] = attrs.field(factory=set)
    failures: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    dead: set[str] = attrs.field(factory=set)
    children: list[str] = attrs.field(factory=list)
    kids_incomplete: int = 0
    kids_unsucceeded: int = 0
    complete_at: float | None = None
    success_at: float | None = None
    death_at: float | None = None
    invalidated: bool = False


def _open(state: BatchState, what: str) -> None:
    if state.complete_at is not None:
        raise BatchFinished.of(state.bid, what)


def add_jobs(state: BatchState, jids: list[str]) -> None:
    """Count new member jobs in.

    Raises:
        BatchFinished: the batch's `complete` already fired.
    """
    _open(state, "jobs")
    state.total += len(jids)
    state.pending.update(jids)


def add_child(state: BatchState, child: str) -> None:
    """Count a new child batch in: the batch's callbacks now wait for the child's.

    Raises:
        BatchFinished: the batch's `complete` already fired.
    """
    _open(state, "child batches")
    state.children.append(child)
    state.kids_incomplete += 1
    state.kids_unsucceeded += 1


def add_callback(state: BatchState, jid: str) -> None:
    """A child batch's callback job joins this (its parent) batch, as in Sidekiq Pro: the
    parent's callbacks wait until the child's callbacks have run, and a child's callback
    may add jobs or child batches to the parent. Never refused: the parent cannot have
    succeeded while a child had not."""
    state.total += 1
    state.pending.add(jid)


def check(state: BatchState, now: float) -> list[Callback]:
    """Fire `complete` and `success` if their condition now holds and they have not fired."""
    fired: list[Callback] = []
    if (state.complete_at is None and len(state.pending) == len(state.failures)
            and state.kids_incomplete == 0):
        state.complete_at = now
        fired.append(Callback.COMPLETE)
    if state.success_at is None and not state.pending and state.kids_unsucceeded == 0:
        state.success_at = now
        fired.append(Callback.SUCCESS)
    return fired


def _death(state: BatchState, now: float) -> list[Callback]:
    if state.death_at is not None:
        return []
    state.death_at = now
    return [Callback.DEATH]


def job_ended(state: BatchState, jid: str, event: BatchEvent, error: tuple[str, str],
              now: float) -> list[Callback]:
    """Count one ending of member job `jid`; return the callbacks it fired, in order.

    A success takes the job out of `pending` (and out of `failures` and `dead`, for a job
    that failed before); a failure records its error; a death also marks it dead and fires
    `death` the first time. An ending of a job that is not pending (already succeeded,
    or not a member) changes nothing.
    """
    if jid not in state.pending:
        return []
    if event is BatchEvent.SUCCEEDED:
        state.pending.discard(jid)
        state.failures.pop(jid, None)
        state.dead.discard(jid)
        return check(state, now)
    state.failures[jid] = error
    fired: list[Callback] = []
    if event is BatchEvent.DIED:
        state.dead.add(jid)
        fired = _death(state, now)
    return fired + check(state, now)


def child_fired(state: BatchState, callback: Callback, now: float) -> list[Callback]:
    """A child batch fired `callback`: count it in the parent `state`; return what the
    parent fired in turn (a child's death is the parent's death too)."""
    if callback is Callback.COMPLETE:
        state.kids_incomplete -= 1
    elif callback is Callback.SUCCESS:
        state.kids_unsucceeded -= 1
    else:
        return _death(state, now)
    return check(state, now)


@attrs.frozen
class NodeLink:
    """The workflow step that opened a batch (dynamic fan-out): the step's successors
    wait until the batch succeeds, and the step dies if a job of the batch dies."""

    run_id: str
    node_id: int


@attrs.frozen
class BatchSpec:
    """A new batch, stored by the `push_batches` that pushes its first jobs.

    Attributes:
        callbacks: callback -> (queue, encoded payload of the callback job).
        options: callback -> the options given to `on` (JSON-native).
        ttl_s: seconds the batch is kept until it succeeds (from its last addition).
        linger_s: seconds it is kept once it succeeded.
    """

    bid: str
    description: str = ""
    parent: str | None = None
    callbacks: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    options: dict[str, dict[str, object]] = attrs.field(factory=dict)
    ttl_s: int = BATCH_TTL_S
    linger_s: int = BATCH_LINGER_S
    node: NodeLink | None = None


@attrs.frozen
class BatchPush:
    """Jobs that join batch `bid`, a new one (`new`) or one that exists.

    `scheduled` jobs join now and wait in the schedule set until their time.
    """

    bid: str
    new: BatchSpec | None = None
    jobs: tuple[Payload, ...] = ()
    scheduled: tuple[tuple[Payload, float], ...] = ()


@attrs.frozen
class BatchView:
    """A batch as stored: its state, its callbacks (callback -> job name) and their
    options, when it expires, and the workflow step it belongs to (if any)."""

    state: BatchState
    callbacks: dict[str, str] = attrs.field(factory=dict)
    options: dict[str, dict[str, object]] = attrs.field(factory=dict)
    expires_at: float = 0.0
    node: NodeLink | None = None
