"""The job payload: the one JSON document that travels through queues and sets.

A payload never carries code or pickled objects: `name` is looked up in the
registry of declared jobs, and `args`/`kwargs` must be JSON-native values.
Times (`*_at`) are float seconds since the epoch.

Decoding is strict and bounded: a payload larger than `MAX_PAYLOAD_BYTES`, nested
deeper than `MAX_DEPTH`, not UTF-8, or with a field of the wrong type is refused with
a `PayloadError` that says what was wrong, never coerced into something else.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any, get_origin

import attrs
import cattrs
from cattrs.cols import list_structure_factory, mapping_structure_factory
from cattrs.errors import AttributeValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from sideline.core.errors import PayloadError, SerializationError
from sideline.core.limits import MAX_COUNT, MAX_KEY_LENGTH, limit_problem

__all__ = [
    "MAX_DEPTH",
    "MAX_HEADERS",
    "MAX_HEADER_KEY_LENGTH",
    "MAX_HEADER_VALUE_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "Payload",
    "bump_recoveries",
    "check_json_native",
    "decode",
    "decode_stored",
    "encode",
    "raw_bytes",
]

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
"""Default limit on a payload's size in UTF-8 bytes (8 MiB), checked before parsing."""
MAX_DEPTH = 64
"""Default limit on nested arrays and objects in a payload, the top-level object being 1."""
MAX_HEADERS = 32
"""The most entries a payload's `headers` may hold."""
MAX_HEADER_KEY_LENGTH = 64
"""The longest key of a payload's `headers`, in characters."""
MAX_HEADER_VALUE_LENGTH = 512
"""The longest value of a payload's `headers`, in characters."""
_VALUE_DEPTH = MAX_DEPTH - 2
# An argument sits two levels below the payload's top (the payload object, then its args
# array or kwargs object), so check_json_native refuses exactly what decode would refuse.


@attrs.frozen
class Payload:
    """One job execution request, as stored in Redis or the memory backend."""

    name: str
    jid: str
    queue: str
    args: list[Any] = attrs.field(factory=list)
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    created_at: float = 0.0
    enqueued_at: float | None = None
    retry: int = 25
    """How many retries are allowed after the first failure (0: none)."""
    dead: bool = True
    """Whether a job that exhausted its retries goes to the dead set (else it is discarded)."""
    retry_count: int = 0
    error_class: str | None = None
    error_message: str | None = None
    error_backtrace: list[str] = attrs.field(factory=list)
    """The innermost lines of the last error's backtrace (retry and dead entries)."""
    failed_at: float | None = None
    retried_at: float | None = None
    dead_reason: str | None = None
    run_id: str | None = None
    node_id: int | None = None
    batch_id: str | None = None
    """The batch this job is a member of (its ending is counted there)."""
    callback_of: str | None = None
    """A batch callback job: the batch whose callback it is (with `callback_event`)."""
    callback_event: str | None = None
    """A batch callback job: "complete", "success" or "death"."""
    recoveries: int = 0
    """How many times this job was recovered from a dead worker's in-progress list."""
    tags: list[str] = attrs.field(factory=list)
    timeout_s: float | None = None
    unique_key: str | None = None
    """The uniqueness lock this job holds (jobs declared with unique_for)."""
    unique_token: str | None = None
    memory_ns: str | None = None
    """Typed workflow steps: the namespace the output is written under in run memory."""
    memory_reads: dict[str, str] = attrs.field(factory=dict)
    """Typed workflow steps: Input field -> the run-memory key it is hydrated from."""
    limit_key: str | None = None
    """The key of the job's fleet-wide limit (core/limits.py), resolved at enqueue; with
    `limit_max` (a concurrency limit) or `limit_rate` and `limit_per_s` (a rate limit)."""
    limit_max: int | None = None
    """Concurrency limit: at most this many jobs of `limit_key` run at once (>= 1)."""
    limit_rate: int | None = None
    """Rate limit: at most this many jobs of `limit_key` start per `limit_per_s` (>= 1)."""
    limit_per_s: float | None = None
    """Rate limit: the window, in seconds (> 0)."""
    headers: dict[str, str] = attrs.field(factory=dict)
    """Free-form string metadata carried from enqueue to perform and across retries (e.g.
    a trace context); at most `MAX_HEADERS` entries, keys up to `MAX_HEADER_KEY_LENGTH`
    and values up to `MAX_HEADER_VALUE_LENGTH` characters."""


class _Invalid(ValueError):
    """A field's value has the wrong type or is out of range; the message lacks the field."""


def _kind(value: object) -> str:
    """The name of a parsed JSON value's type, for messages."""
    if value is None:
        return "null"
    return "object" if isinstance(value, dict) else type(value).__name__


