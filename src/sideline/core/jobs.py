"""Job declarations: options, the registry of declared jobs, and job signatures."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from sideline.core.errors import ConfigurationError, UnknownJob
from sideline.core.limits import Concurrency, Rate
from sideline.core.payload import check_json_native
from sideline.core.results import DEFAULT_RESULT_TTL_S
from sideline.core.retry import DEFAULT_MAX_RETRIES, RetryIn

__all__ = ["ISOLATIONS", "JobOptions", "JobSpec", "Registry", "Signature", "normalize_retry"]

ISOLATIONS = ("thread", "process")
"""Where a blocking job runs: a worker thread, or a child process that can be killed."""

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def normalize_retry(retry: bool | int) -> int:
    """Turn the `retry` option (True, False or a count) into a maximum retry count."""
    if retry is True:
        return DEFAULT_MAX_RETRIES
    if retry is False:
        return 0
    if not isinstance(retry, int) or retry < 0:
        raise ConfigurationError(f"retry must be True, False or a count >= 0, got {retry!r}")
    return retry


def _async_kind(func: Callable[..., Any]) -> str | None:
    """How a job's callable is `async def` (calling it only makes a coroutine), if it is."""
    if isinstance(func, type):
        perform = getattr(func, "perform", None)
        return "a class whose perform() is async def" if _is_async(perform) else None
    if _is_async(func):
        return "an async def function"
    call = inspect.getattr_static(type(func), "__call__", None)
    if not inspect.isroutine(func) and _is_async(call):
        return "a callable object whose __call__() is async def"
    return None


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func)


def check_queue_name(queue: str) -> str:
    """Return `queue` if it is a valid queue name, else raise ConfigurationError."""
    if not isinstance(queue, str) or not _QUEUE_NAME.match(queue):
        raise ConfigurationError(
            f"queue name {queue!r} is invalid: use 1-128 letters, digits, '_', '.', ':' or '-'")
    return queue


@attrs.frozen
class JobOptions:
    """How a declared job is pushed and retried."""

    queue: str = attrs.field(default="default", validator=lambda _i, _a, v: check_queue_name(v))
    retry: int = DEFAULT_MAX_RETRIES
    """Maximum retries after the first failure (0: none)."""
    retry_in: RetryIn | None = None
    dead: bool = True
    unique_for_s: float | None = None
    timeout_s: float | None = None
    tags: tuple[str, ...] = ()
    retry_schema_errors: bool = False
    """Retry a typed job whose data failed its schema (default: straight to the dead set)."""
    memory_namespace: str | None = None
    """Write this step's output to run memory as "<namespace>.<key>" (default: "<key>")."""
    store_result: bool = False
    """Keep the job's return value (or the error it died of) for `JobHandle.result()`."""
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    """How long a stored result, and the job's state and progress, are kept."""
    isolation: str = "thread"
    """"thread": the job runs on a worker thread (a timeout is soft); "process": in a
    child process of a small pool, killed at its timeout or when stopped."""
    limit: Concurrency | Rate | None = None
    """A fleet-wide concurrency or rate limit per key (core/limits.py)."""

    def __attrs_post_init__(self) -> None:
        if self.isolation not in ISOLATIONS:
            raise ConfigurationError(
                f"isolation must be one of {', '.join(ISOLATIONS)}, got {self.isolation!r}")
        if self.timeout_s is not None and not (
                isinstance(self.timeout_s, int | float) and self.timeout_s > 0):
            raise ConfigurationError(f"timeout must be a number of seconds > 0, got {self.timeout_s!r}")
        if isinstance(self.result_ttl_s, bool) or not isinstance(self.result_ttl_s, int) or (
                self.result_ttl_s <= 0):
            raise ConfigurationError(
                f"result_ttl_s must be whole seconds > 0, got {self.result_ttl_s!r}")


