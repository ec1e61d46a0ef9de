"""core.limits with plain data: declaring limits, resolving keys, the payload fields, and
how the adapters read a fetched job's limit (limit_of, the twin of _lib.lua's)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sideline.core.errors import ConfigurationError
from sideline.core.limits import (
    Concurrency,
    HeldLimit,
    Rate,
    limit_fields,
    limit_of,
    limit_problem,
    parse_spec,
    resolve_key,
    spec_text,
)


def raw(**fields: Any) -> str:
    return json.dumps({"name": "n", "jid": "j", "queue": "q", **fields})


@pytest.mark.parametrize(("limit", "message"), [
    (lambda: Concurrency(key=""), "a limit key is a non-empty template str or a callable"),
    (lambda: Concurrency(key="{0", max=1), "limit key template '{0' is invalid"),
    (lambda: Concurrency(key="k", max=0), "max must be an int >= 1"),
    (lambda: Concurrency(key="k", max=True), "max must be an int >= 1"),
    (lambda: Concurrency(key="k", max=2**53), "max must be an int >= 1 (and < 2**53)"),
    (lambda: Rate(key="k", limit=5, per_s=0), "per_s must be a number of seconds > 0"),
    (lambda: Rate(key="k", limit=0, per_s=1), "limit must be an int >= 1"),
])
def test_a_limit_is_checked_when_declared(limit: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match="^" + re.escape(message)):
        limit()


def test_keys_resolve_from_a_template_or_a_callable() -> None:
    assert resolve_key(Concurrency("customer:{0}"), "sync", [42], {}) == "customer:42"
    assert resolve_key(Concurrency("c:{customer_id}"), "sync", [], {"customer_id": 7}) == "c:7"
    assert resolve_key(Rate(lambda a: f"api:{a.lower()}", 5, 1), "call", ["ACME"], {}) == "api:acme"
    with pytest.raises(ConfigurationError, match="cannot be built from the arguments"):
        resolve_key(Concurrency("c:{customer_id}"), "sync", [7], {})
    with pytest.raises(ConfigurationError, match="a limit key must be a str of 1-200"):
        resolve_key(Concurrency("{0}"), "sync", ["x" * 201], {})


def test_limit_fields_are_what_the_payload_carries() -> None:
    assert limit_fields(Concurrency("k", 3), "k:1") == {"limit_key": "k:1", "limit_max": 3}
    assert limit_fields(Rate("k", 100, 60), "k:1") == {
        "limit_key": "k:1", "limit_rate": 100, "limit_per_s": 60.0}


@pytest.mark.parametrize(("fields", "problem"), [
    ((None, None, None, None), None),
    (("k", 2, None, None), None),
    (("k", None, 5, 1.0), None),
    (("k", None, None, None), "needs either limit_max"),
    (("k", 2, 5, 1.0), "needs either limit_max"),
    (("k", None, 5, None), "needs either limit_max"),
    ((None, 2, None, None), "payload field(s) limit_max need a limit_key"),
])
def test_limit_problem_says_what_is_inconsistent(fields: tuple[Any, ...],
                                                  problem: str | None) -> None:
    found = limit_problem(*fields)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(("text", "held"), [
    (raw(), None),
    (raw(limit_key="k", limit_max=2), HeldLimit("k", "j", max=2)),
    (raw(limit_key="k", limit_max=2.0), HeldLimit("k", "j", max=2)),  # as Lua reads it
    (raw(limit_key="k", limit_max=None, limit_rate=5, limit_per_s=1),
     HeldLimit("k", "j", rate=5, per_s=1.0)),
    (raw(limit_key="k", limit_max=2.5), None),
    (raw(limit_key="k", limit_max=0), None),
    (raw(limit_key="k", limit_max=2**53), None),
    (raw(limit_key="k", limit_max=True), None),
    (raw(limit_key="k", limit_max="2"), None),
    (raw(limit_key="", limit_max=2), None),
    (raw(limit_key="k"), None),
    (raw(limit_key="k", limit_max=1, limit_rate=1, limit_per_s=1), None),
    (raw(limit_key="k", limit_rate=1, limit_per_s=0), None),
    (raw(limit_key="k", limit_rate=1, limit_per_s=10**400), None),
    (json.dumps({"name": "n", "jid": 5, "limit_key": "k", "limit_max": 1}), None),
    ('{"jid": "j", "limit_key" : "k", "limit_max" : 1}', HeldLimit("k", "j", max=1)),
    ('["limit_key": 1]', None),
    ('{"args": [{"limit_key": "k", "limit_max": 1}], "jid": "j"}', None),  # not top level
])
def test_limit_of_reads_a_fetched_jobs_limit_leniently_but_never_a_broken_one(
        text: str, held: HeldLimit | None) -> None:
    assert limit_of(text) == held


def test_the_index_records_a_keys_limit_as_text() -> None:
    concurrency, rate = HeldLimit("k", "j", max=3), HeldLimit("k", "j", rate=5, per_s=0.1)
    assert spec_text(concurrency) == "concurrency|3"
    assert parse_spec(spec_text(concurrency)) == ("concurrency", 3, None)
    assert parse_spec(spec_text(rate)) == ("rate", 5, 0.1)
    assert parse_spec("rate|5|0.10000000000000001") == ("rate", 5, 0.1)  # Lua's %.17g
    assert parse_spec("garbage") == ("concurrency", 0, None)
