"""Limits end to end: an App, `@app.job(limit=...)`, an embedded worker of several threads,
on the memory backend and on a real Redis.

- Concurrency: a key never has more than `max` jobs running at once (each job records how
  many of its key run with it).
- Fairness: a key with a long backlog cannot starve a light key queued behind it; the
  share of the backlog done when the light key's last job starts is printed.
- Rate: starts of a key never exceed its limit in any window, and the over-limit jobs run
  in the following windows (not retried, not failed).
- Enqueue: the key is resolved from the arguments into the payload; a key that cannot be
  built is refused at enqueue; workflow steps and batch jobs carry their limits too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from sideline import App, Chain, Concurrency, ConfigurationError, MemoryBackend, Rate, Workflow
from sideline.core.payload import decode
from sideline.core.ports import Backend
from sideline.runtime.admin import AdminBackend
from tests.support import real_redis_backend, wait_until

BACKENDS = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
    else:
        yield from real_redis_backend()



class Running:
    """How many jobs of each key run now, and the most that ever ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.started: dict[str, list[float]] = {}
        self.done = 0

    def enter(self, key: str) -> None:
        with self.lock:
            self.now[key] += 1
            self.peak[key] = max(self.peak[key], self.now[key])
            self.started.setdefault(key, []).append(time.monotonic())

    def leave(self, key: str) -> None:
        with self.lock:
            self.now[key] -= 1
            self.done += 1


def test_max_2_is_never_exceeded_with_8_threads(backend: Backend) -> None:
    app = App(backend)
    running = Running()

    @app.job(name="sync", limit=Concurrency(key="customer:{0}", max=2))
    def sync(customer_id: int) -> None:
        running.enter(f"customer:{customer_id}")
        time.sleep(0.01)
        running.leave(f"customer:{customer_id}")

    sync.enqueue_bulk([[i % 3] for i in range(60)])
    with app.worker(concurrency=8, fetch_timeout_s=0.2) as worker:
        wait_until(lambda: running.done == 60, 20)
        wait_until(lambda: worker.processed == 60, 20)
    assert dict(running.peak) == {"customer:0": 2, "customer:1": 2, "customer:2": 2}
    assert app.admin.stats().processed == 60
    assert app.admin.limits() == []  # every slot freed: the keys left the index
    assert [app.admin.stats().retries, app.admin.stats().dead] == [0, 0]


def test_a_heavy_key_does_not_starve_a_light_key_behind_its_backlog(backend: Backend) -> None:
    app = App(backend)
    running = Running()

    @app.job(name="work", limit=Concurrency(key="{0}", max=2))
    def work(key: str) -> None:
        running.enter(key)
        time.sleep(0.005)
        running.leave(key)

    work.enqueue_bulk([["heavy"]] * 200)
    work.enqueue_bulk([["light"]] * 10)
    with app.worker(concurrency=4, fetch_timeout_s=0.2):
        wait_until(lambda: running.done == 210, 20)
    heavy, light = running.started["heavy"], running.started["light"]
    share = sum(start <= max(light) for start in heavy) / len(heavy)
    print(f"\nfairness: the light key's 10 jobs all started when {share:.0%} of the heavy "
          f"key's backlog of 200 had started ({(max(light) - min(heavy)) * 1000:.0f} ms "
          f"after the first; the backlog took {(max(heavy) - min(heavy)) * 1000:.0f} ms)")
    assert max(light) < max(heavy)
    assert share < 0.5
    assert running.peak["heavy"] == 2


def test_a_rate_of_5_per_second_spreads_15_jobs_over_three_windows(backend: Backend) -> None:
    app = App(backend)
    starts: list[float] = []

    @app.job(name="call_api", limit=Rate(key="api:{0}", limit=5, per_s=1))
    def call_api(account: str) -> None:
        starts.append(time.time())

    call_api.enqueue_bulk([["acme"]] * 15)
    began = time.monotonic()
    with app.worker(concurrency=4, fetch_timeout_s=0.2, poll_interval_s=0.02):
        wait_until(lambda: len(starts) == 15, 10)
        took = time.monotonic() - began
    starts.sort()
    # The limiter counts fetch times; a job records its start a little later, by a delay
    # that varies from job to job, so windows 50 ms short of a second are counted here.
    crowded = max(sum(s <= other < s + 0.95 for other in starts) for s in starts)
    print(f"\nrate: 15 jobs at 5/s started over {starts[-1] - starts[0]:.2f} s "
          f"(drained in {took:.2f} s); the busiest 0.95 s held {crowded} starts")
    assert crowded <= 5
    assert 1.8 <= starts[-1] - starts[0] <= 3.5
    assert app.admin.stats().retries == 0
    assert app.admin.stats().processed == 15
    [view] = app.admin.limits()
    assert (view.key, view.kind, view.max, view.per_s) == ("api:acme", "rate", 5, 1.0)


def test_the_key_is_resolved_at_enqueue_into_the_payload() -> None:
    app = App(testing="collect")

    @app.job(name="sync", limit=Concurrency(key="customer:{customer_id}", max=3))
    def sync(customer_id: int, full: bool = False) -> None:
        del customer_id, full

    @app.job(name="call", limit=Rate(key=lambda account, **_: f"api:{account.lower()}",
                                     limit=100, per_s=60))
    def call(account: str) -> None:
        del account

    sync.enqueue(customer_id=42, full=True)
    call.enqueue("ACME")
    store: AdminBackend = app.backend  # type: ignore[assignment]
    first, second = (raw for raw in store.peek("default"))
    assert '"limit_key":"customer:42","limit_max":3' in first
    assert '"limit_key":"api:acme","limit_per_s":60.0,"limit_rate":100' in second
    with pytest.raises(ConfigurationError, match=r"the limit key 'customer:\{customer_id\}'"):
        sync.enqueue(7)  # a positional argument: the template names a keyword
    assert app.drain() == 2


def test_workflow_steps_and_batch_jobs_carry_their_limits() -> None:
    app = App(testing="collect")
    seen: list[str] = []

    @app.job(name="step", limit=Concurrency(key="tenant:{0}", max=1))
    def step(tenant: str) -> None:
        seen.append(tenant)

    Workflow(Chain(step.s("t1"), step.s("t2")), app=app).run()
    batch = app.batch("limited")
    with batch.jobs():
        step.enqueue("t3")
    raws = app.backend.peek("default")  # type: ignore[attr-defined]
    assert all('"limit_key":"tenant:' in raw for raw in raws)
    assert app.drain() == 3
    assert sorted(seen) == ["t1", "t2", "t3"]
    assert app.admin.limits() == []


def test_the_admin_api_lists_keys_and_their_parked_jobs(backend: Backend) -> None:
    app = App(backend)

    @app.job(name="one_at_a_time", limit=Concurrency(key="tenant:{0}", max=1))
    def one_at_a_time(tenant: str, n: int) -> None:
        return None

    jids = [one_at_a_time.enqueue("t1", n) for n in range(3)]
    held = backend.fetch("w1", ["default"], 0)
    assert held is not None
    assert backend.fetch("w2", ["default"], 0) is None  # the other two are parked
    [view] = app.admin.limits()
    assert (view.key, view.kind, view.max, view.running, view.parked) == (
        "tenant:t1", "concurrency", 1, 1, 2)
    assert [decode(raw).jid for raw in app.admin.parked("tenant:t1")] == jids[1:]
    assert app.admin.parked("tenant:t1", start=1, count=5) == app.admin.parked("tenant:t1")[1:]
