"""The settle counters' keys on Redis: totals never expire, a bucket expires its TTL after
its first count (later counts do not push it back, so a busy bucket costs no EXPIRE)."""

from __future__ import annotations

import datetime

from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from sideline.core.ports import STAT_DAY_TTL_S, STAT_MINUTE_TTL_S
from sideline.core.settlement import Action, Settlement
from tests.contract.helpers import payload

NOW = datetime.datetime(2026, 11, 30, 3, 0, 10, tzinfo=datetime.UTC).timestamp()


def settle_one(backend: RedisBackend, jid: str) -> None:
    backend.push([payload(jid)])
    delivery = backend.fetch("w", ["default"], 0)
    assert delivery is not None
    backend.settle("w", delivery, Settlement(Action.ACK, decode(delivery.raw), processed=1), NOW)


def test_buckets_expire_from_their_first_count_and_totals_never(backend: RedisBackend) -> None:
    settle_one(backend, "j1")
    minute = backend.keys("stat", "processed:2026-11-30T03:00")
    day = backend.keys("stat", "processed:2026-11-30")
    assert 0 < backend.client.ttl(minute) <= STAT_MINUTE_TTL_S
    assert STAT_MINUTE_TTL_S < backend.client.ttl(day) <= STAT_DAY_TTL_S
    assert backend.client.ttl(backend.keys("stat", "processed")) == -1
    backend.client.expire(minute, 100)  # as if the bucket were older
    settle_one(backend, "j2")
    assert 0 < backend.client.ttl(minute) <= 100  # the second count did not reset it
    assert backend.stats(["processed", "processed:2026-11-30T03:00"]) == {
        "processed": 2, "processed:2026-11-30T03:00": 2}
