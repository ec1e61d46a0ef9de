"""Deterministic draining for tests: run every pushed job in the calling thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sideline.core.payload import Payload
from sideline.runtime.executor import process

if TYPE_CHECKING:
    from sideline.runtime.context import Runtime

__all__ = ["DRAIN_WORKER_ID", "drain"]

DRAIN_WORKER_ID = "drain"


def drain(runtime: Runtime, *, run_scheduled: bool = True, raise_errors: bool = False) -> int:
    """Run queued jobs (all queues, in name order) until none is left; return how many ran.

    With `run_scheduled`, once the queues are empty the earliest scheduled or retry
    job is moved as if its time had come, and draining continues.
    """
    backend = runtime.backend
    errors: list[BaseException] = []

    def remember(_payload: Payload, exc: BaseException) -> None:
        errors.append(exc)

    ran = 0
    while True:
        backend.move_due(runtime.clock.now())
        queues = [name for name, size in backend.queue_sizes().items() if size]
        delivery = backend.fetch(DRAIN_WORKER_ID, queues, 0) if queues else None
        if delivery is not None:
            process(runtime, DRAIN_WORKER_ID, delivery, on_error=remember)
            ran += 1
            continue
        due = backend.next_due() if run_scheduled else None
        if due is None:
            break
        backend.move_due(due)
    if raise_errors and errors:
        raise errors[0]
    return ran