def _structure_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid(f"must be a str, got {_kind(value)}")


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _Invalid(f"must be an int, got {_kind(value)}")


def _structure_count(value: object, _: type) -> int:
    number = _structure_int(value, int)
    if number < 0:
        raise _Invalid(f"must be >= 0, got {number}")
    return number


def _structure_optional_count(value: object, _: type) -> int | None:
    # An override replaces cattrs' own `X | None` handling, so null is let through here.
    return None if value is None else _structure_count(value, int)


def _structure_optional_positive(value: object, _: type) -> int | None:
    if value is None:
        return None
    number = _structure_int(value, int)
    if not 1 <= number < MAX_COUNT:
        raise _Invalid(f"must be >= 1 and < 2**53, got {number}")
    return number


def _structure_optional_window(value: object, _: type) -> float | None:
    if value is None:
        return None
    number = _structure_float(value, float)
    if not number > 0:
        raise _Invalid(f"must be > 0, got {number!r}")
    return number


def _structure_optional_key(value: object, _: type) -> str | None:
    if value is None:
        return None
    text = _structure_str(value, str)
    if not 1 <= len(text) <= MAX_KEY_LENGTH:
        raise _Invalid(f"must be 1-{MAX_KEY_LENGTH} characters, got {len(text)}")
    return text


def _structure_headers(value: object, _: type) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid(f"must be an object, got {_kind(value)}")
    if len(value) > MAX_HEADERS:
        raise _Invalid(f"must hold at most {MAX_HEADERS} entries, got {len(value)}")
    for key, item in value.items():  # JSON object keys are always str
        if len(key) > MAX_HEADER_KEY_LENGTH:
            raise _Invalid(f"key {key[:20]!r}... must be at most {MAX_HEADER_KEY_LENGTH} "
                           f"characters, got {len(key)}")
        if not isinstance(item, str):
            raise _Invalid(f"value of {key!r} must be a str, got {_kind(item)}")
        if len(item) > MAX_HEADER_VALUE_LENGTH:
            raise _Invalid(f"value of {key!r} must be at most {MAX_HEADER_VALUE_LENGTH} "
                           f"characters, got {len(item)}")
    return dict(value)


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"must be a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _Invalid("must be a finite number, got an int too large for a float") from None
    if not math.isfinite(number):
        raise _Invalid(f"must be a finite number, got {number!r}")
    return number


def _structure_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid(f"must be true or false, got {_kind(value)}")


def _is_list(type_: Any) -> bool:
    return get_origin(type_) is list


def _is_dict(type_: Any) -> bool:
    return get_origin(type_) is dict


def _strict_container(kind: type, label: str, factory: Callable[[Any, cattrs.Converter], Any]
                      ) -> Callable[[Any, cattrs.Converter], Callable[[object, type], Any]]:
    """A hook factory wrapping cattrs' own `factory`, refusing anything but a `kind` (cattrs
    would iterate a str or a dict as if it were a list)."""

    def hook(type_: Any, converter: cattrs.Converter) -> Callable[[object, type], Any]:
        structure_items = factory(type_, converter)

        def structure(value: object, _: type) -> Any:
            if not isinstance(value, kind):
                raise _Invalid(f"must be {label}, got {_kind(value)}")
            return structure_items(value, type_)

        return structure

    return hook


_strict_list = _strict_container(list, "a list", list_structure_factory)
_strict_dict = _strict_container(dict, "an object", mapping_structure_factory)


# One converter for both directions. Its structure hooks check instead of coercing:
# cattrs' defaults would turn "5" into 5, "no" into True and "abc" into ["a", "b", "c"].
_converter = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)
_converter.register_structure_hook(str, _structure_str)
_converter.register_structure_hook(int, _structure_int)
_converter.register_structure_hook(float, _structure_float)
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook_factory(_is_list, _strict_list)
_converter.register_structure_hook_factory(_is_dict, _strict_dict)
_converter.register_structure_hook(
    Payload,
    make_dict_structure_fn(
        Payload,
        _converter,
        retry=override(struct_hook=_structure_count),
        retry_count=override(struct_hook=_structure_count),
        recoveries=override(struct_hook=_structure_count),
        node_id=override(struct_hook=_structure_optional_count),
        limit_key=override(struct_hook=_structure_optional_key),
        limit_max=override(struct_hook=_structure_optional_positive),
        limit_rate=override(struct_hook=_structure_optional_positive),
        limit_per_s=override(struct_hook=_structure_optional_window),
        headers=override(struct_hook=_structure_headers),
    ),
)
_converter.register_unstructure_hook(
    Payload,
    make_dict_unstructure_fn(
        Payload,
        _converter,
        _cattrs_omit_if_default=True,
        # name, jid and queue have no defaults, so they are always written.
        created_at=override(omit_if_default=False),
    ),
)


