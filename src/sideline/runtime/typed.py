"""Typed jobs at run time: Input from the argument dict (and run memory), Output checked.

A typed job is declared with `input=` and/or `output=` attrs classes. It is called
with one dict argument or keyword arguments; the job function receives the Input
instance. Its return value (an Output instance or a dict) is checked against Output.
In a workflow run, Input fields not passed explicitly are hydrated from the run's
memory, and the checked output is written back to it (see docs/typed.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from sideline.core import schema
from sideline.core.errors import SchemaError, SerializationError
from sideline.core.jobs import JobSpec
from sideline.core.payload import Payload, check_json_native

if TYPE_CHECKING:
    from sideline.core.clock import Clock
    from sideline.core.ports import Backend

__all__ = ["Outcome", "RunAccess", "call_arguments", "check_arguments", "check_output",
           "explicit_arguments", "hydrate", "invoke", "memory_values", "perform",
           "perform_async"]


class RunAccess(Protocol):
    """What reading a run's state or memory needs: the backend and the clock.

    An App has both; a function typed with this takes only what it uses (STYLE 13).
    """

    @property
    def backend(self) -> Backend:
        """The ports: queues, runs, run memory."""

    @property
    def clock(self) -> Clock:
        """The time source."""


@attrs.frozen
class Outcome:
    """What a typed job produced: the value for the caller and the values for run memory."""

    value: Any
    memory: dict[str, Any]


def _subject(spec: JobSpec, part: str) -> str:
    return f"job {spec.name!r} {part}"


def explicit_arguments(spec: JobSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The argument dict of a typed call: one positional dict, or the keyword arguments.

    Raises:
        SchemaError: positional arguments other than one dict, or both kinds at once.
    """
    if not args:
        return dict(kwargs)
    if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
        return dict(args[0])
    shape = f"{len(args)} positional argument(s)" + (" and keyword arguments" if kwargs else "")
    raise SchemaError(_subject(spec, "input"), [
        f"a typed job takes one dict or keyword arguments, got {shape}"])


def check_arguments(spec: JobSpec, args: Sequence[Any], kwargs: Mapping[str, Any], *,
                    partial: bool, reads: Mapping[str, str] | None = None) -> None:
    """Validate a typed job's arguments before anything is pushed.

    Args:
        partial: a workflow step: only the fields given are checked (the run's memory
            supplies the others when the step runs). Otherwise the arguments must make a
            complete Input.
        reads: a step's Input field -> memory key overrides; each must name a field.

    Raises:
        SchemaError: the arguments do not fit the Input schema.
    """
    if spec.input is None:
        return
    explicit = explicit_arguments(spec, args, kwargs)
    subject = _subject(spec, "input")
    if partial:
        schema.structure_partial(explicit, spec.input, subject)
        fields = set(schema.field_names(spec.input))
        unknown = sorted(set(reads or {}) - fields)
        if unknown:
            raise SchemaError(_subject(spec, "reads"), [
                f"unknown Input field {name!r}" for name in unknown])
    else:
        schema.structure(explicit, spec.input, subject)


def hydrate(app: RunAccess, spec: JobSpec, payload: Payload) -> dict[str, Any]:
    """The step's argument dict with the Input fields it lacks filled in from run memory.

    Explicit arguments win over memory; memory wins over the schema's defaults. A field
    is read from memory key `payload.memory_reads[field]`, else from its own name.
    """
    explicit = explicit_arguments(spec, payload.args, payload.kwargs)
    if spec.input is None or payload.run_id is None:
        return explicit
    wanted = {name: payload.memory_reads.get(name, name)
              for name in schema.field_names(spec.input) if name not in explicit}
    if not wanted:
        return explicit
    stored = app.backend.read(payload.run_id, list(dict.fromkeys(wanted.values())),
                              app.clock.now())
    found = {name: stored[key] for name, key in wanted.items() if key in stored}
    return {**found, **explicit}


def invoke(spec: JobSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Call the job's code: the function, or `perform` on a fresh instance of the class."""
    if isinstance(spec.func, type):
        return spec.func().perform(*args, **kwargs)
    return spec.func(*args, **kwargs)


def perform(spec: JobSpec, arguments: Mapping[str, Any] | None, args: Sequence[Any],
            kwargs: Mapping[str, Any]) -> Outcome:
    """Run a typed job: structure Input, call the job, check its Output.

    Args:
        arguments: the (hydrated) argument dict; None to take it from args/kwargs.

    Raises:
        SchemaError: the input or the output does not fit its schema.
    """
    call_args, call_kwargs = call_arguments(spec, arguments, args, kwargs)
    return check_output(spec, invoke(spec, call_args, call_kwargs))


async def perform_async(spec: JobSpec, arguments: Mapping[str, Any] | None,
                        args: Sequence[Any], kwargs: Mapping[str, Any]) -> Outcome:
    """`perform` for an async job: the coroutine is awaited before its Output is checked."""
    call_args, call_kwargs = call_arguments(spec, arguments, args, kwargs)
    return check_output(spec, await invoke(spec, call_args, call_kwargs))


def call_arguments(spec: JobSpec, arguments: Mapping[str, Any] | None, args: Sequence[Any],
                   kwargs: Mapping[str, Any]) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """What a typed job is called with: its structured Input (or the plain arguments).

    Raises:
        SchemaError: the input does not fit its schema.
    """
    if spec.input is None:
        return args, kwargs
    data = explicit_arguments(spec, args, kwargs) if arguments is None else arguments
    return [schema.structure(data, spec.input, _subject(spec, "input"))], {}


def check_output(spec: JobSpec, value: Any) -> Outcome:
    """A typed job's value checked against its Output, with what run memory gets.

    Raises:
        SchemaError: the output does not fit its schema.
    """
    if spec.output is not None:
        checked = schema.structure(value, spec.output, _subject(spec, "output"))
        return Outcome(checked, schema.unstructure(checked, _subject(spec, "output")))
    if attrs.has(type(value)):
        return Outcome(value, schema.unstructure(value, _subject(spec, "output")))
    if isinstance(value, dict):
        try:
            check_json_native(value, "the returned dict")
        except SerializationError as exc:
            raise SchemaError(_subject(spec, "output"), [str(exc)]) from exc
        return Outcome(value, dict(value))
    return Outcome(value, {})  # None or a plain value: nothing for run memory


def memory_values(spec: JobSpec, payload: Payload, produced: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a step's output is written under: "<namespace>.<key>" when namespaced."""
    namespace = payload.memory_ns or spec.options.memory_namespace
    if namespace is None:
        return dict(produced)
    return {f"{namespace}.{key}": value for key, value in produced.items()}
