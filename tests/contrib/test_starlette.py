"""sideline.contrib.starlette: an embedded worker for the life of a FastAPI app."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sideline import App
from sideline.contrib.starlette import lifespan_worker
from sideline.core.errors import ConfigurationError
from sideline.runtime.worker import Worker


def _api(app: App, started: list[Worker]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        async with lifespan_worker(app, concurrency=2, poll_interval_s=0.01,
                                   fetch_timeout_s=0.1, shutdown_timeout_s=5) as worker:
            started.append(worker)
            yield

    return FastAPI(lifespan=lifespan)


def test_a_job_enqueued_from_an_endpoint_runs_and_the_worker_stops_after() -> None:
    app = App()
    done = threading.Event()
    seen: list[int] = []

    @app.job
    def record(value: int) -> None:
        seen.append(value)
        done.set()

    started: list[Worker] = []
    api = _api(app, started)

    @api.post("/record/{value}")
    def endpoint(value: int) -> dict[str, str]:
        handle = record.enqueue(value)
        return {"jid": str(handle)}

    with TestClient(api) as client:
        assert client.post("/record/7").status_code == 200
        assert done.wait(5), "the embedded worker did not run the job"
    assert seen == [7]
    [worker] = started
    _assert_stopped(worker)


def test_the_worker_stops_even_when_the_app_body_raises() -> None:
    app = App()
    started: list[Worker] = []

    @asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        async with lifespan_worker(app, concurrency=1, poll_interval_s=0.01,
                                   fetch_timeout_s=0.1) as worker:
            started.append(worker)
            raise RuntimeError("startup failed after the worker started")
        yield  # pragma: no cover (never reached: an async generator needs a yield)

    api = FastAPI(lifespan=lifespan)
    with pytest.raises(RuntimeError, match="startup failed"), TestClient(api):
        pass  # pragma: no cover
    [worker] = started
    _assert_stopped(worker)


def _assert_stopped(worker: Worker) -> None:
    """Stopped, not merely quiet: a stopped worker refuses to start again."""
    assert worker.busy == 0
    with pytest.raises(ConfigurationError, match="stopped worker cannot start again"):
        worker.start()
