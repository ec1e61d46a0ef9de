"""Periodic entries from plain data: ticks (interval and cron, across daylight-saving
changes, with times given, never the wall clock), missed-tick policies, definitions."""

from __future__ import annotations

import datetime
import itertools
from zoneinfo import ZoneInfo

import pytest

from sideline.core.errors import ConfigurationError, SerializationError
from sideline.core.periodic import Missed, PeriodicEntry, PeriodicState, plan, tick_jid, to_ms

WARSAW = ZoneInfo("Europe/Warsaw")


def at(*parts: int, tz: ZoneInfo = WARSAW, fold: int = 0) -> float:
    return datetime.datetime(*parts, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


def local(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, WARSAW).strftime("%m-%d %H:%M%z")


def test_interval_ticks_are_aligned_to_the_epoch() -> None:
    entry = PeriodicEntry(name="e", job="j", every_s=30)
    assert entry.next_after(1000.0) == 1020.0
    assert entry.next_after(1020.0) == 1050.0
    assert entry.ticks(1000.0, 1100.0) == [1020.0, 1050.0, 1080.0]
    assert entry.latest_ticks(1000.0, 1100.0, 2) == [1050.0, 1080.0]


def test_cron_in_a_time_zone_skips_the_missing_hour_of_spring_forward() -> None:
    # 2026-03-29 02:00 -> 03:00 in Warsaw: a 02:30 job runs at 03:00 that day, once
    entry = PeriodicEntry(name="e", job="j", cron="30 2 * * *", tz="Europe/Warsaw")
    ticks = entry.ticks(at(2026, 3, 27, 12, 0), at(2026, 3, 31, 0, 0))
    assert [local(t) for t in ticks] == [
        "03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200"]


def test_cron_in_the_repeated_hour_of_fall_back() -> None:
    # 2026-10-25 03:00 -> 02:00 in Warsaw: an hourly job runs every real hour (the
    # repeated 02:00 twice); a fixed-time 02:30 job runs once
    hourly = PeriodicEntry(name="h", job="j", cron="0 * * * *", tz="Europe/Warsaw")
    ticks = hourly.ticks(at(2026, 10, 25, 0, 30), at(2026, 10, 25, 4, 0))
    assert [t2 - t1 for t1, t2 in itertools.pairwise(ticks)] == [3600.0] * 4
    assert [local(t) for t in ticks] == ["10-25 01:00+0200", "10-25 02:00+0200",
                                         "10-25 02:00+0100", "10-25 03:00+0100",
                                         "10-25 04:00+0100"]
    daily = PeriodicEntry(name="d", job="j", cron="30 2 * * *", tz="Europe/Warsaw")
    assert len(daily.ticks(at(2026, 10, 24, 12, 0), at(2026, 10, 26, 0, 0))) == 1


def test_a_tick_is_due_once_its_time_has_come() -> None:
    entry = PeriodicEntry(name="e", job="j", every_s=60)
    assert plan(entry, 600.0, 659.9) is None
    due = plan(entry, 600.0, 660.0)
    assert due is not None
    assert (due.fire, due.claim) == ((660.0,), 660.0)
    assert plan(entry, None, 700.0) is None  # a new entry starts now


@pytest.mark.parametrize(("missed", "fired"), [
    (Missed.LATEST, (900.0,)),
    (Missed.ALL, (780.0, 840.0, 900.0)),  # max_missed=3: the latest three
    (Missed.SKIP, ()),                     # 30 s late is past a grace of 10 s
])
def test_missed_tick_policies(missed: Missed, fired: tuple[float, ...]) -> None:
    entry = PeriodicEntry(name="e", job="j", every_s=60, missed=missed, max_missed=3,
                          grace_s=10)
    due = plan(entry, 600.0, 930.0)  # ticks 660 ... 900 passed while no worker ran
    assert due is not None
    assert (due.fire, due.claim) == (fired, 900.0)


def test_skip_still_fires_a_tick_within_its_grace() -> None:
    entry = PeriodicEntry(name="e", job="j", every_s=60, missed=Missed.SKIP, grace_s=10)
    due = plan(entry, 600.0, 665.0)
    assert due is not None
    assert due.fire == (660.0,)


def test_definitions_round_trip_and_fingerprints_follow_changes() -> None:
    entry = PeriodicEntry(name="e", job="j", args=(1, "a"), kwargs={"k": [1]},
                          cron="*/5 * * * *", tz="Europe/Warsaw", missed=Missed.ALL)
    assert PeriodicEntry.from_definition(entry.definition()) == entry
    changed = PeriodicEntry(name="e", job="j", args=(2, "a"), kwargs={"k": [1]},
                            cron="*/5 * * * *", tz="Europe/Warsaw", missed=Missed.ALL)
    assert changed.fingerprint != entry.fingerprint
    assert PeriodicEntry.from_definition(entry.definition()).fingerprint == entry.fingerprint


@pytest.mark.parametrize(("options", "message"), [
    ({"cron": "* * * * *", "every_s": 5}, "exactly one of cron= and every_s="),
    ({}, "exactly one of cron= and every_s="),
    ({"every_s": 0.5}, "every_s must be a number of seconds >= 1"),
    ({"cron": "61 * * * *"}, "invalid cron expression"),
    ({"every_s": 5, "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"every_s": 5, "args": ({1, 2},)}, "argument 0"),
])
def test_bad_entries_are_refused_with_a_clear_message(options: dict[str, object],
                                                        message: str) -> None:
    with pytest.raises(ConfigurationError if "argument" not in message else SerializationError,
                       match=message):
        PeriodicEntry(name="e", job="j", **options)  # type: ignore[arg-type]


def test_tick_jids_and_state() -> None:
    assert tick_jid("nightly", 1_700_000_000.0) == "periodic:nightly:1700000000000"
    assert to_ms(1.2345) == 1234
    state = PeriodicState.of("n", {"last_tick_ms": "1500", "paused": "1", "fingerprint": "f"})
    assert (state.last_tick, state.paused, state.fingerprint) == (1.5, True, "f")
