"""sideline.contrib.sqlalchemy against the real PostgreSQL `test` database.

Each test creates its own table (a unique name) and drops it afterwards. Findings on
savepoints, pinned here: a job enqueued inside `begin_nested()` is dropped when that
savepoint rolls back (jobs enqueued before it stay), kept when it is released, and
then pushed or dropped with the outer transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from sideline import App
from sideline.contrib.sqlalchemy import enqueue_after_commit, pending_jobs
from sideline.runtime.jobs import Job
from tests.support_pg import pg_url, require_postgres


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    require_postgres()
    engine = create_engine(pg_url())
    yield engine
    engine.dispose()


@pytest.fixture
def table(engine: Engine) -> Iterator[Table]:
    table = Table(f"sideline_sa_{uuid.uuid4().hex[:12]}", MetaData(),
                  Column("id", Integer, primary_key=True))
    table.create(engine)
    try:
        yield table
    finally:
        table.drop(engine)


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def notify(app: App) -> Job[Any, Any]:
    @app.job
    def notify(row_id: int) -> None:
        """Stands in for any job that must see the committed row."""

    return notify


def queued(app: App) -> int:
    return sum(app.backend.queue_sizes().values())


def rows(engine: Engine, table: Table) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(table.c.id)))


def test_commit_pushes_exactly_one_job(engine: Engine, table: Table, app: App,
                                       notify: Job[Any, Any]) -> None:
    with Session(engine) as session:
        session.execute(table.insert().values(id=1))
        enqueue_after_commit(session, notify, 1)
        assert queued(app) == 0, "pushed before the commit"
        assert pending_jobs(session) == [(notify.name, (1,), {})]
        session.commit()
        assert queued(app) == 1
        session.commit()  # a second commit pushes nothing again
    assert queued(app) == 1
    assert rows(engine, table) == [1]


def test_rollback_pushes_nothing(engine: Engine, table: Table, app: App,
                                 notify: Job[Any, Any]) -> None:
    with Session(engine) as session:
        session.execute(table.insert().values(id=1))
        enqueue_after_commit(session, notify, 1)
        session.rollback()
        assert pending_jobs(session) == []
        session.commit()  # a later commit does not resurrect the dropped push
    assert queued(app) == 0
    assert rows(engine, table) == []


def test_closing_without_commit_pushes_nothing(engine: Engine, table: Table, app: App,
                                               notify: Job[Any, Any]) -> None:
    session = Session(engine)
    session.execute(table.insert().values(id=1))
    enqueue_after_commit(session, notify, 1)
    session.close()
    with session.begin():  # the same Session object, reused
        pass
    assert queued(app) == 0


def test_enqueued_before_any_statement_still_waits_for_the_commit(
        engine: Engine, table: Table, app: App, notify: Job[Any, Any]) -> None:
    with Session(engine) as session:
        enqueue_after_commit(session, notify, 1)  # no transaction begun yet
        session.execute(table.insert().values(id=1))
        assert queued(app) == 0
        session.commit()
    assert queued(app) == 1


def test_a_rolled_back_savepoint_drops_only_its_own_jobs(engine: Engine, table: Table, app: App,
                                                         notify: Job[Any, Any]) -> None:
    with Session(engine) as session:
        session.execute(table.insert().values(id=1))
        enqueue_after_commit(session, notify, 1)
        savepoint = session.begin_nested()
        session.execute(table.insert().values(id=2))
        enqueue_after_commit(session, notify, 2)
        savepoint.rollback()
        assert [args for _, args, _ in pending_jobs(session)] == [(1,)]
        with session.begin_nested():  # released: its job waits for the outer commit
            session.execute(table.insert().values(id=3))
            enqueue_after_commit(session, notify, 3)
        assert queued(app) == 0
        session.commit()
    assert rows(engine, table) == [1, 3]
    assert sorted(j.payload.args[0] for j in app.admin.queue_jobs("default").jobs if j.payload) == [1, 3]


def test_outer_rollback_drops_jobs_of_released_savepoints(
        engine: Engine, table: Table, app: App, notify: Job[Any, Any]) -> None:
    with Session(engine) as session:
        with session.begin_nested():
            session.execute(table.insert().values(id=1))
            enqueue_after_commit(session, notify, 1)
        session.rollback()
        session.commit()
    assert queued(app) == 0


def test_hooks_are_registered_once_per_session(engine: Engine, table: Table, app: App,
                                               notify: Job[Any, Any]) -> None:
    with Session(engine) as session:
        for row_id in range(3):
            enqueue_after_commit(session, notify, row_id)
        session.commit()
        enqueue_after_commit(session, notify, 9)
        session.commit()
    assert queued(app) == 4  # one push per enqueue: no hook ran twice