def encode(payload: Payload) -> str:
    """Serialize a payload to its compact JSON text."""
    return json.dumps(_converter.unstructure(payload), separators=(",", ":"), sort_keys=True)


def decode(raw: str | bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES,
           max_depth: int = MAX_DEPTH) -> Payload:
    """Parse JSON text into a Payload, checking every field's type strictly.

    Args:
        raw: the payload text, or its UTF-8 bytes. A str may carry undecodable bytes as
            lone surrogates (a client decoding with errors="surrogateescape"); those are
            refused as not UTF-8, like the bytes themselves.
        max_bytes: the largest accepted size in UTF-8 bytes, checked before parsing.
        max_depth: the deepest accepted nesting of arrays and objects (the payload
            object is level 1). Python's parser gives up near 1,000 levels whatever this is.

    Raises:
        PayloadError: the text is too large, not UTF-8, not JSON, nested too deep, holds
            a non-finite number, is not an object, lacks `name`, `jid` or `queue`, has
            a field of the wrong type or out of range, or limit fields that do not make
            one limit (core.limits.limit_problem). The message names the field.
    """
    text = _checked_text(raw, max_bytes)
    try:
        data = json.loads(text)
    except RecursionError:  # its thousand-frame traceback would add nothing: from None
        raise PayloadError(f"payload is nested deeper than the JSON parser can follow "
                           f"(max_depth is {max_depth}): {_preview(raw)}") from None
    except ValueError as exc:
        raise PayloadError(f"payload is not valid JSON ({exc}): {_preview(raw)}") from exc
    if not isinstance(data, dict):
        raise PayloadError(f"payload must be a JSON object, got {_kind(data)}: "
                           f"{_preview(raw)}")
    problem = _tree_problem(data, max_depth)
    if problem:
        raise PayloadError(f"payload {problem}: {_preview(raw)}")
    missing = [key for key in ("name", "jid", "queue") if not isinstance(data.get(key), str)]
    if missing:
        raise PayloadError(f"payload lacks string field(s) {', '.join(missing)}: "
                           f"{_preview(raw)}")
    try:
        payload = _converter.structure(data, Payload)
    except cattrs.BaseValidationError as exc:
        raise PayloadError(f"{'; '.join(_problems(exc, ''))}: {_preview(raw)}") from exc
    problem = limit_problem(payload.limit_key, payload.limit_max, payload.limit_rate,
                            payload.limit_per_s)
    if problem:
        raise PayloadError(f"{problem}: {_preview(raw)}")
    return payload


def raw_bytes(raw: str | bytes) -> bytes:
    """The exact bytes a payload was read as: a str decoded with errors="surrogateescape"
    is encoded back the same way, so undecodable bytes come back as they were.

    Raises:
        UnicodeEncodeError: `raw` holds a lone surrogate outside U+DC80..U+DCFF, which no
            surrogateescape decoding produces.
    """
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")


def decode_stored(raw: str, key: str, queue: str) -> Payload:
    """A payload read back from a set sideline wrote (scheduled, retry, dead); never raises.

    No size limit applies (an undecodable entry is kept whole in the dead set), and an
    entry that does not decode (one written by hand) comes back as an `<undecodable>`
    placeholder under its set key `key`, so listing, deleting and retrying still work.
    """
    try:
        return decode(raw, max_bytes=sys.maxsize)
    except PayloadError as exc:
        return Payload(name="<undecodable>", jid=key, queue=queue, args=[_preview(raw, 1000)],
                       dead_reason=f"undecodable payload: {exc}")


def bump_recoveries(raw: str) -> str:
    """The payload text with `recoveries` one higher; text that is not a payload is kept as is
    (the worker that fetches it again sends it to the dead set with the parse error)."""
    try:
        payload = decode(raw)
    except PayloadError:
        return raw
    return encode(attrs.evolve(payload, recoveries=payload.recoveries + 1))