@attrs.frozen
class JobSpec:
    """A declared job: its registry name, the callable that performs it, and its options."""

    name: str
    func: Callable[..., Any]
    options: JobOptions
    input: type[Any] | None = None
    """The attrs class the job's argument dict is structured into (a typed job)."""
    output: type[Any] | None = None
    """The attrs class the job's return value is checked against."""
    is_async: bool = attrs.field(init=False, eq=False, repr=False)
    """True when the job's code is a coroutine function (run on the worker's loop); read
    once here, since every job run asks."""

    @is_async.default
    def _read_async(self) -> bool:
        return _async_kind(self.func) is not None

    def __attrs_post_init__(self) -> None:
        if inspect.isasyncgenfunction(self.func):
            raise ConfigurationError(
                f"job {self.name!r} is an async generator; declare an async def that "
                "returns its value")
        if self.options.isolation == "process":
            if self.is_async:
                raise ConfigurationError(
                    f"job {self.name!r} is async: isolation='process' is for blocking "
                    "code (an async job is cancelled at its timeout on the event loop)")
            if self.typed:
                raise ConfigurationError(
                    f"job {self.name!r} is typed: isolation='process' passes plain JSON "
                    "arguments and results only")

    @property
    def typed(self) -> bool:
        """True when the job declares an Input or an Output schema."""
        return self.input is not None or self.output is not None


@attrs.frozen
class Signature:
    """A job plus the arguments of one invocation: a step of a workflow.

    Build one with `job.s(*args, **kwargs)`; arguments are checked to be JSON-native.
    """

    job: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    queue: str | None = None
    allow_failure: bool = False
    namespace: str | None = None
    """Typed steps: write the output to run memory as "<namespace>.<key>"."""
    reads: Mapping[str, str] = attrs.field(factory=dict)
    """Typed steps: hydrate Input field -> from this memory key (default: the field name)."""

    def __attrs_post_init__(self) -> None:
        for index, arg in enumerate(self.args):
            check_json_native(arg, f"{self.job} argument {index}")
        for key, value in self.kwargs.items():
            check_json_native(value, f"{self.job} keyword argument {key!r}")
        if self.queue is not None:
            check_queue_name(self.queue)
        if self.namespace is not None and not (isinstance(self.namespace, str) and self.namespace):
            raise ConfigurationError(f"namespace must be a non-empty str, got {self.namespace!r}")
        for field, key in self.reads.items():
            if not (isinstance(field, str) and isinstance(key, str) and field and key):
                raise ConfigurationError(
                    f"reads maps Input field names to memory keys (non-empty str), got "
                    f"{field!r}: {key!r}")

    def set(self, *, queue: str | None = None, allow_failure: bool | None = None,
            namespace: str | None = None, reads: Mapping[str, str] | None = None) -> Signature:
        """Return a copy with a different queue, allow-failure flag, memory namespace or
        memory reads (Input field -> memory key, e.g. {"text": "fetch_a.text"})."""
        return attrs.evolve(
            self,
            queue=self.queue if queue is None else queue,
            allow_failure=self.allow_failure if allow_failure is None else allow_failure,
            namespace=self.namespace if namespace is None else namespace,
            reads=dict(self.reads) if reads is None else dict(reads),
        )


class Registry:
    """The declared jobs of one application, by name. Payloads may only name these."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}

    def add(self, spec: JobSpec) -> None:
        """Declare a job; a second job under the same name is a configuration error."""
        existing = self._specs.get(spec.name)
        if existing is not None and existing.func is not spec.func:
            raise ConfigurationError(
                f"job name {spec.name!r} is already declared by {existing.func!r}; "
                "pass name=... to one of them")
        self._specs[spec.name] = spec

    def get(self, name: str) -> JobSpec:
        """Return the spec declared under `name`.

        Raises:
            UnknownJob: no job of that name was declared in this process.
        """
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownJob(
                f"unknown job {name!r}: no job of that name is declared in this worker's app "
                "(declare it with @app.job, and make sure the worker imports that module)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs))

    def names(self) -> Sequence[str]:
        """Return the declared job names, sorted."""
        return sorted(self._specs)
