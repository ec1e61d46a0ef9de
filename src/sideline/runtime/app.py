"""App: the registry of declared jobs, the backend, middleware, and the client API."""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Literal, cast, overload

import attrs

from sideline.core import schema
from sideline.core.batch import BATCH_LINGER_S, BATCH_TTL_S
from sideline.core.clock import Clock, RandomSource
from sideline.core.errors import ConfigurationError
from sideline.core.jobs import JobOptions, JobSpec, Registry, Signature, normalize_retry
from sideline.core.limits import Concurrency, Rate
from sideline.core.payload import Payload
from sideline.core.periodic import DEFAULT_GRACE_S, DEFAULT_MAX_MISSED, Missed, PeriodicEntry
from sideline.core.ports import Backend
from sideline.core.results import DEFAULT_RESULT_TTL_S
from sideline.core.retry import RetryIn
from sideline.environment import env_number
from sideline.runtime import orphans as orphan_ops
from sideline.runtime import typed, workflows
from sideline.runtime._env import SystemClock, system_random
from sideline.runtime.admin import Admin, AdminBackend
from sideline.runtime.batches import Batch
from sideline.runtime.client import Client
from sideline.runtime.config import WorkerSettings
from sideline.runtime.context import Runtime, Settings
from sideline.runtime.handles import JobHandle
from sideline.runtime.jobs import Job
from sideline.runtime.middleware import ClientMiddleware, ServerMiddleware
from sideline.runtime.observers import DeathHandler, DeathHandlers, Observer, Observers
from sideline.runtime.orphans import Orphan, Recovery
from sideline.runtime.templates import Builder, Template, Templates
from sideline.runtime.testing import drain
from sideline.runtime.worker import Worker
from sideline.runtime.workflows import RunInfo

__all__ = ["App", "DeathHandler", "TestingMode", "import_app"]


async def _typed_value(outcome: Coroutine[Any, Any, typed.Outcome]) -> Any:
    return (await outcome).value

log = logging.getLogger("sideline.client")

TestingMode = Literal["inline", "collect"]


