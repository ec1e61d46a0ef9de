"""FastAPI with an embedded sideline worker that lives as long as the application.

`lifespan_worker` starts the worker when FastAPI starts and stops it, gracefully, when
it shuts down. An endpoint enqueues a job; the worker runs it in the same process.
Everything runs on the in-memory backend and FastAPI's TestClient (no server, no
Redis). Exits 0 when the job ran and the worker stopped. Needs `fastapi` installed.
Run it with `python examples/fastapi_app.py`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sideline import App
from sideline.contrib.starlette import lifespan_worker
from sideline.runtime.worker import Worker

jobs = App()  # the embedded in-memory backend
thanked = threading.Event()
workers: list[Worker] = []


@jobs.job
def send_thanks(order_id: int) -> None:
    print(f"job: thanking the customer of order {order_id}")
    thanked.set()


@asynccontextmanager
async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
    async with lifespan_worker(jobs, concurrency=2, poll_interval_s=0.01) as worker:
        workers.append(worker)
        print(f"lifespan: worker {worker.worker_id} started")
        yield
    print("lifespan: worker stopped")


api = FastAPI(lifespan=lifespan)


@api.post("/orders/{order_id}")
def place_order(order_id: int) -> dict[str, str]:
    handle = send_thanks.enqueue(order_id)
    return {"order": str(order_id), "job": str(handle)}


def main() -> int:
    with TestClient(api) as client:
        response = client.post("/orders/42")
        print(f"POST /orders/42 -> {response.status_code} {response.json()}")
        ran = thanked.wait(5)
    still_busy = workers[0].busy if workers else -1
    ok = response.status_code == 200 and ran and still_busy == 0
    print("ok" if ok else f"FAILED: ran={ran} busy after stop={still_busy}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
