"""A transactional outbox on PostgreSQL: enqueue a job in the same transaction as your data.

A job pushed to Redis after a database commit is lost if the process dies between the
commit and the push. With the outbox, the job's payload is INSERTed into the
`sideline_outbox` table in the caller's transaction (`enqueue_in_transaction`,
`enqueue_in_session`): it exists if and only if the data does. A `Relay` inside every
worker process (`install`; no leader) moves the rows to the backend in batches taken
with `SELECT ... FOR UPDATE SKIP LOCKED`, pushes them with `push_once` (idempotent by
jid) and deletes them in the same transaction. A relay killed between the push and the
commit leaves its rows; they are pushed again later and skipped by the jid markers, so
no job is lost or duplicated (within `pushed_ttl_s`). Needs the `outbox` extra
(psycopg 3). See docs/integrations.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import psycopg

from sideline.core.errors import BackendError
from sideline.core.payload import Payload, decode_stored, encode

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.orm import Session

    from sideline.runtime.app import App
    from sideline.runtime.jobs import Job

__all__ = [
    "OUTBOX_DDL",
    "Relay",
    "create_table",
    "enqueue_in_session",
    "enqueue_in_transaction",
    "install",
]

log = logging.getLogger("sideline.outbox")

OUTBOX_DDL = """CREATE TABLE IF NOT EXISTS sideline_outbox (
    id bigserial PRIMARY KEY,
    jid text NOT NULL UNIQUE,
    queue text NOT NULL,
    payload text NOT NULL,
    created_at timestamptz DEFAULT now()
)"""
"""The outbox table: one row per job waiting to be relayed, in insertion (id) order."""

_INSERT = "INSERT INTO sideline_outbox (jid, queue, payload) VALUES (%s, %s, %s)"
_INSERT_NAMED = "INSERT INTO sideline_outbox (jid, queue, payload) VALUES (:jid, :queue, :payload)"
_SELECT = ("SELECT id, jid, queue, payload FROM sideline_outbox ORDER BY id LIMIT %s "
           "FOR UPDATE SKIP LOCKED")
_DELETE = "DELETE FROM sideline_outbox WHERE id = ANY(%s)"
_RETRY_AFTER_ERROR_S = 2.0
_CONNECT_TIMEOUT_S = 2


def create_table(conn: psycopg.Connection[Any]) -> None:
    """Create the outbox table if it does not exist, in `conn`'s current transaction
    (commit it, unless the connection is in autocommit mode)."""
    conn.execute(OUTBOX_DDL)


def _payload(app: App, job: Job[Any, Any] | str, args: Sequence[Any],
             kwargs: dict[str, Any]) -> Payload | None:
    """The payload as `Client.enqueue` would push it now; None if middleware dropped it."""
    name = job if isinstance(job, str) else job.name
    payload = app.client.through_middleware(app.client.build_payload(name, args, kwargs))
    if payload is None:
        return None
    return attrs.evolve(payload, enqueued_at=app.clock.now())


def enqueue_in_transaction(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], app: App,
                           job: Job[Any, Any] | str, /, *args: Any, **kwargs: Any) -> str | None:
    """Write job `job(*args, **kwargs)` to the outbox in the caller's open transaction.

    The payload is built and checked by `app`'s client and its client middleware, as
    `enqueue` would; the job reaches its queue once the transaction commits and a relay
    runs, and never if it rolls back.

    Args:
        conn: a psycopg 3 connection or cursor, inside the transaction that writes your
            data (a connection in autocommit mode commits the row at once).
        app: the App whose registry declares the job.
        job: the job, or its declared name.

    Returns:
        The job's jid; None if client middleware dropped it (nothing is written).

    Raises:
        UnknownJob, SerializationError, SchemaError: as `Client.build_payload`.
        psycopg.Error: the INSERT failed (the transaction is then aborted).
    """
    payload = _payload(app, job, args, kwargs)
    if payload is None:
        return None
    conn.execute(_INSERT, (payload.jid, payload.queue, encode(payload)))
    return payload.jid


def enqueue_in_session(session: Session | SAConnection, app: App, job: Job[Any, Any] | str,
                       /, *args: Any, **kwargs: Any) -> str | None:
    """`enqueue_in_transaction` for a SQLAlchemy `Session` or `Connection` (on
    PostgreSQL): the row is written with `session.execute` in its transaction."""
    from sqlalchemy import text  # noqa: PLC0415 (SQLAlchemy is optional)

    payload = _payload(app, job, args, kwargs)
    if payload is None:
        return None
    session.execute(text(_INSERT_NAMED),
                    {"jid": payload.jid, "queue": payload.queue, "payload": encode(payload)})
    return payload.jid


class Relay:
    """Moves outbox rows to the backend; `install` runs one in every worker's poller.

    Args:
        app: the App whose backend receives the jobs.
        dsn: the PostgreSQL connection string of the database holding the outbox.
        batch_size: the most rows one `relay_once` takes.
        pushed_ttl_s: how long a pushed jid is remembered (`QueuePort.push_once`): a
            batch pushed but not deleted is not pushed again within this time.
        interval_s: the least time between two passes of the poller task (`__call__`),
            unless the last batch was full.
        max_pass_s: a poller pass relays full batches for at most about this long.
    """

    def __init__(self, app: App, dsn: str, *, batch_size: int = 100,
                 pushed_ttl_s: float = 86400.0, interval_s: float = 0.2,
                 max_pass_s: float = 1.0) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.backend = app.backend
        self.clock = app.clock
        self.dsn = dsn
        self.batch_size = batch_size
        self.pushed_ttl_s = pushed_ttl_s
        self.interval_s = interval_s
        self.max_pass_s = max_pass_s
        self.before_commit: Callable[[], None] | None = None
        """Called after the push, before the DELETE commits (tests inject crashes here)."""
        self._conn: psycopg.Connection[Any] | None = None
        self._next_at = 0.0

    def __repr__(self) -> str:
        return f"<outbox Relay batch_size={self.batch_size}>"  # never the DSN (a password)

    def relay_once(self) -> int:
        """Move one batch: lock up to `batch_size` rows (skipping rows other relays hold),
        push them once, delete them, commit; return how many rows were moved.

        Raises:
            BackendError: PostgreSQL failed (the connection is dropped and reopened on
                the next call; the rows stay for a later pass), or the push failed.
        """
        conn = self._connection()
        try:
            with conn.transaction():
                rows = conn.execute(_SELECT, (self.batch_size,)).fetchall()
                if not rows:
                    return 0
                # decode_stored never raises: a row that does not decode is pushed as an
                # <undecodable> placeholder, which the worker dead-letters.
                payloads = [decode_stored(raw, jid, queue) for _id, jid, queue, raw in rows]
                self.backend.push_once(payloads, self.pushed_ttl_s, self.clock.now())
                if self.before_commit is not None:
                    self.before_commit()
                conn.execute(_DELETE, ([row[0] for row in rows],))
        except psycopg.Error as exc:
            self.close()
            raise BackendError(f"outbox relay: PostgreSQL failed: {exc}") from exc
        return len(rows)

    def __call__(self) -> int:
        """The poller task: relay when `interval_s` has passed since the last pass, and
        again at once while batches come back full (for at most `max_pass_s`); return
        how many rows were moved."""
        now = time.monotonic()
        if now < self._next_at:
            return 0
        # after a failure, wait a while: a connect timeout must not stall every poll pass
        self._next_at = now + max(self.interval_s, _RETRY_AFTER_ERROR_S)
        deadline = now + self.max_pass_s
        total = 0
        while True:
            moved = self.relay_once()
            total += moved
            if moved < self.batch_size or time.monotonic() >= deadline:
                break
        self._next_at = 0.0 if moved == self.batch_size else time.monotonic() + self.interval_s
        if total:
            log.debug("outbox relay moved %d jobs", total)
        return total

    def close(self) -> None:
        """Close the relay's PostgreSQL connection (a later call opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.dsn, connect_timeout=_CONNECT_TIMEOUT_S)
            except psycopg.Error as exc:
                raise BackendError(f"outbox relay: cannot connect to PostgreSQL: {exc}") from exc
        return self._conn


def install(app: App, dsn: str, **options: Any) -> Relay:
    """Run an outbox relay in every worker of `app` (appended to `app.poller_tasks`);
    `options` are `Relay`'s. Returns the relay."""
    relay = Relay(app, dsn, **options)
    app.poller_tasks.append(relay)
    return relay
