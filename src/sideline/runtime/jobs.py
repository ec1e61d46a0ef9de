"""The object `@app.job` returns: still callable, plus ways to enqueue it."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from sideline.core.jobs import JobSpec, Signature
from sideline.runtime import typed
from sideline.runtime.handles import JobHandle

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["Job", "declaring_app"]

P = ParamSpec("P")
R = TypeVar("R")

_declared: dict[str, weakref.ref[App]] = {}
_declared_lock = threading.Lock()


def declaring_app(name: str) -> App | None:
    """The live App that last declared a job named `name`, if any.

    How `Workflow(tree)` finds its app without `app=`: a signature names its job and
    holds no app (core definitions know nothing of the runtime). When two live apps
    declare the same name, the later declaration wins; pass `app=` to choose.
    """
    with _declared_lock:
        ref = _declared.get(name)
    return None if ref is None else ref()


class Job(Generic[P, R]):
    """A declared job. Call it to run it here and now; `enqueue*` to run it on a worker."""

    def __init__(self, app: App, spec: JobSpec) -> None:
        self.app = app
        self.client = app.client
        """What pushes this job (runtime/client.py)."""
        self.spec = spec
        with _declared_lock:
            _declared[spec.name] = weakref.ref(app)
        self.name = spec.name
        self.__doc__ = getattr(spec.func, "__doc__", None)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the job's code here and now (an async job: returns its coroutine)."""
        result: R = self.app.perform(self.spec, list(args), dict(kwargs))
        return result

    def __repr__(self) -> str:
        return f"<Job {self.name} queue={self.spec.options.queue}>"

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature:
        """A signature of this job with these arguments: a workflow step.

        Raises:
            SchemaError: a typed job's given arguments do not fit its Input (fields not
                given are fine: they come from the run's memory when the step runs).
        """
        typed.check_arguments(self.spec, args, kwargs, partial=True)
        return Signature(self.name, tuple(args), dict(kwargs))

    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle | None:
        """Push the job now; return its handle, a str of its jid (None if client
        middleware dropped it, or an identical unique job is pending)."""
        return self._handle(self.client.enqueue(self.name, args, kwargs))

    async def enqueue_async(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle | None:
        """`enqueue` for async code: the push runs on a thread, the loop stays free."""
        return await asyncio.to_thread(self.enqueue, *args, **kwargs)

    def enqueue_in(self, delay_s: float, *args: Any, **kwargs: Any) -> JobHandle | None:
        """Push the job to run `delay_s` seconds from now."""
        return self._handle(self.client.enqueue(self.name, args, kwargs,
                                                at=self.client.clock.now() + delay_s))

    def enqueue_at(self, at: float, *args: Any, **kwargs: Any) -> JobHandle | None:
        """Push the job to run at `at` (seconds since the epoch)."""
        return self._handle(self.client.enqueue(self.name, args, kwargs, at=at))

    def handle(self, jid: str) -> JobHandle:
        """The handle of an earlier push of this job, from its jid."""
        return JobHandle(jid, self.app.backend, stores_result=self.spec.options.store_result)

    def _handle(self, jid: str | None) -> JobHandle | None:
        return None if jid is None else self.handle(jid)

    def enqueue_bulk(self, arg_lists: Iterable[Sequence[Any]]) -> list[str]:
        """Push one job per argument list in a single backend call; return the jids."""
        return self.client.enqueue_bulk(self.name, arg_lists)
