"""Push jobs when a SQLAlchemy session commits; drop them when it rolls back.

    from sideline.contrib.sqlalchemy import enqueue_after_commit

    with Session(engine) as session:
        session.add(user)
        enqueue_after_commit(session, send_welcome, user_id=7)
        session.commit()                  # the job is pushed here, after the commit

A job enqueued inside a savepoint (`session.begin_nested()`) is dropped if that
savepoint rolls back, and kept (for the outer commit) if it is released. Install with
the `sqlalchemy` extra.
"""

from __future__ import annotations

from typing import Any, ParamSpec

import attrs
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from sideline.runtime.jobs import Job

__all__ = ["enqueue_after_commit", "pending_jobs"]

P = ParamSpec("P")

_PENDING = "sideline.pending"  # key in session.info: list[_Pending]


@attrs.frozen
class _Pending:
    """One push waiting for the commit, with the transaction it was enqueued in (None:
    the session had not begun one yet, so it belongs to the outermost)."""

    job: Job[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    transaction: SessionTransaction | None


def enqueue_after_commit(session: Session, job: Job[P, Any], /, *args: P.args,
                         **kwargs: P.kwargs) -> None:
    """Push `job(*args, **kwargs)` once `session` commits its outermost transaction.

    Nothing is pushed if the transaction rolls back, or the session is closed without
    committing; a job enqueued in a savepoint is dropped when that savepoint rolls back.
    Pushes happen in enqueue order inside `session.commit()`, after the database
    committed: if one raises, `commit()` raises it, the data stays committed, and the
    pushes not yet made are dropped.
    """
    transaction = session.get_nested_transaction() or session.get_transaction()
    _pending(session).append(_Pending(job, args, dict(kwargs), transaction))


def pending_jobs(session: Session) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """What `session` will push on commit: (job name, args, kwargs), in order."""
    return [(p.job.name, p.args, p.kwargs) for p in session.info.get(_PENDING, [])]


def _pending(session: Session) -> list[_Pending]:
    """The session's pending list, registering its event hooks the first time."""
    pending: list[_Pending] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _push)
        event.listen(session, "after_soft_rollback", _drop_rolled_back)
        event.listen(session, "after_transaction_end", _drop_unfinished)
    return pending


def _push(session: Session) -> None:
    """after_commit: make every pending push, in order, once the outermost transaction
    commits. SQLAlchemy also fires after_commit when a savepoint is released (the
    savepoint is still current then): those pushes wait for the outer commit."""
    if session.in_nested_transaction():
        return
    pending: list[_Pending] = session.info.get(_PENDING, [])
    todo = list(pending)
    pending.clear()  # cleared first: a failing push must not be retried by a later commit
    for item in todo:
        item.job.enqueue(*item.args, **item.kwargs)


def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """after_soft_rollback: drop the pushes enqueued in the rolled-back transaction or
    in one nested inside it (all of them when it is the outermost)."""
    pending: list[_Pending] = session.info.get(_PENDING, [])
    pending[:] = [p for p in pending if not _within(p.transaction, previous_transaction)]


def _drop_unfinished(session: Session, transaction: SessionTransaction) -> None:
    """after_transaction_end of the outermost transaction: whatever is still pending was
    never committed (closed, or rolled back without a soft-rollback event)."""
    if transaction.parent is None:
        session.info.get(_PENDING, []).clear()


def _within(inner: SessionTransaction | None, outer: SessionTransaction) -> bool:
    """Whether `inner` is `outer` or nested in it; None stands for the outermost."""
    if inner is None:
        return outer.parent is None
    node: SessionTransaction | None = inner
    while node is not None:
        if node is outer:
            return True
        node = node.parent
    return False
