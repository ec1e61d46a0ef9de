"""Periodic jobs: entries, their ticks, and what to fire when ticks were missed.

An entry pushes one job per tick: a cron expression evaluated in a time zone (with
`cronsim`, the `cron` extra, and `zoneinfo`), or a fixed interval aligned to the epoch
(every 30 s: at :00 and :30 of each minute, the same on every machine). Every worker runs
the scheduling loop; each tick is claimed and its job pushed in one atomic step that
compares-and-sets the entry's last tick (`PeriodicStore.fire_periodic`), so a tick fires
exactly once however many workers run and whichever of them die. This module is the pure
part: when the next tick is, and which ticks a worker fires now.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from sideline.core.errors import ConfigurationError
from sideline.core.payload import check_json_native

__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_MAX_MISSED",
    "Missed",
    "PeriodicEntry",
    "PeriodicState",
    "Plan",
    "entries_by_name",
    "plan",
    "tick_jid",
    "to_ms",
]

DEFAULT_GRACE_S = 60.0
"""How late a tick may be fired under the "skip" policy (a worker's loop is never that
late; a tick later than this was missed because no worker ran)."""

DEFAULT_MAX_MISSED = 100
"""How many missed ticks the "all" policy fires at most (the latest ones)."""

_MAX_STEPS = 200_000
"""The most cron ticks evaluated in one plan (a schedule far in the past is cut here)."""

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class Missed(enum.StrEnum):
    """What an entry does with ticks that passed while no worker ran."""

    SKIP = "skip"
    """Fire none of them (only a tick at most `grace_s` late)."""
    LATEST = "latest"
    """Fire the latest of them, once (the default)."""
    ALL = "all"
    """Fire each of them, up to `max_missed` (the latest ones)."""


def _check_name(_instance: object, _attribute: object, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"periodic entry name {name!r} is invalid: use 1-128 letters, digits, '_', '.', "
            "':' or '-'")


@attrs.frozen
class PeriodicEntry:
    """One periodic entry: which job to push, with which arguments, on which schedule.

    Exactly one of `cron` (a 5-field cron expression, evaluated in `tz`) and `every_s`
    (seconds, ticks aligned to the epoch) is given.
    """

    name: str = attrs.field(validator=_check_name)
    job: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    missed: Missed = Missed.LATEST
    max_missed: int = DEFAULT_MAX_MISSED
    grace_s: float = DEFAULT_GRACE_S
    queue: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise ConfigurationError(
                f"periodic entry {self.name!r}: give exactly one of cron= and every_s=")
        if self.every_s is not None and (
                isinstance(self.every_s, bool) or not isinstance(self.every_s, int | float)
                or not math.isfinite(self.every_s) or self.every_s < 1):
            raise ConfigurationError(
                f"periodic entry {self.name!r}: every_s must be a number of seconds >= 1, "
                f"got {self.every_s!r}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"periodic entry {self.name!r}: unknown time zone {self.tz!r} (an IANA name "
                "such as 'Europe/Warsaw')") from None
        if self.cron is not None:  # parsed now, so a bad expression fails at declaration
            _cron(self.cron, datetime.datetime(2000, 1, 1, tzinfo=ZoneInfo(self.tz)), self.name)
        Missed(self.missed)
        if isinstance(self.max_missed, bool) or not isinstance(self.max_missed, int) or (
                self.max_missed < 1):
            raise ConfigurationError(
                f"periodic entry {self.name!r}: max_missed must be an int >= 1")
        for index, arg in enumerate(self.args):
            check_json_native(arg, f"periodic entry {self.name} argument {index}")
        for key, value in self.kwargs.items():
            check_json_native(value, f"periodic entry {self.name} keyword argument {key!r}")

    @property
    def schedule(self) -> str:
        """The schedule as shown to people: the cron expression, or "every N s"."""
        return self.cron if self.cron is not None else f"every {self.every_s:g} s"

    def definition(self) -> str:
        """The entry as canonical JSON (what the backend stores and compares)."""
        return json.dumps({
            "name": self.name, "job": self.job, "args": list(self.args),
            "kwargs": dict(self.kwargs), "cron": self.cron, "every_s": self.every_s,
            "tz": self.tz, "missed": str(self.missed), "max_missed": self.max_missed,
            "grace_s": self.grace_s, "queue": self.queue,
        }, sort_keys=True, separators=(",", ":"))

    @property
    def fingerprint(self) -> str:
        """A short digest of `definition()`: a changed entry has a new fingerprint."""
        return hashlib.sha256(self.definition().encode()).hexdigest()[:16]

    @classmethod
    def from_definition(cls, text: str) -> PeriodicEntry:
        """The entry stored as `text` (`definition()`)."""
        data = json.loads(text)
        return cls(name=data["name"], job=data["job"], args=tuple(data.get("args") or ()),
                   kwargs=dict(data.get("kwargs") or {}), cron=data.get("cron"),
                   every_s=data.get("every_s"), tz=data.get("tz") or "UTC",
                   missed=Missed(data.get("missed") or Missed.LATEST),
                   max_missed=int(data.get("max_missed") or DEFAULT_MAX_MISSED),
                   grace_s=float(data.get("grace_s") or DEFAULT_GRACE_S),
                   queue=data.get("queue"))

    def next_after(self, moment: float) -> float:
        """The first tick strictly after `moment` (seconds since the epoch)."""
        if self.every_s is not None:
            return float((math.floor(moment / self.every_s) + 1) * self.every_s)
        start = datetime.datetime.fromtimestamp(moment, ZoneInfo(self.tz))
        upcoming: datetime.datetime = next(iter(_cron(self.cron or "", start, self.name)))
        return upcoming.timestamp()

    def ticks(self, after: float, until: float, limit: int = _MAX_STEPS) -> list[float]:
        """The ticks in (after, until], oldest first (at most `limit`, the oldest ones)."""
        if self.every_s is not None:
            first = math.floor(after / self.every_s) + 1
            last = math.floor(until / self.every_s)
            count = min(max(0, last - first + 1), limit)
            return [float((first + i) * self.every_s) for i in range(count)]
        found: list[float] = []
        start = datetime.datetime.fromtimestamp(after, ZoneInfo(self.tz))
        for moment in _cron(self.cron or "", start, self.name):
            stamp = moment.timestamp()
            if stamp > until or len(found) >= limit:
                break
            found.append(stamp)
        return found

    def latest_ticks(self, after: float, until: float, count: int) -> list[float]:
        """The latest `count` ticks in (after, until], oldest first."""
        if self.every_s is not None:
            last = math.floor(until / self.every_s)
            first = max(math.floor(after / self.every_s) + 1, last - count + 1)
            return [float(k * self.every_s) for k in range(first, last + 1)]
        return self.ticks(after, until)[-count:]


def _cron(expression: str, start: datetime.datetime, name: str) -> Any:
    try:
        from cronsim import CronSim, CronSimError  # noqa: PLC0415 (the optional cron extra)
    except ImportError:
        raise ConfigurationError(
            f"periodic entry {name!r} uses cron=, which needs the cron extra: "
            "pip install 'sideline[cron]' (or use every_s=)") from None
    try:
        return CronSim(expression, start)
    except CronSimError as exc:
        raise ConfigurationError(
            f"periodic entry {name!r}: invalid cron expression {expression!r}: {exc}") from None


@attrs.frozen
class PeriodicState:
    """What the backend keeps about an entry between ticks."""

    name: str
    fingerprint: str = ""
    last_tick_ms: int | None = None
    """The latest tick claimed (fired or skipped), in ms since the epoch; None before
    the first."""
    last_fired_at: float | None = None
    """When a worker last pushed a tick's job."""
    last_jid: str | None = None
    paused: bool = False
    definition: str | None = None

    @property
    def last_tick(self) -> float | None:
        """The latest tick claimed, in seconds since the epoch."""
        return None if self.last_tick_ms is None else self.last_tick_ms / 1000

    @classmethod
    def of(cls, name: str, fields: Mapping[str, str]) -> PeriodicState:
        """The state read back from the stored fields (each may be absent)."""
        tick = _float(fields.get("last_tick_ms"))
        return cls(name, fields.get("fingerprint", ""), None if tick is None else int(tick),
                   _float(fields.get("last_fired_at")), fields.get("last_jid") or None,
                   fields.get("paused") == "1", fields.get("definition"))


