"""Strict, bounded payload decoding, and the enqueue-side checks that match it."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import pytest

from sideline import App
from sideline.core.errors import PayloadError, SerializationError
from sideline.core.payload import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    Payload,
    check_json_native,
    decode,
    encode,
    raw_bytes,
)

REQUIRED: dict[str, Any] = {"name": "n", "jid": "j", "queue": "q"}

# (field, wrong value, what the message must say). Every Payload field appears at least twice.
WRONG_TYPES: list[tuple[str, Any, str]] = [
    ("name", 5, "payload lacks string field(s) name"),
    ("name", None, "payload lacks string field(s) name"),
    ("jid", 1.5, "payload lacks string field(s) jid"),
    ("jid", True, "payload lacks string field(s) jid"),
    ("queue", {}, "payload lacks string field(s) queue"),
    ("queue", ["q"], "payload lacks string field(s) queue"),
    ("args", "rm -rf", "payload field 'args' must be a list, got str"),
    ("args", {"k": 1, "j": 2}, "payload field 'args' must be a list, got object"),
    ("args", None, "payload field 'args' must be a list, got null"),
    ("kwargs", [["k", 1]], "payload field 'kwargs' must be an object, got list"),
    ("kwargs", "k=1", "payload field 'kwargs' must be an object, got str"),
    ("created_at", "1767225600", "payload field 'created_at' must be a number, got str"),
    ("created_at", True, "payload field 'created_at' must be a number, got bool"),
    ("created_at", None, "payload field 'created_at' must be a number, got null"),
    ("created_at", 10**400, "payload field 'created_at' must be a finite number"),
    ("enqueued_at", "now", "payload field 'enqueued_at' must be a number, got str"),
    ("enqueued_at", False, "payload field 'enqueued_at' must be a number, got bool"),
    ("retry", "5", "payload field 'retry' must be an int, got str"),
    ("retry", 2.0, "payload field 'retry' must be an int, got float"),
    ("retry", True, "payload field 'retry' must be an int, got bool"),
    ("retry", -1, "payload field 'retry' must be >= 0, got -1"),
    ("dead", "no", "payload field 'dead' must be true or false, got str"),
    ("dead", 0, "payload field 'dead' must be true or false, got int"),
    ("dead", None, "payload field 'dead' must be true or false, got null"),
    ("retry_count", "1", "payload field 'retry_count' must be an int, got str"),
    ("retry_count", 1.5, "payload field 'retry_count' must be an int, got float"),
    ("retry_count", -2, "payload field 'retry_count' must be >= 0, got -2"),
    ("error_class", 5, "payload field 'error_class' must be a str, got int"),
    ("error_class", ["ValueError"], "payload field 'error_class' must be a str, got list"),
    ("error_message", 5, "payload field 'error_message' must be a str, got int"),
    ("error_message", {"m": 1}, "payload field 'error_message' must be a str, got object"),
    ("failed_at", "yesterday", "payload field 'failed_at' must be a number, got str"),
    ("failed_at", True, "payload field 'failed_at' must be a number, got bool"),
    ("retried_at", "now", "payload field 'retried_at' must be a number, got str"),
    ("retried_at", [1.0], "payload field 'retried_at' must be a number, got list"),
    ("dead_reason", 1, "payload field 'dead_reason' must be a str, got int"),
    ("dead_reason", False, "payload field 'dead_reason' must be a str, got bool"),
    ("run_id", 1, "payload field 'run_id' must be a str, got int"),
    ("run_id", ["r"], "payload field 'run_id' must be a str, got list"),
    ("node_id", 1.5, "payload field 'node_id' must be an int, got float"),
    ("node_id", "0", "payload field 'node_id' must be an int, got str"),
    ("node_id", True, "payload field 'node_id' must be an int, got bool"),
    ("node_id", -1, "payload field 'node_id' must be >= 0, got -1"),
    ("batch_id", 1, "payload field 'batch_id' must be a str, got int"),
    ("batch_id", {}, "payload field 'batch_id' must be a str, got object"),
    ("callback_of", 1, "payload field 'callback_of' must be a str, got int"),
    ("callback_of", [], "payload field 'callback_of' must be a str, got list"),
    ("callback_event", 2.5, "payload field 'callback_event' must be a str, got float"),
    ("callback_event", True, "payload field 'callback_event' must be a str, got bool"),
    ("recoveries", "1", "payload field 'recoveries' must be an int, got str"),
    ("recoveries", 1.0, "payload field 'recoveries' must be an int, got float"),
    ("recoveries", -1, "payload field 'recoveries' must be >= 0, got -1"),
    ("tags", "money", "payload field 'tags' must be a list, got str"),
    ("tags", ["a", "b", 3], "payload field 'tags[2]' must be a str, got int"),
    ("tags", [None], "payload field 'tags[0]' must be a str, got null"),
    ("error_backtrace", "line", "payload field 'error_backtrace' must be a list, got str"),
    ("error_backtrace", [1], "payload field 'error_backtrace[0]' must be a str, got int"),
    ("timeout_s", "60", "payload field 'timeout_s' must be a number, got str"),
    ("timeout_s", True, "payload field 'timeout_s' must be a number, got bool"),
    ("unique_key", 1, "payload field 'unique_key' must be a str, got int"),
    ("unique_key", ["k"], "payload field 'unique_key' must be a str, got list"),
    ("unique_token", 1, "payload field 'unique_token' must be a str, got int"),
    ("unique_token", True, "payload field 'unique_token' must be a str, got bool"),
    ("memory_ns", 1, "payload field 'memory_ns' must be a str, got int"),
    ("memory_ns", ["ns"], "payload field 'memory_ns' must be a str, got list"),
    ("memory_reads", ["a"], "payload field 'memory_reads' must be an object, got list"),
    ("memory_reads", {"doc": 1}, "payload field \"memory_reads['doc']\" must be a str, got int"),
    ("memory_reads", "a=b", "payload field 'memory_reads' must be an object, got str"),
    ("limit_key", 5, "payload field 'limit_key' must be a str, got int"),
    ("limit_key", "", "payload field 'limit_key' must be 1-200 characters, got 0"),
    ("limit_key", "k" * 201, "payload field 'limit_key' must be 1-200 characters, got 201"),
    ("limit_max", "2", "payload field 'limit_max' must be an int, got str"),
    ("limit_max", 2.0, "payload field 'limit_max' must be an int, got float"),
    ("limit_max", 0, "payload field 'limit_max' must be >= 1 and < 2**53, got 0"),
    ("limit_max", 2**53, "payload field 'limit_max' must be >= 1 and < 2**53"),
    ("limit_rate", True, "payload field 'limit_rate' must be an int, got bool"),
    ("limit_rate", -3, "payload field 'limit_rate' must be >= 1 and < 2**53, got -3"),
    ("limit_per_s", "1", "payload field 'limit_per_s' must be a number, got str"),
    ("limit_per_s", 0, "payload field 'limit_per_s' must be > 0, got 0.0"),
    ("limit_per_s", -0.5, "payload field 'limit_per_s' must be > 0, got -0.5"),
    ("headers", ["a"], "payload field 'headers' must be an object, got list"),
    ("headers", "a=b", "payload field 'headers' must be an object, got str"),
    ("headers", {"traceparent": 1}, "payload field 'headers' value of 'traceparent' must be a str, got int"),
    ("headers", {"k": None}, "payload field 'headers' value of 'k' must be a str, got null"),
    ("headers", {"k" * 65: "v"}, "payload field 'headers' key 'kkkkkkkkkkkkkkkkkkkk'... must be at most 64 "
     "characters, got 65"),
    ("headers", {"k": "v" * 513}, "payload field 'headers' value of 'k' must be at most 512 characters, "
     "got 513"),
    ("headers", {f"k{i}": "v" for i in range(33)},
     "payload field 'headers' must hold at most 32 entries, got 33"),
]


def payload_text(**fields: Any) -> str:
    return json.dumps({**REQUIRED, **fields})


def nested_lists(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_the_wrong_type_table_covers_every_field_twice() -> None:
    counts = {field.name: 0 for field in attrs.fields(Payload)}
    for field, _, _ in WRONG_TYPES:
        counts[field] += 1
    assert {name: count for name, count in counts.items() if count < 2} == {}


@pytest.mark.parametrize(("field", "value", "message"), WRONG_TYPES,
                         ids=[f"{f}={v!r:.20}" for f, v, _ in WRONG_TYPES])
def test_a_wrong_typed_field_is_refused_naming_it(field: str, value: Any, message: str) -> None:
    data = {**REQUIRED, field: value}
    with pytest.raises(PayloadError) as info:
        decode(json.dumps(data))
    assert message in str(info.value)


@pytest.mark.parametrize(("fields", "message"), [
    ({"limit_key": "k"}, "payload field 'limit_key' needs either limit_max"),
    ({"limit_key": "k", "limit_rate": 5}, "payload field 'limit_key' needs either limit_max"),
    ({"limit_key": "k", "limit_max": 1, "limit_rate": 5, "limit_per_s": 1.0},
     "payload field 'limit_key' needs either limit_max"),
    ({"limit_max": 2}, "payload field(s) limit_max need a limit_key"),
    ({"limit_rate": 5, "limit_per_s": 1}, "payload field(s) limit_rate, limit_per_s need a limit_key"),
])
def test_limit_fields_that_make_no_one_limit_are_refused(fields: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(PayloadError, match="^" + re.escape(message)):
        decode(payload_text(**fields))


@pytest.mark.parametrize("fields", [
    {"limit_key": "customer:42", "limit_max": 2},
    {"limit_key": "api:a", "limit_rate": 100, "limit_per_s": 60.0},
    {"limit_key": "k", "limit_max": None, "limit_rate": 1, "limit_per_s": 0.5},
])
def test_a_consistent_limit_is_kept_and_round_trips(fields: dict[str, Any]) -> None:
    payload = decode(payload_text(**fields))
    assert payload == Payload(**REQUIRED, **{k: v for k, v in fields.items() if v is not None})
    assert decode(encode(payload)) == payload


def test_every_failed_field_is_reported_at_once() -> None:
    with pytest.raises(PayloadError) as info:
        decode(payload_text(retry="5", dead="no"))
    assert str(info.value).startswith("payload field 'retry' must be an int, got str; "
                                      "payload field 'dead' must be true or false, got str: ")


@pytest.mark.parametrize(("fields", "expected"), [
    ({"enqueued_at": None, "node_id": None, "timeout_s": None}, {}),
    ({"node_id": 0, "retry": 0, "retry_count": 0, "recoveries": 0}, {"retry": 0, "node_id": 0}),
    ({"created_at": 5, "failed_at": -1.5}, {"created_at": 5.0, "failed_at": -1.5}),
    ({"dead": False, "tags": [], "memory_reads": {"x": "run.x"}},
     {"dead": False, "memory_reads": {"x": "run.x"}}),
])
def test_well_typed_edge_values_are_kept(fields: dict[str, Any],
                                         expected: dict[str, Any]) -> None:
    assert decode(payload_text(**fields)) == Payload(**REQUIRED, **expected)


def test_headers_at_their_limits_are_kept_and_round_trip() -> None:
    headers = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(32)}
    payload = decode(payload_text(headers=headers))
    assert payload.headers == headers
    assert decode(encode(payload)) == payload


def test_empty_headers_are_left_out_of_the_json() -> None:
    assert "headers" not in json.loads(encode(Payload(**REQUIRED)))
    assert json.loads(encode(Payload(**REQUIRED, headers={"a": "b"})))["headers"] == {"a": "b"}


# Limits


@pytest.mark.parametrize("raw", [
    payload_text()[:-1] + ', "args": ' + nested_lists(100_000) + "}",
    ('{"a": ' * 100_000) + "1" + "}" * 100_000,
    ("[" * 100_000).encode(),
])
def test_very_deep_nesting_is_a_payload_error_not_a_recursion_error(raw: str | bytes) -> None:
    with pytest.raises(PayloadError, match="nested deeper than"):
        decode(raw)


def test_depth_max_depth_is_accepted_and_one_more_is_refused() -> None:
    # The payload object is level 1 and `args` level 2, so MAX_DEPTH - 1 levels of lists.
    at_limit = payload_text()[:-1] + ', "args": ' + nested_lists(MAX_DEPTH - 1) + "}"
    assert len(decode(at_limit).args) == 1
    over = payload_text()[:-1] + ', "args": ' + nested_lists(MAX_DEPTH) + "}"
    with pytest.raises(PayloadError) as info:
        decode(over)
    assert str(info.value).startswith(
        f"payload is nested deeper than {MAX_DEPTH} levels of arrays and objects: ")


def test_max_depth_can_be_passed() -> None:
    raw = payload_text(kwargs={"a": {"b": 1}})  # payload, kwargs, {"b": 1}: 3 levels
    assert decode(raw, max_depth=3).kwargs == {"a": {"b": 1}}
    with pytest.raises(PayloadError, match="nested deeper than 2 levels"):
        decode(raw, max_depth=2)


def test_size_is_checked_before_parsing() -> None:
    # Not JSON at all: the size error (not a parse error) shows nothing was parsed.
    with pytest.raises(PayloadError,
                       match=r"^payload is larger than 100 bytes \(101 characters\)"):
        decode("x" * 101, max_bytes=100)
    with pytest.raises(PayloadError, match=r"^payload is larger than 100 bytes \(101 bytes\)"):
        decode(b"x" * 101, max_bytes=100)


def test_size_counts_utf8_bytes_not_characters() -> None:
    text = json.dumps({**REQUIRED, "args": ["\u00e9" * 40]}, ensure_ascii=False)  # 2 bytes each
    with pytest.raises(PayloadError, match=rf"^payload is larger than {len(text)} bytes "
                                           rf"\({len(text) + 40} bytes\)"):
        decode(text, max_bytes=len(text))  # len() in characters fits; the bytes do not
    assert decode(text, max_bytes=len(text.encode())).args == ["\u00e9" * 40]


def test_default_size_limit_is_8_mib() -> None:
    assert MAX_PAYLOAD_BYTES == 8 * 1024 * 1024
    head = payload_text()[:-1] + ', "args": ["'
    fits = head + "a" * (MAX_PAYLOAD_BYTES - len(head) - 3) + '"]}'
    assert len(fits) == MAX_PAYLOAD_BYTES
    assert len(decode(fits).args[0]) > 8_000_000
    too_big = fits[:-3] + 'a"]}'
    with pytest.raises(PayloadError, match=f"payload is larger than {MAX_PAYLOAD_BYTES} bytes"):
        decode(too_big)


# Undecodable text

INVALID_UTF8 = b'{"name": "caf\xe9", "jid": "j", "queue": "q"}'  # Latin-1, not UTF-8


def test_bytes_that_are_not_utf8_are_refused_naming_the_offset() -> None:
    with pytest.raises(PayloadError) as info:
        decode(INVALID_UTF8)
    assert str(info.value).startswith("payload is not UTF-8: invalid continuation byte at "
                                      "byte offset 13: ")


def test_surrogate_escaped_text_is_refused_like_its_bytes() -> None:
    text = INVALID_UTF8.decode("utf-8", "surrogateescape")  # what the Redis client hands over
    with pytest.raises(PayloadError) as info:
        decode(text)
    message = str(info.value)
    assert message.startswith("payload is not UTF-8: invalid byte 0xe9 at byte offset 13: ")
    message.encode("utf-8")  # the message itself is clean text, safe to log or store


@pytest.mark.parametrize("raw", ["\ud800", '{"name": "\udfff"}', "\udcff" * 500])
def test_any_lone_surrogate_is_refused_with_a_printable_message(raw: str) -> None:
    with pytest.raises(PayloadError, match=r"^payload is not UTF-8") as info:
        decode(raw)
    str(info.value).encode("utf-8")


@pytest.mark.parametrize("data", [b"", b"plain", INVALID_UTF8, bytes(range(256)),
                                  "h\u00e9 \u2603 \U0001f600".encode(), b"\xed\xa0\x80"])
def test_raw_bytes_gives_back_the_original_bytes(data: bytes) -> None:
    assert raw_bytes(data.decode("utf-8", "surrogateescape")) == data
    assert raw_bytes(data) == data


# Enqueue side: check_json_native never recurses


def self_list() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def self_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["inner"] = {"back": loop}
    return loop


@pytest.mark.parametrize(("value", "message"), [
    (self_list(), "job argument 0[1] contains itself (it is job argument 0 again)"),
    (self_dict(), "job argument 0['inner']['back'] contains itself (it is job argument 0 "
                  "again)"),
    ([[self_list()]], "job argument 0[0][0][1] contains itself (it is job argument 0[0][0] "
                      "again)"),
])
def test_a_container_that_contains_itself_is_named(value: Any, message: str) -> None:
    with pytest.raises(SerializationError) as info:
        check_json_native(value, "job argument 0")
    assert str(info.value).startswith(message)


def test_a_shared_container_that_is_not_a_cycle_is_accepted() -> None:
    shared = [1, {"a": None}]
    check_json_native([shared, shared, {"again": shared}], "arg")


def deep_list(levels: int) -> list[Any]:
    root: list[Any] = []
    inner = root
    for _ in range(levels - 1):
        inner.append([])
        inner = inner[0]
    return root


def test_deep_arguments_are_refused_where_decode_would_refuse_them() -> None:
    fits = deep_list(MAX_DEPTH - 2)  # + the payload object and its args list = MAX_DEPTH
    check_json_native(fits, "arg")
    decode(encode(Payload(**REQUIRED, args=[fits])))
    with pytest.raises(SerializationError, match=f"^arg is nested deeper than {MAX_DEPTH - 2} "):
        check_json_native(deep_list(MAX_DEPTH - 1), "arg")
    with pytest.raises(PayloadError, match="nested deeper"):
        decode(encode(Payload(**REQUIRED, args=[deep_list(MAX_DEPTH - 1)])))
    with pytest.raises(SerializationError, match=r"^arg is nested deeper than"):
        check_json_native(deep_list(100_000), "arg")


def test_enqueue_refuses_self_referencing_and_too_deep_arguments() -> None:
    app = App()

    @app.job(name="report")
    def report(day: object, options: object = None) -> None: ...

    with pytest.raises(SerializationError, match=r"^report argument 0\[1\] contains itself"):
        report.enqueue(self_list())
    with pytest.raises(SerializationError,
                       match=r"^report keyword argument 'options'\['inner'\]\['back'\] "
                             "contains itself"):
        report.enqueue("day", options=self_dict())
    with pytest.raises(SerializationError, match=r"^report argument 0 is nested deeper than"):
        report.enqueue(deep_list(100_000))
    assert app.backend.queue_sizes() == {}