def check_json_native(value: Any, where: str) -> None:
    """Raise SerializationError naming `where` if `value` would not survive a JSON round trip.

    Allowed: None, bool, int, finite float, str, list, and dict with str keys, nested at
    most MAX_DEPTH - 2 levels (the payload object and its args or kwargs take two).
    Tuples are refused because they come back as lists; a container holding itself is
    refused. The walk uses an explicit stack, so no input makes it raise RecursionError.
    """
    # Entries are (value, path, depth); a container is pushed again as (None, path, -id)
    # after its children, so that popping it marks the end of its subtree.
    stack: list[tuple[Any, str, int]] = [(value, where, 1)]
    open_paths: dict[int, str] = {}  # id -> path of each container enclosing the current one
    while stack:
        item, path, depth = stack.pop()
        if depth < 0:
            del open_paths[-depth]
        elif isinstance(item, list | dict):
            if id(item) in open_paths:
                raise SerializationError(
                    f"{path} contains itself (it is {open_paths[id(item)]} again): JSON "
                    "cannot represent a cycle; pass a copy without the loop")
            if depth > _VALUE_DEPTH:
                raise SerializationError(
                    f"{where} is nested deeper than {_VALUE_DEPTH} levels of lists and dicts: "
                    f"a payload allows {MAX_DEPTH}, counting its own object and args list")
            open_paths[id(item)] = path
            stack.append((None, path, -id(item)))
            stack.extend(reversed(list(_children(item, path, depth + 1))))
        else:
            _check_scalar(item, path)


def _children(container: list[Any] | dict[Any, Any], path: str,
              depth: int) -> Iterator[tuple[Any, str, int]]:
    if isinstance(container, list):
        for index, item in enumerate(container):
            yield item, f"{path}[{index}]", depth
        return
    for key, item in container.items():
        if not isinstance(key, str):
            raise SerializationError(
                f"{path} has key {key!r} of type {type(key).__name__}: JSON object keys "
                "must be strings")
        yield item, f"{path}[{key!r}]", depth


def _check_scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{where} is {value!r}: NaN and infinity are not JSON")
        return
    hint = " (use a list)" if isinstance(value, tuple) else (
        " (pass a JSON-native value such as an id or an ISO string instead)")
    raise SerializationError(
        f"{where} is a {type(value).__name__}, which is not JSON-native{hint}: {value!r:.80}")


def _checked_text(raw: str | bytes, max_bytes: int) -> str:
    """`raw` as text once its size and UTF-8 validity are checked; raises PayloadError."""
    if len(raw) > max_bytes:  # a character is at least one byte: too large, known unread
        unit = "bytes" if isinstance(raw, bytes) else "characters"
        raise PayloadError(f"payload is larger than {max_bytes} bytes ({len(raw)} {unit}): "
                           f"{_preview(raw)}")
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"payload is not UTF-8: {exc.reason} at byte offset "
                               f"{exc.start}: {_preview(raw)}") from exc
    if raw.isascii():
        return raw
    try:
        size = len(raw.encode("utf-8"))
    except UnicodeEncodeError as exc:
        offset = len(raw[:exc.start].encode("utf-8"))
        code = ord(raw[exc.start])
        found = (f"invalid byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF
                 else f"lone surrogate U+{code:04X}")
        raise PayloadError(f"payload is not UTF-8: {found} at byte offset {offset}: "
                           f"{_preview(raw)}") from exc
    if size > max_bytes:
        raise PayloadError(f"payload is larger than {max_bytes} bytes ({size} bytes): "
                           f"{_preview(raw)}")
    return raw


def _tree_problem(data: dict[str, Any], max_depth: int) -> str | None:
    """What makes parsed JSON unacceptable beyond its fields' types, if anything.

    Iterative, so a deep document cannot exhaust the stack here. Non-finite numbers
    (NaN, Infinity, 1e999) are refused anywhere: they would not survive encode as JSON.
    """
    stack: list[tuple[list[Any] | dict[str, Any], int]] = [(data, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            return f"is nested deeper than {max_depth} levels of arrays and objects"
        for item in container.values() if isinstance(container, dict) else container:
            if isinstance(item, list | dict):
                stack.append((item, depth + 1))
            elif isinstance(item, float) and not math.isfinite(item):
                return f"holds the non-finite number {item!r}, which JSON cannot carry"
    return None


def _problems(exc: BaseException, path: str) -> Iterator[str]:
    """One message per failed field of a cattrs validation error, with its path."""
    if isinstance(exc, cattrs.ClassValidationError | cattrs.IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                step = f"{path}.{note.name}" if path else note.name
            else:
                step = f"{path}[{note.index!r}]"
            yield from _problems(sub, step)
        for sub in without:
            yield from _problems(sub, path)
    elif isinstance(exc, _Invalid):
        yield f"payload field {path!r} {exc}"
    else:
        yield f"payload field {path!r} is invalid ({type(exc).__name__}: {exc})"


def _preview(raw: str | bytes, limit: int = 120) -> str:
    """A short printable excerpt for messages; never raises, whatever `raw` holds.

    Text with undecodable bytes shows as a bytes repr, so a bad byte reads `\\xff`.
    """
    head, more = raw[:limit], "..." if len(raw) > limit else ""
    if isinstance(head, str):
        try:
            head = head.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that no byte decoding produces
            return ascii(head) + more
    try:
        return repr(head.decode("utf-8")) + more
    except UnicodeDecodeError:
        return repr(head) + more
