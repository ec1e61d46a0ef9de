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
    job is moved as if its time had come, and draining continues. Once a fetch found jobs
    but took none (their limits refused them: a rate-limited job is scheduled for when its
    window has room), jobs are fetched at the latest due time draining jumped to (or the
    clock's, when later), so that job finds room instead of being scheduled again and again.
    """
    backend = runtime.backend
    errors: list[BaseException] = []

    def remember(_payload: Payload, exc: BaseException) -> None:
        errors.append(exc)

    ran = 0
    moved_to = runtime.clock.now()
    late = False  # a fetch found jobs and took none: fetch at draining's time from then on

    def now() -> float:  # the clock, or the due time draining jumped to, if later
        return max(runtime.clock.now(), moved_to)

    while True:
        backend.move_due(runtime.clock.now())
        queues = [name for name, size in backend.queue_sizes().items() if size]
        delivery = backend.fetch(DRAIN_WORKER_ID, queues, 0,
                                 now if late else None) if queues else None
        if delivery is not None:
            process(runtime, DRAIN_WORKER_ID, delivery, on_error=remember)
            ran += 1
            continue
        if queues and not late:
            late = True
            continue
        due = backend.next_due() if run_scheduled else None
        if due is None:
            break
        backend.move_due(due)
        moved_to = max(moved_to, due)
    if raise_errors and errors:
        raise errors[0]
    return ran
