"""Periodic jobs under worker crashes: three `sideline worker` processes run an
every-second entry for a minute while one of them at a time is SIGKILLed and restarted.
Every tick must fire exactly once: none missed, none pushed twice (a job run again after a
crash carries a raised recovery count; a tick pushed twice would run twice without one)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest

from sideline.adapters.redis import RedisBackend
from tests.redis.apps.periodic_app import runs_key
from tests.redis.helpers import Spawn, WorkerProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.redis.apps.periodic_app:app"
DURATION_S = 60.0


def test_every_tick_fires_exactly_once_while_workers_are_killed(
        redis_ns: RedisBackend, spawn: Spawn) -> None:
    rng = random.Random(14)
    workers: dict[str, WorkerProcess] = {
        name: spawn(name, ["-c", "2"], app=APP) for name in ("p1", "p2", "p3")}
    started = time.time()
    kills = 0
    while time.time() - started < DURATION_S:
        time.sleep(rng.uniform(1.5, 4.0))
        name = rng.choice(sorted(workers))
        workers[name].proc.kill()  # SIGKILL: whatever it was doing stops here
        workers[name].wait(10)
        kills += 1
        workers[name] = spawn(name, ["-c", "2"], app=APP)  # the same instance, restarted
    ended = time.time()
    time.sleep(3)  # the last ticks' jobs run
    runs = [json.loads(raw) for raw in redis_ns.client.lrange(runs_key(redis_ns), 0, -1)]
    first_runs = Counter(run["jid"] for run in runs if run["recoveries"] == 0)
    ticks = sorted(int(jid.rsplit(":", 1)[1]) // 1000 for jid in {run["jid"] for run in runs})
    window = range(int(started) + 3, int(ended) - 1)  # after the first sync, before the end
    missing = [second for second in window if second not in ticks]
    doubled = {jid: count for jid, count in first_runs.items() if count > 1}
    print(f"\n{kills} SIGKILLs in {ended - started:.0f} s; {len(ticks)} ticks fired; "
          f"{len(runs) - len(first_runs)} re-runs after a recovery")
    assert kills >= 15
    assert missing == []
    assert doubled == {}
    assert all(count == 1 for count in first_runs.values())
