"""The app of the job-control tests: jobs that can be stopped, time out, report progress
and store results, run by `sideline worker` subprocesses (namespace from
SIDELINE_NAMESPACE)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.runtime.middleware import current_job
from tests.redis.apps import lazy_app

__all__ = ["build_app", "isolated_nap"]


def isolated_nap(seconds: float, log_path: str) -> str:
    """Note this process's pid in `log_path`, then sleep (run in a child process)."""
    with Path(log_path).open("a") as log:
        log.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return "woke"


def build_app(namespace: str, url: str | None = None) -> App:
    """An App on Redis with the control test jobs; every job stores its result."""
    app = App(RedisBackend.from_url(url, namespace=namespace), store_results=True)

    @app.job(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.job(name="soft_loop", retry=0)
    def soft_loop(seconds: float) -> str:
        """Loop until asked to stop (or `seconds` pass)."""
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            if current_job().should_stop():
                return "noticed the stop"
            time.sleep(0.01)
        return "ran to the end"

    @app.job(name="async_nap", retry=0)
    async def async_nap(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "woke"

    app.job(isolated_nap, name="isolated_nap", isolation="process", retry=0)
    app.job(isolated_nap, name="isolated_hang", isolation="process", timeout=1.0, retry=1,
            retry_in=lambda count, error: 0.1)

    @app.job(name="reporting", retry=0)
    def reporting(seconds: float) -> str:
        """Report half-way progress, then wait (up to `seconds`) to be stopped."""
        current_job().progress(0.5, "half-way", meta={"pages": 10})
        ends = time.monotonic() + seconds
        while time.monotonic() < ends and not current_job().should_stop():
            time.sleep(0.01)
        return "reported"

    return app


__getattr__ = lazy_app(build_app, globals())
