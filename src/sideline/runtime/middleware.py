"""Client and server middleware: hooks around pushing and around performing a job.

Client middleware sees each payload before it is pushed and returns it (maybe
changed) or None to drop it; raising JobRejected refuses it loudly. Server
middleware wraps the call of the job, like Sidekiq's `yield`: call `call_next()`
to continue the chain, and return (or transform) its result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from sideline.core.payload import Payload

if TYPE_CHECKING:
    from sideline.core.jobs import JobSpec
    from sideline.runtime.app import App

__all__ = ["ClientMiddleware", "JobContext", "ServerMiddleware", "run_client_chain",
           "run_server_chain"]


@attrs.frozen
class JobContext:
    """What server middleware knows about the job being performed."""

    app: App
    payload: Payload
    spec: JobSpec
    worker_id: str


ClientMiddleware = Callable[[Payload], Payload | None]
ServerMiddleware = Callable[[JobContext, Callable[[], Any]], Any]


def run_client_chain(chain: Sequence[ClientMiddleware], payload: Payload) -> Payload | None:
    """Pass `payload` through every client middleware; None when one drops it."""
    current: Payload | None = payload
    for middleware in chain:
        if current is None:
            return None
        current = middleware(current)
    return current


def run_server_chain(chain: Sequence[ServerMiddleware], context: JobContext,
                     perform: Callable[[], Any]) -> Any:
    """Call `perform` inside every server middleware, the first one outermost."""

    def step(index: int) -> Any:
        if index == len(chain):
            return perform()
        return chain[index](context, lambda: step(index + 1))

    return step(0)
