"""Bad input and lost replies on the real Redis server, with live in-process workers.

The bad-input suite pushes more than 30 kinds of raw entries into a queue and into a dead
worker's in-progress list while 3 workers run. Each entry ends in the dead set with a
reason, no thread dies, heartbeats and the poller go on, and a good job pushed after
each bad one runs.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from sideline import App, Chain, Payload, Workflow
from sideline.adapters.redis import RedisBackend, redis_url
from sideline.runtime.worker import Worker
from tests.redis.helpers import wait_until
from tests.support import real_redis_backend

pytestmark = pytest.mark.redis

FAST = {"heartbeat_interval_s": 0.2, "heartbeat_ttl_s": 1.5, "recovery_interval_s": 0.2,
        "poll_interval_s": 0.02, "fetch_timeout_s": 0.2}


def _payload(**fields: Any) -> bytes:
    base: dict[str, Any] = {"name": "good", "jid": "j-" + uuid.uuid4().hex[:8],
                            "queue": "default", "args": [0]}
    base.update(fields)
    return json.dumps(base).encode()


def bad_entries(run_id: str) -> list[tuple[str, bytes, str]]:
    """(kind, raw bytes, a text the dead reason must contain)."""
    undecodable = "undecodable payload"
    wrong = [("args", "rm -rf"), ("args", {"k": 1, "j": 2}), ("kwargs", [1]), ("kwargs", "x"),
             ("jid", 5), ("name", None), ("queue", []), ("retry", "5"), ("retry", True),
             ("retry", -1), ("dead", "no"), ("retry_count", "1"), ("created_at", "now"),
             ("enqueued_at", "x"), ("node_id", 1.5), ("node_id", "1"), ("run_id", 5),
             ("recoveries", "2"), ("tags", "a"), ("tags", [1]), ("timeout_s", "1"),
             ("memory_reads", [1]), ("unique_key", 5), ("error_class", 5)]
    entries = [
        ("empty", b"", undecodable),
        ("null bytes", b"\x00\x00\x00", undecodable),
        ("not utf-8", b"\xff\xfe\xfd", undecodable),
        ("not utf-8 inside json", b'{"name":"good","jid":"x","queue":"default","args":["\xff"]}',
         undecodable),
        ("deep arrays", b"[" * 100_000, undecodable),
        ("deep objects", b'{"a":' * 100_000, undecodable),
        ("5 MB string", b"x" * 5_000_000, undecodable),
        ("9 MB payload", _payload(args=["y" * 9_000_000]), undecodable),
        ("json null", b"null", undecodable),
        ("json number", b"42", undecodable),
        ("json string", b'"text"', undecodable),
        ("json array", b"[]", undecodable),
        ("empty object", b"{}", undecodable),
        ("not json", b"this is not json", undecodable),
        ("name not a string", b'{"name": 1}', undecodable),
        ("unknown job", _payload(name="no.such.module.job"), "unknown job"),
        ("unknown run", _payload(run_id="no-such-run", node_id=0), "has no state"),
        ("forged node", _payload(run_id=run_id, node_id=999), "workflow step rejected"),
    ]
    entries += [(f"{field}={value!r}", _payload(**{field: value}), field) for field, value in wrong]
    return entries


@pytest.fixture
def backend() -> Iterator[RedisBackend]:
    yield from real_redis_backend()


@pytest.fixture
def raw_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url())  # bytes in, bytes out
    yield client
    client.close()


class Fleet:
    """An app with a `good` job and 3 live in-process workers."""

    def __init__(self, backend: RedisBackend) -> None:
        self.app = App(backend)
        self.backend = backend
        self.ran: list[int] = []
        self.lock = threading.Lock()

        @self.app.job(name="good")
        def good(value: int) -> None:
            with self.lock:
                self.ran.append(value)

        self.good = good
        # a step on a queue nobody serves keeps the run of the forged node running
        self.blocker = self.app.job(name="blocker", queue="elsewhere")(lambda: None)
        self.workers = [Worker(self.app, concurrency=2, worker_id=f"live-{i}", **FAST)
                        for i in range(3)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout_s=5)

    def dead_count(self) -> int:
        return len(self.backend.entries("dead", limit=1000))

    def check_alive(self) -> None:
        assert [w.threads_alive() for w in self.workers] == [3, 3, 3]
        alive = {w.worker_id for w in self.backend.workers(time.time()) if w.alive}
        assert {w.worker_id for w in self.workers} <= alive

    def check_reasons(self, entries: list[tuple[str, bytes, str]]) -> None:
        reasons = [entry.payload.dead_reason or "" for entry in self.backend.entries(
            "dead", limit=1000)]
        assert all(reasons), reasons
        for kind, _raw, expected in entries:
            assert any(expected in reason for reason in reasons), (kind, expected, reasons)


def test_bad_entries_in_a_queue_are_dead_lettered_and_nothing_stops(
        backend: RedisBackend, raw_client: redis.Redis) -> None:
    fleet = Fleet(backend)
    entries = bad_entries(Workflow(Chain(fleet.blocker.s(), fleet.good.s(-1))).run())
    assert len(entries) >= 30
    fleet.start()
    try:
        for index, (kind, raw, _expected) in enumerate(entries):
            dead_before = fleet.dead_count()
            raw_client.rpush(backend.keys.queue("default"), raw)
            fleet.good.enqueue(index)
            wait_until(lambda i=index: i in fleet.ran, 20, f"the good job after {kind}")
            wait_until(lambda n=dead_before: fleet.dead_count() == n + 1, 20,
                       f"{kind} in the dead set")
            fleet.check_alive()
        backend.schedule(Payload(name="good", jid="scheduled", queue="default", args=[-2]),
                         time.time() + 0.2)
        wait_until(lambda: -2 in fleet.ran, 10, "a scheduled job (the pollers go on)")
        fleet.check_alive()
    finally:
        fleet.stop()
    fleet.check_reasons(entries)
    assert backend.queue_sizes().get("default", 0) == 0


def test_bad_entries_held_by_a_dead_worker_are_recovered_then_dead_lettered(
        backend: RedisBackend, raw_client: redis.Redis) -> None:
    fleet = Fleet(backend)
    entries = bad_entries(Workflow(Chain(fleet.blocker.s(), fleet.good.s(-1))).run())
    backend.heartbeat("ghost#1", {"instance": "ghost"}, 0.5, time.time())
    raw_client.sadd(backend.keys("queues"), "default")
    for _kind, raw, _expected in entries:
        raw_client.rpush(backend.keys.in_progress("ghost#1", "default"), raw)
    fleet.good.enqueue(1)
    time.sleep(0.6)  # the ghost's heartbeat expires
    fleet.start()
    try:
        wait_until(lambda: fleet.dead_count() == len(entries), 60, "every bad entry dead")
        wait_until(lambda: 1 in fleet.ran, 10, "the good job")
        fleet.good.enqueue(2)
        wait_until(lambda: 2 in fleet.ran, 10, "a good job pushed after them")
        fleet.check_alive()
        wait_until(lambda: "ghost#1" not in {w.worker_id for w in backend.workers(time.time())},
                   10, "the emptied dead worker to be forgotten")
    finally:
        fleet.stop()
    fleet.check_reasons(entries)
    log = [json.loads(entry) for entry in backend.recovery_log(1000)]
    assert len(log) == len(entries)  # every entry recovered once, then dead-lettered


def test_undecodable_bytes_are_kept_exactly_in_the_dead_set(
        backend: RedisBackend, raw_client: redis.Redis) -> None:
    fleet = Fleet(backend)
    raw = b'\xff{"name": "good"}\x00\xfe'
    raw_client.rpush(backend.keys.queue("default"), raw)
    fleet.start()
    try:
        wait_until(lambda: fleet.dead_count() == 1, 10, "the entry in the dead set")
    finally:
        fleet.stop()
    [entry] = backend.entries("dead")
    assert entry.payload.name == "<undecodable>"
    assert base64.b64decode(entry.payload.kwargs["raw_base64"]) == raw
    assert entry.payload.dead_reason.startswith("undecodable payload: ")  # type: ignore[union-attr]


class DroppingConnection(redis.Connection):
    """A connection that loses the reply of the next fetch script call: the script runs in
    Redis, the client sees a connection error (as when Redis stalls past the timeout or the
    connection resets after the script ran)."""

    armed = 0
    fetch_calls: tuple[str, ...] = ()  # the fetch script's sha (EVALSHA), function (FCALL)
    dropped = 0
    _lock = threading.Lock()

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # every command passes here (send_command packs, then calls this); the script's
        # name is in the packed bytes
        packed = command.encode() if isinstance(command, str) else b"".join(
            part if isinstance(part, bytes) else bytes(part) for part in command)
        self._fetching = any(name.encode() in packed for name in DroppingConnection.fetch_calls)
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().read_response(*args, **kwargs)
        if getattr(self, "_fetching", False):
            with DroppingConnection._lock:
                fire = DroppingConnection.armed > 0
                if fire:
                    DroppingConnection.armed -= 1
                    DroppingConnection.dropped += 1
            if fire:
                self.disconnect()
                raise redis.exceptions.ConnectionError("reply lost (injected)")
        return response


def test_a_dropped_fetch_reply_strands_nothing(backend: RedisBackend) -> None:
    pool = redis.ConnectionPool.from_url(
        redis_url(), connection_class=DroppingConnection, decode_responses=True,
        encoding_errors="surrogateescape", socket_timeout=5)
    client = redis.Redis(connection_pool=pool)
    dropping = RedisBackend(client, namespace=backend.keys.namespace)
    fetch = dropping.scripts["fetch"]
    DroppingConnection.fetch_calls = (fetch.sha, fetch.function)
    app = App(dropping)
    ran: list[int] = []
    lock = threading.Lock()

    @app.job(name="rec")
    def rec(value: int) -> None:
        with lock:
            ran.append(value)

    rec.enqueue_bulk([[i] for i in range(20)])
    DroppingConnection.armed = 3
    try:
        with app.worker(concurrency=2, fetch_timeout_s=0.2, reconcile_interval_s=0.5,
                        **{k: v for k, v in FAST.items() if k != "fetch_timeout_s"}) as worker:
            wait_until(lambda: len(ran) == 20, 30, "every job to run")
            wait_until(lambda: dropping.in_progress(worker.worker_id) == [], 10,
                       "nothing left in progress")
    finally:
        DroppingConnection.armed = 0
        client.close()
    assert DroppingConnection.dropped == 3
    assert sorted(ran) == list(range(20))  # each exactly once


def test_a_hand_written_scheduled_entry_does_not_stop_the_pollers(
        backend: RedisBackend, raw_client: redis.Redis) -> None:
    fleet = Fleet(backend)
    raw_client.zadd(backend.keys("schedule"), {"forged": 1.0})
    raw_client.hset(backend.keys("schedule", "jobs"), "forged", b"no bar, not json \xff")
    backend.schedule(Payload(name="good", jid="later", queue="default", args=[5]),
                     time.time() + 0.3)
    fleet.start()
    try:
        wait_until(lambda: 5 in fleet.ran, 10, "the scheduled job after the forged one")
        wait_until(lambda: fleet.dead_count() == 1, 10, "the forged entry in the dead set")
        fleet.check_alive()
    finally:
        fleet.stop()