def to_ms(moment: float) -> int:
    """A time in whole milliseconds since the epoch (how ticks are stored)."""
    return round(moment * 1000)


@attrs.frozen
class Plan:
    """What a worker does for an entry now: fire these ticks, and claim up to `claim`."""

    fire: tuple[float, ...]
    claim: float


def plan(entry: PeriodicEntry, last_tick: float | None, now: float) -> Plan | None:
    """The ticks to fire now for `entry`, whose last claimed tick is `last_tick`.

    None when no tick is due. Otherwise every due tick up to the latest is claimed; which
    of them are fired follows the entry's missed-tick policy. An entry never claimed
    before starts at `now` (nothing before it is due).
    """
    after = now if last_tick is None else last_tick
    latest = entry.latest_ticks(after, now, 1)
    if not latest:
        return None
    claim = latest[-1]
    if entry.missed is Missed.ALL:
        fire = entry.latest_ticks(after, now, entry.max_missed)
    elif entry.missed is Missed.LATEST:
        fire = latest
    else:
        fire = latest if now - claim <= entry.grace_s else []
    return Plan(tuple(fire), claim)


def tick_jid(name: str, tick: float) -> str:
    """The jid of the job a tick pushes: the same on every worker."""
    return f"periodic:{name}:{to_ms(tick)}"


def _float(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def entries_by_name(entries: Sequence[PeriodicEntry]) -> dict[str, PeriodicEntry]:
    """The entries by name; two with one name is a configuration error."""
    found: dict[str, PeriodicEntry] = {}
    for entry in entries:
        if entry.name in found and found[entry.name] != entry:
            raise ConfigurationError(f"periodic entry {entry.name!r} is declared twice")
        found[entry.name] = entry
    return found
