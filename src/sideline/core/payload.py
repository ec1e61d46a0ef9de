"""The job payload: the one JSON document that travels through queues and sets.

A payload never carries code or pickled objects: `name` is looked up in the
registry of declared jobs, and `args`/`kwargs` must be JSON-native values.
Times (`*_at`) are float seconds since the epoch.
"""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from sideline.core.errors import PayloadError, SerializationError

__all__ = ["Payload", "bump_recoveries", "check_json_native", "decode", "encode"]


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
    failed_at: float | None = None
    retried_at: float | None = None
    dead_reason: str | None = None
    run_id: str | None = None
    node_id: int | None = None
    batch_id: str | None = None
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


_converter = cattrs.Converter(forbid_extra_keys=False)
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


def decode(raw: str | bytes) -> Payload:
    """Parse JSON text into a Payload.

    Raises:
        PayloadError: the text is not JSON, not an object, or a field has the wrong type.
    """
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"payload is not valid JSON ({exc}): {_preview(raw)}") from exc
    if not isinstance(data, dict):
        raise PayloadError(f"payload must be a JSON object, got {type(data).__name__}: "
                           f"{_preview(raw)}")
    missing = [key for key in ("name", "jid", "queue") if not isinstance(data.get(key), str)]
    if missing:
        raise PayloadError(f"payload lacks string field(s) {', '.join(missing)}: {_preview(raw)}")
    try:
        return _converter.structure(data, Payload)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        detail = "; ".join(cattrs.transform_error(exc)) if isinstance(
            exc, cattrs.BaseValidationError) else str(exc)
        raise PayloadError(f"payload has invalid fields ({detail}): {_preview(raw)}") from exc


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

    Allowed: None, bool, int, finite float, str, list, and dict with str keys, nested.
    Tuples are refused because they come back as lists.
    """
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{where} is {value!r}: NaN and infinity are not JSON")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_json_native(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{where} has key {key!r} of type {type(key).__name__}: JSON object keys "
                    "must be strings")
            check_json_native(item, f"{where}[{key!r}]")
        return
    hint = " (use a list)" if isinstance(value, tuple) else (
        " (pass a JSON-native value such as an id or an ISO string instead)")
    raise SerializationError(
        f"{where} is a {type(value).__name__}, which is not JSON-native{hint}: {value!r:.80}")


def _preview(raw: str | bytes, limit: int = 120) -> str:
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")
