"""Payload encoding, decoding and the JSON-native argument check."""

from __future__ import annotations

import datetime
import json

import pytest

from sideline.core.errors import PayloadError, SerializationError
from sideline.core.payload import Payload, bump_recoveries, check_json_native, decode, encode


def test_round_trip_keeps_every_field() -> None:
    payload = Payload(name="n", jid="j", queue="q", args=[1, "a", [None, 2.5]],
                      kwargs={"k": {"x": True}}, created_at=1.5, enqueued_at=2.0, retry=3,
                      retry_count=1, error_class="E", error_message="m", run_id="r", node_id=4,
                      tags=["t"])
    assert decode(encode(payload)) == payload


def test_decode_ignores_unknown_keys_for_forward_compatibility() -> None:
    raw = '{"name": "n", "jid": "j", "queue": "q", "added_in_v9": {"x": [1]}}'
    assert decode(raw) == Payload(name="n", jid="j", queue="q")


def test_decode_accepts_bytes_and_an_int_where_a_float_is_expected() -> None:
    payload = decode(b'{"name": "n", "jid": "j", "queue": "q", "timeout_s": 60, "node_id": 0}')
    assert (payload.timeout_s, payload.node_id) == (60.0, 0)
    assert isinstance(payload.timeout_s, float)


def test_bump_recoveries_counts_up_and_keeps_text_that_is_not_a_payload() -> None:
    raw = encode(Payload(name="n", jid="j", queue="q", recoveries=2))
    assert decode(bump_recoveries(raw)).recoveries == 3
    for junk in ("not json", '{"name": "n", "jid": "j", "queue": "q", "recoveries": "2"}'):
        assert bump_recoveries(junk) == junk


def test_encoding_omits_defaults_to_stay_small() -> None:
    data = json.loads(encode(Payload(name="n", jid="j", queue="q", created_at=1.0)))
    assert data == {"name": "n", "jid": "j", "queue": "q", "created_at": 1.0}


@pytest.mark.parametrize(("raw", "message"), [
    ("not json", "payload is not valid JSON"),
    ("[1, 2]", "payload must be a JSON object, got list"),
    ('{"name": "x"}', "payload lacks string field(s) jid, queue"),
    ('{"name": "x", "jid": "j", "queue": "q", "retry_count": "many"}',
     "payload field 'retry_count' must be an int, got str"),
    (b"\xff\xfe", "payload is not UTF-8: invalid start byte at byte offset 0"),
    ("", "payload is not valid JSON"),
    (b"", "payload is not valid JSON"),
    ("\x00", "payload is not valid JSON"),
    (b'{"name": "x\x00", "jid": "j", "queue": "q"}', "payload is not valid JSON"),
    ('"a string"', "payload must be a JSON object, got str"),
    ("12.5", "payload must be a JSON object, got float"),
    ("null", "payload must be a JSON object, got null"),
    ('{"jid": "j", "queue": "q"}', "payload lacks string field(s) name"),
    ('{"name": "x", "jid": "j"}', "payload lacks string field(s) queue"),
    ('{"name": 1, "jid": "j", "queue": "q"}', "payload lacks string field(s) name"),
    ('{"name": "x", "jid": "j", "queue": "q", "args": [NaN]}', "non-finite number nan"),
    ('{"name": "x", "jid": "j", "queue": "q", "created_at": 1e999}', "non-finite number inf"),
])
def test_malformed_payloads_raise_payload_error(raw: str | bytes, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode(raw)
    assert message in str(info.value)


@pytest.mark.parametrize("value", [None, True, 0, -3, 1.25, "s", [], {}, [1, {"a": [None]}]])
def test_json_native_values_pass(value: object) -> None:
    check_json_native(value, "arg")


@pytest.mark.parametrize(("value", "message"), [
    (datetime.date(2026, 1, 1), "arg is a date, which is not JSON-native"),
    ((1, 2), "arg is a tuple, which is not JSON-native (use a list)"),
    ({1: "a"}, "arg has key 1 of type int: JSON object keys must be strings"),
    (float("nan"), "arg is nan: NaN and infinity are not JSON"),
    ([1, {"when": object()}], "arg[1]['when'] is a object"),
    ({1.5}, "arg is a set"),
])
def test_non_json_values_are_named_in_the_error(value: object, message: str) -> None:
    with pytest.raises(SerializationError) as info:
        check_json_native(value, "arg")
    assert message in str(info.value)
