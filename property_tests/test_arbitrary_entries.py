"""Arbitrary byte strings as queue entries (and in a dead worker's in-progress list) never
kill a worker thread and never lose a good job (fakeredis with Lua, a real threaded worker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import fakeredis
from hypothesis import given
from hypothesis import strategies as st

from sideline import App
from sideline.adapters.redis import RedisBackend

_entries = st.lists(
    st.one_of(st.binary(max_size=64),
              st.text(max_size=32).map(str.encode),
              st.builds(lambda head, tail: head + tail,
                        st.sampled_from([b'{"name":"good","jid":"x","queue":"default"',
                                         b'{"name":', b"[", b'{"args":']),
                        st.binary(max_size=16))),
    max_size=6)


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@given(queued=_entries, held=_entries)
def test_arbitrary_entries_never_kill_a_thread_or_lose_a_good_job(
        queued: list[bytes], held: list[bytes]) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True,
                                 encoding_errors="surrogateescape")
    backend = RedisBackend(client, namespace="p")
    app = App(backend)
    ran: list[int] = []
    lock = threading.Lock()

    @app.job(name="good")
    def good(value: int = 0) -> None:
        with lock:
            ran.append(value)

    client.sadd(backend.keys("queues"), "default")
    for raw in queued:
        client.rpush(backend.keys.queue("default"), raw)
    backend.heartbeat("ghost#1", {}, -1.0, time.time())  # a dead worker holding the rest
    for raw in held:
        client.rpush(backend.keys.in_progress("ghost#1", "default"), raw)
    good.enqueue(-1)
    worker = app.worker(concurrency=2, fetch_timeout_s=0.05, poll_interval_s=0.01,
                        recovery_interval_s=0.05, heartbeat_interval_s=0.05)
    with worker:
        _wait_for(lambda: -1 in ran, "the good job")
        # Entries only flow ghost list -> queue -> this worker's lists -> dead set, so the
        # checks go upstream first: once the ghost list was empty, an empty queue seen after
        # it stays empty (checked the other way round, recovery could move the last ghost
        # entry into the queue between the two reads).
        _wait_for(lambda: not backend.held("ghost#1")
                  and backend.queue_sizes().get("default", 0) == 0
                  and not backend.in_progress(worker.worker_id) and worker.busy == 0,
                  "every entry to be taken and settled")
        assert worker.threads_alive() == 3
    dead = backend.entries("dead", limit=1000)
    assert all(entry.payload.dead_reason for entry in dead)
    # each entry is dead-lettered, or (if it happens to be a valid `good` job) ran once
    assert ran.count(-1) == 1
    assert len(dead) + len(ran) - 1 == len(queued) + len(held)
    client.close()
