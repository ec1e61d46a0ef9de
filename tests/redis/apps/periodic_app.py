"""The app of the periodic chaos test: an every-second entry whose job records each run
(jid, recoveries, pid) in a Redis list of the test's namespace."""

from __future__ import annotations

import json
import os

from sideline import App, current_job
from sideline.adapters.redis import RedisBackend
from tests.redis.apps import lazy_app

__all__ = ["build_app", "runs_key"]


def runs_key(backend: RedisBackend) -> str:
    """The list each run of the job is recorded in."""
    return backend.keys("test", "beats")


def build_app(namespace: str, url: str | None = None) -> App:
    """An App on Redis with the every-second entry "beat"."""
    backend = RedisBackend.from_url(url, namespace=namespace)
    app = App(backend)
    key = runs_key(backend)

    @app.job(name="beat", every_s=1)
    def beat() -> None:
        payload = current_job().payload
        backend.client.rpush(key, json.dumps({"jid": payload.jid, "pid": os.getpid(),
                                              "recoveries": payload.recoveries}))

    return app


__getattr__ = lazy_app(build_app, globals())
