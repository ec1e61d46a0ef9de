"""The app of the batch crash tests (tests/redis/test_batch_crashes.py).

Its namespace comes from SIDELINE_NAMESPACE. `member(n, ms)` sleeps `ms` milliseconds and
records an "end" event; `nap(seconds)` records a "start" event, then sleeps; `noted(bid,
event)` is the callback of every batch: it records which callback of which batch ran, in
which process. Events go to the Redis list `events_key(backend)` (RPUSH: one order for
every process).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from sideline import App, current_job
from sideline.adapters.redis import RedisBackend
from tests.redis.apps import lazy_app

__all__ = ["build_app", "events_key"]


def events_key(backend: RedisBackend) -> str:
    """The list the jobs append their events to."""
    return backend.keys("test", "batch-events")


def build_app(namespace: str) -> App:
    """An App on the test's Redis namespace with the batch test jobs declared."""
    backend = RedisBackend.from_url(namespace=namespace)
    app = App(backend)
    key = events_key(backend)

    def record(kind: str, **fields: Any) -> None:
        payload = current_job().payload
        event = {"kind": kind, "pid": os.getpid(), "jid": payload.jid,
                 "recoveries": payload.recoveries, **fields}
        backend.client.rpush(key, json.dumps(event))

    @app.job(name="member")
    def member(n: int, ms: int) -> None:
        time.sleep(ms / 1000)
        record("end", n=n)

    @app.job(name="nap")
    def nap(seconds: float) -> None:
        record("start")
        time.sleep(seconds)
        record("end")

    @app.job(name="noted")
    def noted(bid: str, event: str) -> None:
        record("callback", bid=bid, event=event)

    return app


__getattr__ = lazy_app(build_app, globals())
