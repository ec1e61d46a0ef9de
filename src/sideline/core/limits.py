"""Fleet-wide limits on a job: how many run at once per key, and how often per key.

A limit is declared on the job (`@app.job(limit=Concurrency(...))` or `Rate(...)`) and
resolved at enqueue into the payload (`limit_key` and the numbers, `limit_fields`), so the
backend enforces it when a job is fetched, across every worker, without knowing the code.

Both adapters read a fetched job's limit with the same rule (`limit_of`, and its Lua twin
`limit_of` in adapters/redis/lua/_lib.lua): a job holds a concurrency slot from the fetch
that hands it to a worker until the step that takes it out of that worker's hands
(settle, requeue, recovery, discard) frees it, and that step sends one parked job of the
key back to the head of its queue.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from sideline.core.errors import ConfigurationError

__all__ = [
    "CONCURRENCY",
    "LIMIT_MARKER",
    "MAX_COUNT",
    "MAX_KEY_LENGTH",
    "PARK_PER_FETCH",
    "RATE",
    "Concurrency",
    "HeldLimit",
    "Limit",
    "Rate",
    "limit_fields",
    "limit_of",
    "limit_problem",
    "parse_spec",
    "resolve_key",
    "spec_text",
]

KeySource = str | Callable[..., str]
"""A key template over the job's arguments ("customer:{0}", "{customer_id}"), or a
callable taking the job's arguments and returning the key."""

MAX_KEY_LENGTH = 200
"""The longest limit key, in characters."""

MAX_COUNT = 2**53
"""A limit's numbers (max, limit) are below this: every adapter, Lua's doubles too,
holds them exactly."""

PARK_PER_FETCH = 100
"""The most jobs one fetch call parks or defers before it gives up for this call (it
leaves a wake token, so a fetcher goes on at once): the work of one atomic step stays
bounded however long a key's backlog is."""

LIMIT_MARKER = '"limit_key"'
"""Text every limited payload holds (its `limit_key` field's name, however the JSON is
spaced); a job without it is never decoded at fetch or settle, so an unlimited job pays
nothing for limits."""

CONCURRENCY = "concurrency"
"""The kind of a `Concurrency` limit, as the admin view names it."""
RATE = "rate"
"""The kind of a `Rate` limit, as the admin view names it."""


def _check_key(_instance: object, _attribute: object, key: KeySource) -> None:
    if callable(key):
        return
    if not isinstance(key, str) or not key:
        raise ConfigurationError(f"a limit key is a non-empty template str or a callable, got {key!r}")
    try:
        list(string.Formatter().parse(key))
    except ValueError as exc:
        raise ConfigurationError(f"limit key template {key!r} is invalid: {exc}") from None