class App:
    """A sideline application: declare jobs on it, enqueue them, run workers for it.

    Args:
        backend: where jobs and runs live; the embedded MemoryBackend by default.
        testing: None for real workers; "inline" runs every pushed job at once in the
            pushing thread; "collect" keeps pushed jobs until `drain()` runs them.
        clock, random: injected time and randomness (tests pass fakes).
        run_ttl_s: how long a workflow run's state lives after its last change
            (default SIDELINE_RUN_TTL_S, else 7 days).
        finished_ttl_s: how long a finished run lingers: a succeeded or cancelled run as
            a compact summary, a failed one whole so a dead step can still be retried by
            hand (default SIDELINE_FINISHED_TTL_S, else 24 hours).
        max_recoveries: a job recovered from dead workers more often than this is a
            poison pill: it goes to the dead set instead of running again (default
            SIDELINE_MAX_RECOVERIES, else 3).
        keep_memory: keep a run's memory when the run succeeds or is cancelled, until it
            expires (run_ttl_s after its last write), for inspection; by default it is
            cleared then. A failed run always keeps it: a dead step retried by hand needs it.
        observers: Observer instances told about pushes, performs, settlements and
            workers (docs/observers.md); also `app.observers`, a list.
        store_results: the default of every job's `store_result` (default False): keep
            each job's return value for `JobHandle.result()` (docs/results.md).
        result_ttl_s: the default of every job's `result_ttl`: how long a stored result
            is kept (default one day).
    """

    def __init__(self, backend: Backend | None = None, *, testing: TestingMode | None = None,
                 clock: Clock | None = None, random: RandomSource | None = None,
                 run_ttl_s: int | None = None, max_recoveries: int | None = None,
                 keep_memory: bool = False, finished_ttl_s: int | None = None,
                 observers: Sequence[Observer] = (), store_results: bool = False,
                 result_ttl_s: int = DEFAULT_RESULT_TTL_S) -> None:
        if testing not in (None, "inline", "collect"):
            raise ConfigurationError(f"testing must be None, 'inline' or 'collect', got {testing!r}")
        if backend is None:
            # Composition root: the one place runtime wires an adapter (the contract in
            # pyproject.toml [tool.importlinter] allows exactly this import).
            from sideline.adapters.memory import MemoryBackend  # noqa: PLC0415
            backend = MemoryBackend(clock=clock)  # stored results expire by the app's time
        self.backend: Backend = backend
        self.testing = testing
        self.clock: Clock = clock or SystemClock()
        self.random: RandomSource = random or system_random()
        self.run_ttl_s = int(run_ttl_s if run_ttl_s is not None else env_number(
            "SIDELINE_RUN_TTL_S", 7 * 24 * 3600, integer=True))
        self.finished_ttl_s = int(finished_ttl_s if finished_ttl_s is not None else env_number(
            "SIDELINE_FINISHED_TTL_S", 24 * 3600, integer=True))
        self.max_recoveries = int(max_recoveries if max_recoveries is not None else env_number(
            "SIDELINE_MAX_RECOVERIES", 3, integer=True))
        self.registry = Registry()
        self.client_middleware: list[ClientMiddleware] = []
        self.server_middleware: list[ServerMiddleware] = []
        self.death_handlers: list[DeathHandler] = []
        self.observers: list[Observer] = list(observers)
        self.exhausted_hooks: dict[str, DeathHandler] = {}
        self._death = DeathHandlers(self.exhausted_hooks, self.death_handlers)
        self.client = Client(self.backend, self.clock, self.registry,
                             middleware=self.client_middleware, observers=self.observers,
                             after_push=self.after_push)
        """Builds, checks and pushes payloads; what `Job.enqueue*` and workflow runs use."""
        self.keep_memory = keep_memory
        self.periodic_entries: dict[str, PeriodicEntry] = {}
        """The periodic entries declared on this app (`periodic`, `@app.job(cron=...)`)."""
        self.poller_tasks: list[Callable[[], object]] = []
        """Called with no arguments by every worker's poller on each pass (about every
        `poll_interval_s`); a task keeps its own interval and must return quickly. An
        error is logged and the next pass calls it again (e.g. the outbox relay,
        sideline.contrib.outbox.install)."""
        self.store_results = store_results
        self.result_ttl_s = result_ttl_s
        self.templates = Templates(self)
        self._draining = threading.local()

    # -- declaring jobs --------------------------------------------------------------------

    @overload
    def job(self, func: Callable[..., Any], /) -> Job[Any, Any]: ...

    @overload
    def job(self, func: None = None, /, *, name: str | None = None, queue: str = "default",
            retry: bool | int = True, retry_in: RetryIn | None = None, dead: bool = True,
            unique_for: float | None = None, timeout: float | None = None,
            tags: Sequence[str] = (), on_exhausted: DeathHandler | None = None,
            input: type[Any] | None = None, output: type[Any] | None = None,
            retry_schema_errors: bool = False, memory_namespace: bool | str = False,
            store_result: bool | None = None, result_ttl: int | None = None,
            isolation: str = "thread", limit: Concurrency | Rate | None = None,
            cron: str | None = None, every_s: float | None = None, tz: str = "UTC",
            ) -> Callable[[Callable[..., Any]], Job[Any, Any]]: ...

    def job(self, func: Callable[..., Any] | None = None, /, *, name: str | None = None,
            queue: str = "default", retry: bool | int = True, retry_in: RetryIn | None = None,
            dead: bool = True, unique_for: float | None = None, timeout: float | None = None,
            tags: Sequence[str] = (), on_exhausted: DeathHandler | None = None,
            input: type[Any] | None = None, output: type[Any] | None = None,
            retry_schema_errors: bool = False, memory_namespace: bool | str = False,
            store_result: bool | None = None, result_ttl: int | None = None,
            isolation: str = "thread", limit: Concurrency | Rate | None = None,
            cron: str | None = None, every_s: float | None = None, tz: str = "UTC",
            ) -> Job[Any, Any] | Callable[[Callable[..., Any]], Job[Any, Any]]:
        """Declare a job: a function (`def` or `async def`), or a class whose instances
        have `perform(...)`.

        Args:
            name: registry name (default: module.qualname of the function or class).
            queue: the queue it is pushed to.
            retry: True (25 retries), False (none) or a retry count.
            retry_in: (retry_count, error) -> seconds, overriding the default backoff.
            dead: whether a job out of retries goes to the dead set (else it is dropped).
            unique_for: seconds during which a second job with the same name, arguments
                and queue is not pushed (enqueue returns None); the lock is released when
                the job succeeds, or expires.
            timeout: seconds the job may run (docs/jobs.md#timeouts): an async job is
                cancelled then, an isolated one killed; a thread job sees
                `current_job().should_stop()` turn true and is settled as JobTimeout when
                it returns. A timeout is a failure under the retry policy.
            tags: labels shown in the dashboard.
            on_exhausted: called with (payload, error) when retries are exhausted.
            input: an attrs class: the job takes one dict (or keyword arguments),
                structured into it strictly, and receives the instance (docs/typed.md).
            output: an attrs class the return value (an instance or a dict) must fit.
            retry_schema_errors: retry a job whose data fails its schema like any other
                failure (default: it goes straight to the dead set).
            memory_namespace: in a workflow run, write this job's output to run memory
                as "<namespace>.<key>": True for the job's name, or a str.
            store_result: keep the return value for `JobHandle.result()` (default: the
                App's `store_results`); it must be JSON-native.
            result_ttl: seconds a stored result is kept (default: the App's result_ttl_s).
            isolation: "thread" (default), or "process": run in a child process of a
                small pool, killed at its timeout or when stopped (plain JSON arguments
                and result; not for async or typed jobs).
            limit: `Concurrency(key, max)` or `Rate(key, limit, per_s)`: a fleet-wide
                limit per key, the key a template over the arguments ("customer:{0}")
                or a callable (docs/limits.md).
            cron, every_s, tz: also a periodic entry named after the job, pushing it
                with no arguments on this schedule (see `periodic`, docs/periodic.md).
        """

        def declare(target: Callable[..., Any]) -> Job[Any, Any]:
            if isinstance(target, type) and not callable(getattr(target, "perform", None)):
                raise ConfigurationError(f"job class {target.__qualname__} needs a perform() method")
            job_name = name or f"{target.__module__}.{target.__qualname__}"
            namespace = job_name if memory_namespace is True else memory_namespace or None
            options = JobOptions(queue=queue, retry=normalize_retry(retry), retry_in=retry_in,
                                 dead=dead, unique_for_s=unique_for, timeout_s=timeout,
                                 tags=tuple(tags), retry_schema_errors=retry_schema_errors,
                                 memory_namespace=namespace,
                                 store_result=self.store_results if store_result is None
                                 else store_result,
                                 result_ttl_s=self.result_ttl_s if result_ttl is None
                                 else result_ttl, isolation=isolation, limit=limit)
            spec = JobSpec(
                job_name, target, options,
                input=None if input is None else schema.check_schema(input, f"job {job_name!r} input"),
                output=None if output is None else schema.check_schema(
                    output, f"job {job_name!r} output"))
            self.registry.add(spec)
            if cron is not None or every_s is not None:
                self._add_periodic(PeriodicEntry(name=job_name, job=job_name, cron=cron,
                                                 every_s=every_s, tz=tz))
            if on_exhausted is not None:
                self.exhausted_hooks[job_name] = on_exhausted
            return Job(self, spec)

        return declare(func) if func is not None else declare

    def perform(self, spec: JobSpec, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Call a job's code directly in this thread (no retries, no middleware, no run
        memory); a typed job's input is structured and its output checked. An async job
        returns its coroutine (await it)."""
        if spec.is_async and spec.typed:
            return _typed_value(typed.perform_async(spec, None, args, kwargs))
        if spec.typed:
            return typed.perform(spec, None, args, kwargs).value
        return typed.invoke(spec, args, kwargs)

    @property
    def runtime(self) -> Runtime:
        """The worker side's context (the composition root: the one place it is built).

        Built afresh on each access from the App's current ports and settings; the
        middleware, observer and hook collections are the App's live ones.
        """
        return Runtime(
            backend=self.backend, clock=self.clock, random=self.random,
            registry=self.registry,
            settings=Settings(max_recoveries=self.max_recoveries, run_ttl_s=self.run_ttl_s),
            server_middleware=self.server_middleware,
            observers=Observers([self._death], self.observers), perform=self.perform, app=self,
            client=self.client, periodic=self.periodic_entries,
            poller_tasks=self.poller_tasks)

    # -- pushing jobs ----------------------------------------------------------------------

    def build_payload(self, name: str, args: Sequence[Any], kwargs: dict[str, Any],
                      **fields: Any) -> Payload:
        """A payload for declared job `name`, with its options (see `Client.build_payload`)."""
        return self.client.build_payload(name, args, kwargs, **fields)

    def enqueue(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                *, at: float | None = None, queue: str | None = None) -> JobHandle | None:
        """Push declared job `name` now (or at `at`); return its handle (a str of its jid),
        None if middleware dropped it."""
        jid = self.client.enqueue(name, args, kwargs, at=at, queue=queue)
        if jid is None:
            return None
        return JobHandle(jid, self.backend,
                         stores_result=self.registry.get(name).options.store_result)

    def handle(self, jid: str) -> JobHandle:
        """The handle of job `jid`: its status, progress and (stored) result."""
        return JobHandle(jid, self.backend)

    def enqueue_bulk(self, name: str, arg_lists: Iterable[Sequence[Any]]) -> list[str]:
        """Push many jobs of one kind in a single backend call; return the pushed jids."""
        return self.client.enqueue_bulk(name, arg_lists)

    def after_push(self) -> None:
        """In inline testing mode, run what was just pushed (not re-entrantly)."""
        if self.testing == "inline" and not getattr(self._draining, "active", False):
            self.drain()

    # -- workflows and workers -------------------------------------------------------------

    def status(self, run_id: str, *, results: bool = False) -> RunInfo:
        """The run's status and every node's status (raises RunExpired if it is gone);
        with `results`, also the stored results of its steps (`RunInfo.outputs`, jobs
        declared with store_result=True) and the progress its running steps reported
        (`RunInfo.running`); more backend reads."""
        return workflows.status(self, run_id, results=results)

    def cancel(self, run_id: str) -> bool:
        """Cancel a run; False if it had already ended."""
        return workflows.cancel(self, run_id)

    def wait(self, run_id: str, timeout_s: float = 30.0) -> RunInfo:
        """Block until the run finishes (on its completion signal, without polling); raise
        TimeoutError after `timeout_s`."""
        return workflows.wait(self, run_id, timeout_s)

    def memory(self, run_id: str) -> dict[str, Any]:
        """Every key of a run's memory (empty once cleared or expired)."""
        return self.backend.read(run_id, None, self.clock.now())

    # -- periodic jobs ---------------------------------------------------------------------

    def periodic(self, name: str, signature: Signature, *, cron: str | None = None,
                 every_s: float | None = None, tz: str = "UTC", missed: Missed | str = Missed.LATEST,
                 max_missed: int = DEFAULT_MAX_MISSED, grace_s: float = DEFAULT_GRACE_S,
                 ) -> PeriodicEntry:
        """Push `signature`'s job on a schedule, from every worker, each tick exactly once
        (docs/periodic.md).

        Args:
            name: the entry's name (unique in the app; the key of its state).
            signature: the job and its arguments (`job.s(...)`); its queue, if set, wins.
            cron: a 5-field cron expression, evaluated in `tz` (needs the cron extra).
            every_s: or a fixed interval in seconds (>= 1), aligned to the epoch.
            tz: an IANA time zone name (cron only; daylight-saving changes handled).
            missed: what ticks missed while no worker ran do: "skip", "latest" (fire the
                latest once, the default) or "all" (up to `max_missed`).
            grace_s: under "skip", how late a tick may still be fired.

        Raises:
            ConfigurationError: a bad schedule, name or time zone, an undeclared job, or
                the name declared twice.
        """
        self.registry.get(signature.job)  # UnknownJob now rather than at the first tick
        return self._add_periodic(PeriodicEntry(
            name=name, job=signature.job, args=tuple(signature.args),
            kwargs=dict(signature.kwargs), cron=cron, every_s=every_s, tz=tz,
            missed=Missed(missed), max_missed=max_missed, grace_s=grace_s,
            queue=signature.queue))

    def _add_periodic(self, entry: PeriodicEntry) -> PeriodicEntry:
        if entry.name in self.periodic_entries and self.periodic_entries[entry.name] != entry:
            raise ConfigurationError(f"periodic entry {entry.name!r} is declared twice")
        self.periodic_entries[entry.name] = entry
        return entry

    # -- templates -------------------------------------------------------------------------

    def template(self, name: str, *, input: type[Any], ttl_s: int | None = None,
                 ) -> Callable[[Builder], Builder]:
        """Register the decorated builder (params -> workflow tree) as template `name`.

        Same as `app.templates.register(name, input=...)`; see docs/typed.md.
        """
        return self.templates.register(name, input=input, ttl_s=ttl_s)

    def run_template(self, name: str, params: dict[str, Any] | None = None) -> str:
        """Run template `name`: params structured (defaults applied) and seeded into the
        run's memory; return the run id.

        Raises:
            SchemaError: the params do not fit the template's Input schema.
            WorkflowError: no template of that name.
        """
        return self.templates.run(name, params)

    def list_templates(self) -> list[Template]:
        """The registered templates, sorted by name."""
        return self.templates.list()

    def retry_dead(self, jid: str) -> bool:
        """Move a dead job back to its queue (a dead workflow step revives its run)."""
        moved = self.backend.retry_dead(jid, self.clock.now())
        if moved:
            self.after_push()
        return moved

    def orphans(self) -> list[Orphan]:
        """Jobs held by workers whose heartbeat expired, not yet recovered."""
        return orphan_ops.find_orphans(self.runtime)

    def retry_orphans(self, selected: Sequence[Orphan] | None = None) -> int:
        """Move orphans (default: all) back to their queues now; return how many moved."""
        moved = orphan_ops.recover_orphans(self.runtime, self.orphans() if selected is None else selected)
        if moved:
            self.after_push()
        return moved

    def delete_orphans(self, selected: Sequence[Orphan] | None = None) -> int:
        """Drop orphans (default: all) for good; return how many were dropped."""
        return orphan_ops.delete_orphans(self.backend, self.orphans() if selected is None else selected)

    def recovered(self, limit: int = 100) -> list[Recovery]:
        """The log of recovered jobs, newest first (instance, time orphaned, args, ...)."""
        return orphan_ops.recovery_log(self.backend, limit)

    # -- batches ---------------------------------------------------------------------------

    def batch(self, description: str = "", *, parent: str | None = None,
              callback_queue: str | None = None, ttl_s: int | None = None,
              linger_s: int | None = None) -> Batch:
        """A new batch (docs/batches.md): `batch.on(...)` its callbacks, then push its
        jobs in `with batch.jobs(): ...`. `batch.bid` identifies it."""
        return Batch(self.client, description=description, parent=parent,
                     callback_queue=callback_queue,
                     ttl_s=BATCH_TTL_S if ttl_s is None else ttl_s,
                     linger_s=BATCH_LINGER_S if linger_s is None else linger_s)

    def open_batch(self, bid: str) -> Batch:
        """The stored batch `bid`, to add jobs to it, read its status or invalidate it.

        Raises:
            BatchError: it is unknown or expired.
        """
        batch = Batch.existing(self.client, bid)
        batch.status()  # BatchError now if it is gone
        return batch

    @functools.cached_property
    def admin(self) -> Admin:
        """The admin API: stats, queues, the scheduled/retry/dead sets, workers, orphans."""
        # Every adapter implements AdminStore (tests/contract/test_admin_store.py).
        return Admin(cast("AdminBackend", self.backend), self.clock, orphans=self,
                     client=self.client,
                     after_push=self.after_push)

    def worker(self, **options: Any) -> Worker:
        """A Worker for this app (not started): options as for Worker; a setting not given
        comes from its SIDELINE_* environment variable (see docs/configuration.md)."""
        settings = attrs.asdict(WorkerSettings.resolve(options), recurse=False)
        settings.pop("app")
        settings.pop("processes")  # an embedded worker is threads of this process
        settings["max_jobs"] = settings.pop("max_jobs_per_child")
        options = {k: v for k, v in options.items() if k not in ("processes",
                                                                    "max_jobs_per_child")}
        return Worker(self.runtime, **{**settings, **options})

    # -- testing helpers -------------------------------------------------------------------

    def drain(self, *, run_scheduled: bool = True, raise_errors: bool = False) -> int:
        """Run queued jobs in this thread until nothing is left; return how many ran.

        With `run_scheduled`, scheduled jobs and retries are run too, earliest first,
        as if their time had come (no real waiting). With `raise_errors`, the first
        error a job raised is re-raised here once the queues are empty.
        """
        self._draining.active = True
        try:
            return drain(self.runtime, run_scheduled=run_scheduled, raise_errors=raise_errors)
        finally:
            self._draining.active = False


def import_app(target: str, setting: str) -> App:
    """Import "package.module:attribute" and return the App found there (the CLI's
    `--app`, Django's `SIDELINE["APP"]`; `setting` names it in the messages).

    Raises:
        ConfigurationError: the module cannot be imported, or the attribute is no App.
    """
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} for {setting}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        raise ConfigurationError(f"{setting} {target} is {app!r}, not a sideline App")
    return app
