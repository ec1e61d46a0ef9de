"""Signals to a `sideline worker` process: TERM shuts down gracefully (finishing running jobs, or
pushing them back after the -t timeout), TSTP makes the worker quiet."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from sideline import App
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from tests.redis.apps.jobs_app import build_app
from tests.redis.helpers import Spawn, in_progress_keys, read_events, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def app(redis_ns: RedisBackend) -> Iterator[App]:
    """The jobs_app, in the test's namespace, for enqueueing from the test."""
    built = build_app(redis_ns.keys.namespace)
    try:
        yield built
    finally:
        built.backend.close()


def kinds_of(backend: RedisBackend, jid: str) -> list[str]:
    return [e["kind"] for e in read_events(backend) if e["jid"] == jid]


def queued_jids(backend: RedisBackend, queue: str = "default") -> list[str]:
    return [decode(raw).jid for raw in backend.peek(queue)]


def test_term_waits_for_the_running_job_and_exits_0(
        app: App, redis_ns: RedisBackend, spawn: Spawn) -> None:
    worker = spawn("graceful", ["-c", "2", "-t", "10"])
    jid = app.enqueue("nap", [1.0])
    assert jid is not None
    wait_until(lambda: kinds_of(redis_ns, jid) == ["start"], 10, "the job to start")
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.log()
    print(f"\nTERM during a 1 s job: exited {time.monotonic() - signalled:.2f} s later")
    assert kinds_of(redis_ns, jid) == ["start", "end"]  # it finished, once
    assert queued_jids(redis_ns) == []
    assert in_progress_keys(redis_ns) == {}
    assert worker.worker_id not in {w.worker_id for w in redis_ns.workers(time.time())}


def test_term_after_the_timeout_pushes_the_unfinished_job_back(
        app: App, redis_ns: RedisBackend, spawn: Spawn) -> None:
    worker = spawn("impatient", ["-c", "2", "-t", "0.2"])
    jid = app.enqueue("nap", [5.0])
    assert jid is not None
    wait_until(lambda: kinds_of(redis_ns, jid) == ["start"], 10, "the job to start")
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.log()
    took = time.monotonic() - signalled
    print(f"\nTERM with -t 0.2 during a 5 s job: exited {took:.2f} s later")
    assert took < 4.0, "the worker waited for the job instead of pushing it back"
    assert kinds_of(redis_ns, jid) == ["start"]  # never finished here
    assert queued_jids(redis_ns) == [jid]  # back on its queue, once
    assert in_progress_keys(redis_ns) == {}


def test_tstp_makes_the_worker_quiet_then_term_exits(
        app: App, redis_ns: RedisBackend, spawn: Spawn) -> None:
    worker = spawn("quiet", ["-c", "2", "-t", "5"])
    worker.signal(signal.SIGTSTP)
    wait_until(lambda: "TSTP: quiet" in worker.log(), 10, "the worker to log TSTP")
    jid = app.enqueue("nap", [0.01])
    assert jid is not None
    time.sleep(1.2)
    assert kinds_of(redis_ns, jid) == []  # a quiet worker starts nothing new
    assert worker.proc.poll() is None  # quiet is not stopped
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.log()
    assert kinds_of(redis_ns, jid) == []
    assert queued_jids(redis_ns) == [jid]
    assert in_progress_keys(redis_ns) == {}
