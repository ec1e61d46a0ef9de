"""Batch callbacks exactly once while `sideline worker` processes are SIGKILLed.

A batch's callbacks are detected and pushed by the same script that settles a member job,
so there is no moment at which a kill can lose or double one: a worker killed before the
settle leaves its job in its in-progress list (recovered and run again by another
worker, and counted when it ends), a worker killed after it has already pushed the
callback.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from typing import Any

import pytest

from sideline import App, Batch, Signature
from sideline.adapters.redis import RedisBackend
from tests.redis.apps.batch_app import build_app, events_key
from tests.redis.helpers import Spawn, WorkerProcess, in_progress_keys, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.redis.apps.batch_app:app"


def events(backend: RedisBackend) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in backend.client.lrange(events_key(backend), 0, -1)]


def callbacks(backend: RedisBackend) -> Counter[tuple[str, str]]:
    """How many times each (batch, callback) fired: distinct callback jobs (jids) pushed.

    A callback job, like any job, is at least once: a worker killed while running it has
    it run again by recovery, under the same jid (and a raised `recoveries`), which is
    not a second firing. `runs_of_callbacks` checks that side.
    """
    fired = {(e["bid"], e["event"], e["jid"]) for e in events(backend) if e["kind"] == "callback"}
    return Counter((bid, event) for bid, event, _ in fired)


def runs_of_callbacks(backend: RedisBackend) -> list[dict[str, Any]]:
    """The callback runs that were neither a job's first run nor a recovered re-run."""
    seen: set[str] = set()
    wrong = []
    for event in events(backend):
        if event["kind"] != "callback":
            continue
        if event["jid"] in seen and event["recoveries"] == 0:
            wrong.append(event)
        seen.add(event["jid"])
    return wrong


def with_callbacks(app: App, description: str) -> Batch:
    batch = app.batch(description)
    for event in ("complete", "success", "death"):
        batch.on(event, Signature("noted", (event,)))
    return batch


def test_a_worker_killed_on_the_last_job_of_a_batch_still_fires_once(
        redis_ns: RedisBackend, spawn: Spawn) -> None:
    app = build_app(redis_ns.keys.namespace)
    try:
        victim = spawn("victim", ["-c", "2"], app=APP)
        batch = with_callbacks(app, "last job killed")
        with batch.jobs():
            app.enqueue("member", [1, 1])
            app.enqueue("member", [2, 1])
            app.enqueue("nap", [1.0])  # the last to end: killed while it runs
        wait_until(lambda: any(e["kind"] == "start" for e in events(redis_ns)), 20,
                   "the nap job to start")
        wait_until(lambda: sum(e["kind"] == "end" for e in events(redis_ns)) >= 2, 20,
                   "the other two jobs to end")
        victim.proc.kill()
        assert victim.wait(10) == -signal.SIGKILL
        assert callbacks(redis_ns) == Counter()  # the batch waits for the killed job
        spawn("survivor", ["-c", "2"], app=APP)
        wait_until(lambda: callbacks(redis_ns)[(batch.bid, "success")] == 1, 30,
                   "the success callback after recovery")
        time.sleep(1.0)  # anything doubled would show by now
        assert callbacks(redis_ns) == Counter({(batch.bid, "complete"): 1,
                                               (batch.bid, "success"): 1})
        naps = [e for e in events(redis_ns) if e["kind"] == "start"]
        assert len(naps) == 2, "the killed nap was recovered and run again"
        assert batch.status().success
    finally:
        app.backend.close()


def test_chaos_fifty_batches_every_callback_exactly_once(
        redis_ns: RedisBackend, spawn: Spawn) -> None:
    batches, size = 50, 100
    app = build_app(redis_ns.keys.namespace)
    workers: list[WorkerProcess] = []
    chaos = random.Random(7)
    try:
        for index in range(3):
            workers.append(spawn(f"w{index}", ["-c", "4"], app=APP))
        bids = []
        for number in range(batches):
            batch = with_callbacks(app, f"chaos {number}")
            with batch.jobs():
                for n in range(size):
                    app.enqueue("member", [n, chaos.randint(5, 20)])
            bids.append(batch.bid)
        kills, started = 0, time.monotonic()

        def all_succeeded() -> bool:
            return sum(1 for (_, event), _c in callbacks(redis_ns).items()
                       if event == "success") == batches

        while not all_succeeded():
            assert time.monotonic() - started < 120, f"after {kills} kills: {callbacks(redis_ns)}"
            time.sleep(chaos.uniform(0.3, 0.8))
            if kills < 8:
                victim = workers.pop(chaos.randrange(len(workers)))
                victim.proc.kill()
                victim.wait(10)
                kills += 1
                workers.append(spawn(f"w{3 + kills}", ["-c", "4"], app=APP))
        time.sleep(1.5)  # a doubled callback would show by now
        fired = callbacks(redis_ns)
        assert kills >= 4, f"only {kills} kills happened before the batches finished"
        assert fired == Counter({(bid, event): 1 for bid in bids
                                 for event in ("complete", "success")}), fired
        assert runs_of_callbacks(redis_ns) == []  # a callback ran again only when recovered
        ended = Counter(e["jid"] for e in events(redis_ns) if e["kind"] == "end")
        assert len(ended) == batches * size  # every member ended (a killed one twice at most)
        assert max(ended.values()) <= 2
        for bid in bids:
            status = app.open_batch(bid).status()
            assert (status.total, status.pending, status.success) == (size, 0, True)
        wait_until(lambda: in_progress_keys(redis_ns) == {}, 10, "nothing left in progress")
    finally:
        app.backend.close()
