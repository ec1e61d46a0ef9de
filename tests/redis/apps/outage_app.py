"""The app of the outage tests: a job that records its start and end in Redis, and keeps
trying to record them while Redis is away (so an outage never fails the job itself)."""

from __future__ import annotations

import time
import uuid

import redis

from sideline import App
from sideline.adapters.redis import RedisBackend, redis_url
from tests.redis.apps import lazy_app

__all__ = ["EVENTS", "build_app"]

EVENTS = "outage-test:events"
"""The set of "start:<tag>:<execution>" and "end:<tag>:<execution>" entries (outside any
sideline namespace). SADD is idempotent, so a write retried after a lost reply counts once;
each execution of a job has an id of its own."""


def _record(client: redis.Redis, entry: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            client.sadd(EVENTS, entry)
            return
        except redis.exceptions.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def build_app(namespace: str) -> App:
    """An App on SIDELINE_REDIS_URL with the `hold` job."""
    app = App(RedisBackend.from_url(namespace=namespace))
    client = redis.Redis.from_url(redis_url(), socket_timeout=1, socket_connect_timeout=1)

    @app.job(name="hold", retry=0)
    def hold(tag: str, seconds: float) -> None:
        """Record a start, sleep `seconds`, record an end."""
        execution = uuid.uuid4().hex
        _record(client, f"start:{tag}:{execution}")
        time.sleep(seconds)
        _record(client, f"end:{tag}:{execution}")

    return app


__getattr__ = lazy_app(build_app, globals())
