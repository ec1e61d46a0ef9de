"""A transactional outbox: a job written in the same PostgreSQL transaction as the data.

Uses PostgreSQL at 127.0.0.1:5432 (database `test`, user `postgres`; override with
SIDELINE_POSTGRES_URL) in a schema with a unique name, created and dropped here, and
the in-memory backend. A rolled-back order queues nothing; a committed one is queued
once the relay has run, and the job then runs. If PostgreSQL is unreachable it prints
a line saying so and exits 0. Needs `psycopg` (the `outbox` extra). Run it with
`python examples/outbox.py`.
"""

from __future__ import annotations

import os
import sys
import uuid

import psycopg

from sideline import App
from sideline.contrib.outbox import Relay, create_table, enqueue_in_transaction

jobs = App()  # in-memory backend; a worker process would use RedisBackend.from_url()


@jobs.job
def ship(order_id: int) -> None:
    print(f"job: ship order {order_id}")


def main() -> int:
    url = os.environ.get("SIDELINE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=2)
    except psycopg.Error as exc:
        print(f"PostgreSQL at {url} is unreachable ({type(exc).__name__}); nothing to show")
        return 0
    schema = f"outbox_example_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    dsn = psycopg.conninfo.make_conninfo(url, options=f"-csearch_path={schema}")
    relay = Relay(jobs, dsn)
    try:
        with psycopg.connect(dsn) as conn:
            create_table(conn)
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
            conn.commit()

            conn.execute("INSERT INTO orders VALUES (1)")
            enqueue_in_transaction(conn, jobs, ship, 1)
            conn.rollback()  # the order and its job vanish together
            print(f"after rollback: relayed {relay.relay_once()} jobs")

            conn.execute("INSERT INTO orders VALUES (2)")
            jid = enqueue_in_transaction(conn, jobs, ship, 2)
            conn.commit()  # the order and its job exist together
            print(f"after commit: job {jid} waits in the outbox; queues {jobs.backend.queue_sizes()}")
        moved = relay.relay_once()  # what every worker's poller does (sideline.contrib.outbox.install)
        print(f"relayed {moved} job(s); queues {jobs.backend.queue_sizes()}")
        ran = jobs.drain()
    finally:
        relay.close()
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
    return 0 if (moved, ran) == (1, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
