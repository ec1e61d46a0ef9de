"""Run an embedded worker for the life of a Starlette (or FastAPI) application.

    from contextlib import asynccontextmanager
    from sideline.contrib.starlette import lifespan_worker

    @asynccontextmanager
    async def lifespan(api):
        async with lifespan_worker(jobs, concurrency=4):
            yield

    api = FastAPI(lifespan=lifespan)

Needs only Starlette's lifespan protocol; install with the `web` extra.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sideline.runtime.app import App
from sideline.runtime.worker import Worker

__all__ = ["lifespan_worker"]


@asynccontextmanager
async def lifespan_worker(app: App, **worker_options: Any) -> AsyncIterator[Worker]:
    """Start `app.worker(**worker_options)` on entry; stop it gracefully on exit.

    Yields the started Worker. Stopping waits up to the worker's `shutdown_timeout_s`
    for running jobs and pushes back the rest; it runs on a thread so the event loop
    stays free meanwhile. The worker is stopped even if the application body raised.
    """
    worker = app.worker(**worker_options)
    await asyncio.to_thread(worker.start)
    try:
        yield worker
    finally:
        await asyncio.to_thread(worker.stop)
