"""Properties of payload decoding: any input gives a Payload or a PayloadError, and
encode/decode round-trip every valid payload."""

from __future__ import annotations

import json
import math
import types
from typing import Any, get_args, get_origin, get_type_hints

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sideline.core.errors import PayloadError
from sideline.core.payload import Payload, decode, encode, raw_bytes

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# Anything JSON can hold, plus values that are not JSON at all, for fields of any type.
any_field_value = json_values | st.just(math.nan) | st.just(math.inf)

FIELD_NAMES = [field.name for field in attrs.fields(Payload)]
FIELD_TYPES = get_type_hints(Payload)
COUNTS = ("retry", "retry_count", "recoveries", "node_id")


def conforms(value: Any, hint: Any) -> bool:
    """Whether `value` has exactly the annotated type: no bool for int, no int for float."""
    args = get_args(hint)
    if get_origin(hint) is types.UnionType:
        return any(conforms(value, arg) for arg in args)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if get_origin(hint) is list:
        return isinstance(value, list) and all(conforms(item, args[0]) for item in value)
    if get_origin(hint) is dict:
        return isinstance(value, dict) and all(
            conforms(key, args[0]) and conforms(item, args[1]) for key, item in value.items())
    if hint is float:
        return isinstance(value, float) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def decodes_or_refuses(raw: str | bytes) -> Payload | None:
    """The property: decode returns a well-typed Payload or raises PayloadError, nothing else."""
    try:
        payload = decode(raw)
    except PayloadError as exc:
        str(exc).encode("utf-8")  # the message is printable, even for surrogates in raw
        return None
    for name, hint in FIELD_TYPES.items():
        assert conforms(getattr(payload, name), hint), (name, getattr(payload, name))
    assert all((getattr(payload, name) or 0) >= 0 for name in COUNTS)
    assert decode(encode(payload)) == payload
    return payload


@given(st.binary())
def test_any_bytes_decode_or_raise_payload_error(raw: bytes) -> None:
    decodes_or_refuses(raw)


@given(st.text())
def test_any_text_decodes_or_raises_payload_error(raw: str) -> None:
    decodes_or_refuses(raw)


@given(st.binary())
def test_surrogate_escaped_bytes_decode_or_raise_and_raw_bytes_restores_them(raw: bytes) -> None:
    text = raw.decode("utf-8", "surrogateescape")
    assert raw_bytes(text) == raw
    decodes_or_refuses(text)


@given(st.dictionaries(st.sampled_from([*FIELD_NAMES, "unknown"]), any_field_value, max_size=3))
def test_objects_with_arbitrary_field_values_decode_or_raise_payload_error(
        fields: dict[str, Any]) -> None:
    data = {"name": "n", "jid": "j", "queue": "q", **fields}
    payload = decodes_or_refuses(json.dumps(data))
    assert decodes_or_refuses(json.dumps(data).encode()) == payload
    if payload is not None:  # accepted as is, never coerced ("5" to 5, "ab" to ["a", "b"])
        assert all(getattr(payload, key) == value for key, value in data.items()
                   if key in FIELD_TYPES)


invalid_utf8 = st.binary(min_size=1, max_size=6).filter(lambda b: not _is_utf8(b))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@given(st.text(max_size=10), invalid_utf8, st.sampled_from(["name", "jid", "queue"]))
def test_invalid_utf8_anywhere_is_refused_as_bytes_and_as_escaped_text(
        before: str, bad: bytes, field: str) -> None:
    good = encode(Payload(name="n", jid="j", queue="q", args=[before]))
    raw = good.encode().replace(f'"{field}":"'.encode(), f'"{field}":"'.encode() + bad, 1)
    for form in (raw, raw.decode("utf-8", "surrogateescape")):
        with pytest.raises(PayloadError, match=r"^payload is not UTF-8"):
            decode(form)


counts = st.integers(min_value=0, max_value=2**63)
optional_times = st.none() | finite_floats
optional_text = st.none() | st.text()
payloads = st.builds(
    Payload,
    name=st.text(), jid=st.text(), queue=st.text(),
    args=st.lists(json_values, max_size=4),
    kwargs=st.dictionaries(st.text(), json_values, max_size=4),
    created_at=finite_floats, enqueued_at=optional_times,
    retry=counts, dead=st.booleans(), retry_count=counts,
    error_class=optional_text, error_message=optional_text,
    failed_at=optional_times, retried_at=optional_times, dead_reason=optional_text,
    run_id=optional_text, node_id=st.none() | counts, batch_id=optional_text,
    recoveries=counts, tags=st.lists(st.text(), max_size=3),
    timeout_s=st.none() | finite_floats,
    unique_key=optional_text, unique_token=optional_text, memory_ns=optional_text,
    memory_reads=st.dictionaries(st.text(), st.text(), max_size=3),
)


@given(payloads)
def test_encode_then_decode_gives_the_payload_back(payload: Payload) -> None:
    text = encode(payload)
    assert decode(text) == payload
    assert decode(text.encode()) == payload
    assert encode(decode(text)) == text
