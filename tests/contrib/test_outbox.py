"""sideline.contrib.outbox against a real PostgreSQL and a real Redis.

Each test works in a PostgreSQL schema of its own (search_path set in the DSN), so the
fixed table name `sideline_outbox` never collides between tests or runs.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode, encode
from sideline.runtime.worker import Worker
from tests.support import real_redis_backend, wait_until
from tests.support_pg import postgres_url, require_postgres

psycopg = pytest.importorskip("psycopg")
outbox = pytest.importorskip("sideline.contrib.outbox")

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture
def dsn() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema holding an empty outbox table."""
    require_postgres(postgres_url())
    schema = f"sideline_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    dsn = psycopg.conninfo.make_conninfo(postgres_url(), options=f"-csearch_path={schema}")
    with psycopg.connect(dsn) as conn:
        outbox.create_table(conn)
    try:
        yield dsn
    finally:
        with psycopg.connect(postgres_url(), autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def backend() -> Iterator[RedisBackend]:
    yield from real_redis_backend()


@pytest.fixture
def app(backend: RedisBackend) -> App:
    app = App(backend)
    app.job(name="send_mail")(lambda address, subject="": None)
    return app


def rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        count: int = conn.execute("SELECT count(*) FROM sideline_outbox").fetchone()[0]
        return count


def queued_jids(backend: RedisBackend, queue: str = "default") -> list[str]:
    return [decode(raw).jid for raw in backend.peek(queue, 100_000)]


def test_a_rolled_back_transaction_enqueues_nothing(dsn: str, app: App,
                                                    backend: RedisBackend) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE users (email text)")
        conn.commit()
        conn.execute("INSERT INTO users VALUES ('a@example.com')")
        jid = outbox.enqueue_in_transaction(conn, app, "send_mail", "a@example.com")
        assert jid
        conn.rollback()
    assert rows(dsn) == 0
    relay = outbox.Relay(app, dsn)
    try:
        assert relay.relay_once() == 0
    finally:
        relay.close()
    assert backend.queue_sizes() == {}


def test_a_committed_job_is_pushed_exactly_once_by_the_relay(dsn: str, app: App,
                                                              backend: RedisBackend) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        jid = outbox.enqueue_in_transaction(cursor, app, "send_mail", "a@example.com",
                                            subject="hi")
    assert backend.queue_sizes() == {}  # nothing reaches Redis before a relay runs
    relay = outbox.Relay(app, dsn)
    try:
        assert relay.relay_once() == 1
        assert relay.relay_once() == 0
    finally:
        relay.close()
    assert rows(dsn) == 0
    [raw] = backend.peek("default", 10)
    payload = decode(raw)
    assert (payload.jid, payload.name, payload.args, payload.kwargs) == (
        jid, "send_mail", ["a@example.com"], {"subject": "hi"})
    assert payload.enqueued_at is not None


def test_a_failed_commit_after_the_push_leaves_the_rows_and_no_duplicate(
        dsn: str, app: App, backend: RedisBackend) -> None:
    with psycopg.connect(dsn) as conn:
        jids = [outbox.enqueue_in_transaction(conn, app, "send_mail", f"{n}@example.com")
                for n in range(3)]
    relay = outbox.Relay(app, dsn, batch_size=2)

    def crash() -> None:
        raise RuntimeError("killed between push and commit")

    relay.before_commit = crash
    with pytest.raises(RuntimeError):
        relay.relay_once()
    assert rows(dsn) == 3  # the DELETE never committed
    assert queued_jids(backend) == jids[:2]
    relay.before_commit = None
    try:
        assert relay.relay_once() == 2  # the same two rows, skipped by their markers
        assert relay.relay_once() == 1
    finally:
        relay.close()
    assert rows(dsn) == 0
    assert queued_jids(backend) == jids


def test_middleware_that_drops_the_job_writes_no_row(dsn: str, app: App) -> None:
    app.client_middleware.append(lambda payload: None)
    with psycopg.connect(dsn) as conn:
        assert outbox.enqueue_in_transaction(conn, app, "send_mail", "a@example.com") is None
    assert rows(dsn) == 0


def test_a_worker_with_the_relay_installed_runs_the_job(dsn: str, backend: RedisBackend) -> None:
    app = App(backend)
    seen: list[str] = []
    mail = app.job(name="send_mail")(seen.append)
    relay = outbox.install(app, dsn)
    assert app.poller_tasks == [relay]
    with psycopg.connect(dsn) as conn:
        outbox.enqueue_in_transaction(conn, app, mail, "a@example.com")
    worker = Worker(app, concurrency=1).start()
    try:
        wait_until(lambda: seen == ["a@example.com"], 10)
    finally:
        worker.stop()
        relay.close()
    assert rows(dsn) == 0


def test_enqueue_in_session_writes_in_the_sqlalchemy_transaction(
        dsn: str, app: App, backend: RedisBackend) -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    orm = pytest.importorskip("sqlalchemy.orm")
    url = postgres_url().replace("postgresql://", "postgresql+psycopg://", 1)
    schema = psycopg.conninfo.conninfo_to_dict(dsn)["options"]
    engine = sqlalchemy.create_engine(url, connect_args={"options": schema})
    try:
        with orm.Session(engine) as session:
            outbox.enqueue_in_session(session, app, "send_mail", "rolled@example.com")
            session.rollback()
            jid = outbox.enqueue_in_session(session, app, "send_mail", "kept@example.com")
            session.commit()
    finally:
        engine.dispose()
    relay = outbox.Relay(app, dsn)
    try:
        assert relay.relay_once() == 1
    finally:
        relay.close()
    assert queued_jids(backend) == [jid]


def _spawn(dsn: str, namespace: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.contrib.outbox_relay_proc", dsn, namespace, "100", "0.01"],
        cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_relays_killed_at_random_lose_and_duplicate_nothing(dsn: str, app: App,
                                                            backend: RedisBackend) -> None:
    """10,000 rows, 3 relay processes SIGKILLed a random 20-300 ms after they start
    relaying (a process takes seconds to start on a busy machine: only its relaying time
    counts), 12 kills in all, restarted until the outbox is empty: every job is queued
    exactly once. Each batch pauses 10 ms between its push and its commit, so most kills
    land in that window and leave pushed rows for the next relay."""
    total = 10_000
    jids: list[str] = []
    copy_in = "COPY sideline_outbox (jid, queue, payload) FROM STDIN"
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor, cursor.copy(copy_in) as copy:
        for n in range(total):
            payload = app.build_payload("send_mail", [f"{n}@example.com"], {})
            jids.append(payload.jid)
            copy.write_row((payload.jid, payload.queue, encode(payload)))
    chance = random.Random(7)
    kill_at: dict[subprocess.Popen[bytes], float] = {}  # ready processes -> when to kill
    procs: list[subprocess.Popen[bytes]] = []
    kills = 0
    deadline = time.monotonic() + 50
    counter = psycopg.connect(dsn, autocommit=True)
    left = total
    try:
        while left:
            assert time.monotonic() < deadline, f"{left} rows left after {kills} kills"
            for proc in [p for p in procs if p.poll() is not None]:
                procs.remove(proc)
                kill_at.pop(proc, None)
                _, err = proc.communicate()  # closes the pipes
                assert proc.returncode in (0, -signal.SIGKILL), err.decode()
            while len(procs) < 3:
                procs.append(_spawn(dsn, backend.keys.namespace))
            waiting = [p.stdout for p in procs if p not in kill_at and p.stdout]
            ready, _, _ = select.select(waiting, [], [], 0.01)
            for proc in procs:
                if proc.stdout in ready and proc.stdout and proc.stdout.readline():
                    kill_at[proc] = time.monotonic() + chance.uniform(0.02, 0.3)
            for proc, at in list(kill_at.items()):
                if kills < 12 and time.monotonic() >= at and proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                    del kill_at[proc]
            left = counter.execute("SELECT count(*) FROM sideline_outbox").fetchone()[0]
            time.sleep(0.05)
    finally:
        counter.close()
        for proc in procs:
            proc.kill()
            proc.communicate()
    queued = queued_jids(backend)
    assert kills >= 3
    assert len(queued) == total  # no duplicate
    assert set(queued) == set(jids)  # nothing lost
