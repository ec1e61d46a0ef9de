"""The app the worker subprocesses of tests/redis run.

The namespace comes from SIDELINE_NAMESPACE and the server from SIDELINE_REDIS_URL, so each
test points its workers at keys of its own. A server middleware records a "start" and an
"end" event per performed job (run id, node id, jid, pid, worker id, recoveries, time) with
RPUSH onto the list `events_key(backend)`, inside the test's namespace: Redis orders the
events of every process.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

from sideline import App, JobContext
from sideline.adapters.redis import RedisBackend
from tests.redis.apps import lazy_app

__all__ = ["build_app", "events_key"]


def events_key(backend: RedisBackend) -> str:
    """The list the middleware appends events to."""
    return backend.keys("test", "events")


def build_app(namespace: str, url: str | None = None) -> App:
    """An App on Redis (`url`, default SIDELINE_REDIS_URL) with the test jobs declared."""
    backend = RedisBackend.from_url(url, namespace=namespace)
    app = App(backend)
    key = events_key(backend)

    def record(context: JobContext, call_next: Callable[[], Any]) -> Any:
        payload = context.payload
        event = {"run": payload.run_id, "node": payload.node_id, "jid": payload.jid,
                 "pid": os.getpid(), "worker": context.worker_id,
                 "recoveries": payload.recoveries}
        backend.client.rpush(key, json.dumps({"kind": "start", "t": time.time(), **event}))
        result = call_next()
        backend.client.rpush(key, json.dumps({"kind": "end", "t": time.time(), **event}))
        return result

    app.server_middleware.append(record)

    @app.job(name="step")
    def step(label: str, min_ms: int = 5, max_ms: int = 30) -> str:
        """A workflow step: sleep a random 5-30 ms."""
        time.sleep(random.uniform(min_ms, max_ms) / 1000)
        return label

    @app.job(name="nap")
    def nap(seconds: float) -> None:
        """Sleep `seconds`."""
        time.sleep(seconds)

    return app


__getattr__ = lazy_app(build_app, globals())