def _positive_int(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < MAX_COUNT:
        raise ConfigurationError(f"{attribute.name} must be an int >= 1 (and < 2**53), "
                                 f"got {value!r}")


def _positive_number(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


@attrs.frozen
class Concurrency:
    """At most `max` jobs with the same key run at once, across all workers.

    A job whose key is full when it is fetched is parked (not run, no retry consumed)
    and goes back to the head of its queue when a job of that key ends.
    """

    key: KeySource = attrs.field(validator=_check_key)
    max: int = attrs.field(default=1, validator=_positive_int)


@attrs.frozen
class Rate:
    """At most `limit` jobs with the same key start in any window of `per_s` seconds,
    across all workers. An over-limit job is scheduled for when the window has room
    (no retry consumed)."""

    key: KeySource = attrs.field(validator=_check_key)
    limit: int = attrs.field(validator=_positive_int)
    per_s: float = attrs.field(validator=_positive_number)


Limit = Concurrency | Rate


def resolve_key(limit: Limit, job: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """The key of one job's limit: the template formatted with its arguments, or the
    callable's answer.

    Raises:
        ConfigurationError: the template names an argument the job was not given, or
            the key is empty or too long.
    """
    try:
        key = limit.key(*args, **kwargs) if callable(limit.key) else limit.key.format(*args, **kwargs)
    except (IndexError, KeyError, AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"job {job!r}: the limit key {limit.key!r} cannot be built from the arguments "
            f"{list(args)!r} {dict(kwargs)!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ConfigurationError(
            f"job {job!r}: a limit key must be a str of 1-{MAX_KEY_LENGTH} characters, got {key!r}")
    return key


def limit_fields(limit: Limit, key: str) -> dict[str, Any]:
    """The payload fields that carry `limit` resolved to `key` (core/payload.py)."""
    if isinstance(limit, Concurrency):
        return {"limit_key": key, "limit_max": limit.max}
    return {"limit_key": key, "limit_rate": limit.limit, "limit_per_s": float(limit.per_s)}


def limit_problem(key: str | None, max_: int | None, rate: int | None,
                  per_s: float | None) -> str | None:
    """What makes a payload's limit fields inconsistent, if anything: a key needs
    `limit_max` alone (concurrency) or `limit_rate` with `limit_per_s` (rate); numbers
    need a key. (Each field's own type and range is checked where it is decoded.)"""
    if key is None:
        named = [name for name, value in (("limit_max", max_), ("limit_rate", rate),
                                          ("limit_per_s", per_s)) if value is not None]
        return f"payload field(s) {', '.join(named)} need a limit_key" if named else None
    if max_ is not None and rate is None and per_s is None:
        return None
    if max_ is None and rate is not None and per_s is not None:
        return None
    return ("payload field 'limit_key' needs either limit_max (a concurrency limit) or "
            "limit_rate and limit_per_s (a rate limit), not "
            f"limit_max={max_!r}, limit_rate={rate!r}, limit_per_s={per_s!r}")


@attrs.frozen
class HeldLimit:
    """The limit a fetched job's text declares, as the adapters read it at fetch and
    settle: a concurrency limit (`max`) or a rate limit (`rate` per `per_s` seconds)."""

    key: str
    jid: str
    max: int | None = None
    rate: int | None = None
    per_s: float | None = None

    @property
    def kind(self) -> str:
        """"concurrency" or "rate"."""
        return CONCURRENCY if self.max is not None else RATE


def _count(value: object) -> int | None:
    """A JSON number that is a whole number from 1 to below MAX_COUNT (as Lua sees it: 2.0
    is 2), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if 1 <= value < MAX_COUNT else None


def limit_of(raw: str) -> HeldLimit | None:
    """The limit job text `raw` declares, or None: no `LIMIT_MARKER`, not a JSON object,
    or limit fields that do not make one limit (that job is handed out unlimited; the
    worker's strict decode then buries it with the reason).

    The twin of `limit_of` in adapters/redis/lua/_lib.lua, rule for rule: both adapters
    must agree on which jobs hold a slot. It is more lenient than `payload.decode` (a
    limit_max of 2.0 counts as 2), never stricter, so a job the worker accepts is limited.
    """
    if LIMIT_MARKER not in raw:
        return None
    try:
        job = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(job, dict):
        return None
    key, jid = job.get("limit_key"), job.get("jid")
    if not isinstance(key, str) or not key or not isinstance(jid, str):
        return None
    max_, rate, per_s = job.get("limit_max"), job.get("limit_rate"), job.get("limit_per_s")
    if max_ is not None and rate is None and per_s is None:
        count = _count(max_)
        return None if count is None else HeldLimit(key, jid, max=count)
    if max_ is None and rate is not None and per_s is not None:
        count = _count(rate)
        if count is None or isinstance(per_s, bool) or not isinstance(per_s, int | float):
            return None
        try:
            window = float(per_s)
        except OverflowError:  # an int beyond any float: Lua reads it as infinity
            return None
        if not (math.isfinite(window) and window > 0):
            return None
        return HeldLimit(key, jid, rate=count, per_s=window)
    return None


def spec_text(limit: HeldLimit) -> str:
    """How the index of keys in use records a key's limit: "concurrency|<max>" or
    "rate|<limit>|<per_s>" (as the job that took the key's first slot, or started its
    window, declared it)."""
    if limit.max is not None:
        return f"{CONCURRENCY}|{limit.max}"
    return f"{RATE}|{limit.rate}|{limit.per_s!r}"


def parse_spec(text: str) -> tuple[str, int, float | None]:
    """(kind, max or limit, per_s) from `spec_text`'s text; ("concurrency", 0, None) for
    text it did not write."""
    parts = text.split("|")
    try:
        if parts[0] == RATE and len(parts) == 3:
            return RATE, int(parts[1]), float(parts[2])
        if parts[0] == CONCURRENCY and len(parts) == 2:
            return CONCURRENCY, int(parts[1]), None
    except ValueError:
        pass
    return CONCURRENCY, 0, None

