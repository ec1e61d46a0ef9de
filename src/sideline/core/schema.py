"""Typed inputs and outputs: attrs schemas, structured strictly with one cattrs converter.

A schema is an attrs class. Data crossing the boundary (a job's argument dict, its
return value, template params, per-run memory) is JSON-native; `structure` turns it
into a schema instance and `unstructure` back. The converter is strict: an unknown
key is an error, and no value is coerced ("1" is not an int, 1 is not a str, 0 is
not a bool). Every problem is reported with its field path and the expected type,
collected into one SchemaError.
"""

from __future__ import annotations

import types
import typing
from collections import abc
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.cols
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from sideline.core.errors import ConfigurationError, SchemaError
from sideline.core.payload import check_json_native

__all__ = ["check_schema", "field_names", "structure", "structure_partial", "type_name",
           "unstructure"]

T = TypeVar("T")


class _Mismatch(TypeError):
    """A value of the wrong type (raised by the strict hooks, formatted by `_problems`)."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"got {_describe(value)}")
        self.value = value


def _strict(kind: type[Any], accepts: tuple[type[Any], ...]) -> Any:
    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise _Mismatch(value)  # bool is an int subclass; JSON keeps them apart
        if not isinstance(value, accepts):
            raise _Mismatch(value)
        return kind(value) if kind is float else value

    return hook


def _origin(kind: Any) -> Any:
    return typing.get_origin(kind)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))

    def guarded(inner: Any, cls: Any, accepted: Any) -> Any:
        """cattrs' own structuring, only for values of the accepted JSON shape."""

        def hook(value: Any, _type: Any) -> Any:
            if not isinstance(value, accepted):
                raise _Mismatch(value)
            return inner(value, cls)

        return hook

    def objects(cls: type[Any]) -> Any:
        return guarded(converter.gen_structure_attrs_fromdict(cls), cls, Mapping)

    def lists(cls: Any) -> Any:
        # a str is iterable, not a list
        return guarded(cattrs.cols.list_structure_factory(cls, converter), cls, list | tuple)

    def mappings(cls: Any) -> Any:
        return guarded(cattrs.cols.mapping_structure_factory(cls, converter), cls, Mapping)

    def literals(cls: Any) -> Any:
        allowed = typing.get_args(cls)

        def hook(value: Any, _type: Any) -> Any:
            # compared with their types: 1 == True, but a JSON true is not the literal 1
            if not any(value == a and type(value) is type(a) for a in allowed):
                raise _Mismatch(value)
            return value

        return hook

    converter.register_structure_hook_factory(attrs.has, objects)
    converter.register_structure_hook_factory(lambda t: _origin(t) is typing.Literal, literals)
    converter.register_structure_hook_factory(
        lambda t: _origin(t) in (list, abc.Sequence, abc.MutableSequence), lists)
    converter.register_structure_hook_factory(lambda t: _origin(t) is dict, mappings)
    return converter


_converter = _make_converter()


def check_schema(schema: Any, what: str) -> type[Any]:
    """Return `schema` if it is an attrs class whose annotations resolve, else raise.

    Raises:
        ConfigurationError: not an attrs class, or a field's type cannot be resolved.
    """
    if not (isinstance(schema, type) and attrs.has(schema)):
        raise ConfigurationError(f"{what} must be an attrs class (@attrs.define), got {schema!r}")
    try:
        attrs.resolve_types(schema)
    except NameError as exc:
        raise ConfigurationError(
            f"{what} {schema.__qualname__}: cannot resolve field types ({exc}); define schema "
            "classes at module level") from exc
    return schema


def field_names(schema: type[Any]) -> tuple[str, ...]:
    """The schema's field names, in declaration order."""
    return tuple(field.name for field in attrs.fields(schema))


def structure(data: Any, schema: type[T], subject: str) -> T:
    """Turn JSON-native `data` into a `schema` instance, defaults applied.

    Args:
        subject: what the data is, for messages, e.g. "job 'enrich' input".

    Raises:
        SchemaError: naming every bad field with its path and expected type.
    """
    if isinstance(data, schema):
        data = _converter.unstructure(data)  # a round trip checks the field types too
    if not isinstance(data, Mapping):
        raise SchemaError(subject, [f"expected an object of {type_name(schema)} fields, got "
                                    f"{_describe(data)}"])
    try:
        return _converter.structure(data, schema)
    except Exception as exc:  # cattrs reports through an exception group; format it all
        raise SchemaError(subject, _problems(exc, "", schema)) from exc


def structure_partial(data: Mapping[str, Any], schema: type[Any], subject: str) -> None:
    """Check the fields present in `data` (unknown keys, wrong types); absent ones are fine.

    Used where the rest comes later: a workflow step's explicit arguments (the run's
    memory fills in the others) and a template's file defaults.

    Raises:
        SchemaError: as for `structure`.
    """
    fields = {field.name: field for field in attrs.fields(schema)}
    problems: list[str] = []
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            problems.append(f"unknown key {key!r}")
            continue
        try:
            _converter.structure(value, field.type)
        except Exception as exc:
            problems += _problems(exc, key, field.type)
    if problems:
        raise SchemaError(subject, problems)


def unstructure(instance: Any, subject: str) -> dict[str, Any]:
    """A schema instance (or any attrs instance) as a JSON-native dict.

    Raises:
        SchemaError: a field holds a value that is not JSON-native.
    """
    data: dict[str, Any] = _converter.unstructure(instance)
    try:
        check_json_native(data, "value")
    except Exception as exc:
        raise SchemaError(subject, [str(exc)]) from exc
    return data


def type_name(kind: Any) -> str:
    """A short, readable name of a field type: int, list[str], Meta, int | None."""
    if kind is type(None):
        return "None"
    args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is not None and args:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_name(arg) for arg in args)}]"
    if isinstance(kind, type):
        return kind.__name__
    return str(kind).replace("typing.", "")


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _problems(exc: BaseException, path: str, expected: Any) -> list[str]:
    """Flatten a cattrs error (group) into 'field PATH expected TYPE, got ...' lines."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        found: list[str] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                found += _problems(sub, f"{path}.{note.name}" if path else note.name, note.type)
            elif isinstance(note, IterableValidationNote):
                found += _problems(sub, f"{path}[{note.index}]", note.type)
            else:  # pragma: no cover (cattrs attaches one of the two notes above)
                found += _problems(sub, path, expected)
        for sub in without:
            found += _problems(sub, path, expected)
        return found
    if isinstance(exc, ForbiddenExtraKeysError):
        return [f"unknown key {(f'{path}.{key}' if path else key)!r}"
                for key in sorted(exc.extra_fields)]
    if isinstance(exc, KeyError):
        return [f"missing required field {path!r} ({type_name(expected)})"]
    if isinstance(exc, _Mismatch):
        where = f"field {path!r}" if path else "value"
        return [f"{where} expected {type_name(expected)}, got {_describe(exc.value)}"]
    where = f"field {path!r}" if path else "value"
    return [f"{where} is invalid for {type_name(expected)}: {exc}"]
