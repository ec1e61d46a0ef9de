"""The app the worker subprocesses of the dashboard's real-Redis tests run
(tests/web/test_browser_redis.py).

The namespace comes from SIDELINE_NAMESPACE and the server from SIDELINE_REDIS_URL (as in
jobs_app). `declare(app)` declares the jobs on any App on a RedisBackend, so a test can
declare them on its own `App(redis_ns)` and push with the same names:

- `hello(*args)`: succeeds at once.
- `thumbnail(image, width)`: sleeps 10 ms, succeeds (for workflows and batches).
- `resize(image, width)`: on queue "images", which the test workers do not serve: its
  jobs stay queued.
- `flaky(key, failures=1, *extra)`: retry=0. Counts its runs in `flaky_key(backend, key)`
  (INCR) and raises ValueError while the count is <= `failures`; after that it succeeds
  and sets `done_key(backend, key)`. So `flaky("k")` dies on its first run and succeeds
  when retried; `flaky("k", 99)` dies every time. `extra` rides along (shown in lists).
- `charge(order)`: retry=3, always raises: it waits in the retry set for an hour
  (CHARGE_RETRY_IN_S).
- `nap(seconds)`: sleeps `seconds`.
"""

from __future__ import annotations

import time
from typing import Any

from sideline import App
from sideline.adapters.redis import RedisBackend
from tests.redis.apps import lazy_app

__all__ = ["CHARGE_RETRY_IN_S", "UNSERVED_QUEUE", "build_app", "declare", "done_key", "flaky_key"]

UNSERVED_QUEUE = "images"
"""The queue of `resize`: no test worker listens to it."""
CHARGE_RETRY_IN_S = 3_600.0
"""How long a failed `charge` waits in the retry set."""


def flaky_key(backend: RedisBackend, key: str) -> str:
    """The counter of `flaky(key)`'s runs."""
    return backend.keys("test", "flaky", key)


def done_key(backend: RedisBackend, key: str) -> str:
    """Set once `flaky(key)` has succeeded."""
    return backend.keys("test", "flaky-done", key)


def declare(app: App) -> App:
    """Declare the test jobs on `app` (whose backend is a RedisBackend); returns it."""
    backend = app.backend
    if not isinstance(backend, RedisBackend):
        raise TypeError(f"web_app's jobs need a RedisBackend, not {type(backend).__name__}")

    @app.job(name="hello")
    def hello(*args: Any) -> None:
        """Does nothing."""

    @app.job(name="thumbnail")
    def thumbnail(image: str, width: int) -> str:
        """Pretends to make a thumbnail."""
        time.sleep(0.01)
        return f"{image}@{width}"

    @app.job(name="resize", queue=UNSERVED_QUEUE)
    def resize(image: str, width: int) -> None:
        """Never run by the test workers."""

    @app.job(name="flaky", retry=0)
    def flaky(key: str, failures: int = 1, *extra: Any) -> None:
        runs = backend.client.incr(flaky_key(backend, key))
        if runs <= failures:
            detail = f" with {list(extra)!r}" if extra else ""
            raise ValueError(f"flaky {key} failed on run {runs}{detail}")
        backend.client.set(done_key(backend, key), str(runs))

    @app.job(name="charge", retry=3, retry_in=lambda count, error: CHARGE_RETRY_IN_S)
    def charge(order: int) -> None:
        raise ValueError(f"card declined for order {order}")

    @app.job(name="nap")
    def nap(seconds: float) -> None:
        """Sleep `seconds`."""
        time.sleep(seconds)

    return app


def build_app(namespace: str, url: str | None = None) -> App:
    """An App on Redis (`url`, default SIDELINE_REDIS_URL) with the test jobs declared."""
    return declare(App(RedisBackend.from_url(url, namespace=namespace)))


__getattr__ = lazy_app(build_app, globals())
