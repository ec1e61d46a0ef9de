"""Jobs that wait for a SQLAlchemy commit: pushed after it, dropped on a rollback.

Uses PostgreSQL at 127.0.0.1:5432 (database `test`, user `postgres`) when it is
reachable, else SQLite in memory; a table with a unique name is created and dropped.
Prints what was queued after each step. Exits 0 when a rollback queued nothing, a
rolled-back savepoint dropped only its own job, and a commit queued the rest.
Needs `sqlalchemy` (and `psycopg` for PostgreSQL). Run it with
`python examples/sqlalchemy_after_commit.py`.
"""

from __future__ import annotations

import sys
import uuid

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from sideline import App
from sideline.contrib.sqlalchemy import enqueue_after_commit

jobs = App()  # in-memory backend: we only look at what gets queued


@jobs.job
def welcome(email: str) -> None:
    print(f"job: welcome {email}")


def engine() -> Engine:
    """PostgreSQL if reachable, else SQLite in memory."""
    try:
        pg = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test",
                           connect_args={"connect_timeout": 2})
        with pg.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # no driver, no server: either way fall back
        print(f"PostgreSQL unavailable ({type(exc).__name__}); using SQLite in memory")
        return create_engine("sqlite://")
    print("using PostgreSQL at 127.0.0.1:5432/test")
    return pg


def queued() -> list[str]:
    return [str(j.payload.args[0]) for j in jobs.admin.queue_jobs("default").jobs if j.payload]


def main() -> int:
    db = engine()
    users = Table(f"example_users_{uuid.uuid4().hex[:8]}", MetaData(),
                  Column("id", Integer, primary_key=True), Column("email", String(100)))
    users.create(db)
    try:
        with Session(db) as session:
            session.execute(users.insert().values(email="ann@example.com"))
            enqueue_after_commit(session, welcome, "ann@example.com")
            session.rollback()
            after_rollback = queued()
            print(f"after rollback: queued {after_rollback}")

            session.execute(users.insert().values(email="bob@example.com"))
            enqueue_after_commit(session, welcome, "bob@example.com")
            savepoint = session.begin_nested()
            session.execute(users.insert().values(email="cy@example.com"))
            enqueue_after_commit(session, welcome, "cy@example.com")
            savepoint.rollback()
            before_commit = queued()
            print(f"savepoint rolled back, before commit: queued {before_commit}")
            session.commit()
            after_commit = queued()
            print(f"after commit: queued {after_commit}")
        jobs.drain()
    finally:
        users.drop(db)
        db.dispose()
    ok = after_rollback == [] and before_commit == [] and after_commit == ["bob@example.com"]
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
