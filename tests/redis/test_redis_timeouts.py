"""Explicit Redis timeouts: a Redis that stops answering is a BackendError within
`timeout_s` (SIDELINE_REDIS_TIMEOUT_S), and a blocking fetch never outwaits the socket."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis

from sideline import BackendError
from sideline.adapters.redis import RedisBackend
from sideline.adapters.redis._base import block_limit
from sideline.core.payload import Payload
from tests.redis.helpers import RedisServer

pytestmark = pytest.mark.redis


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """The server process stopped (SIGSTOP): it accepts connections but answers nothing."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def _timed_failure(call: Callable[[], object]) -> float:
    """Seconds until `call` failed with "Redis timed out"."""
    started = time.monotonic()
    with pytest.raises(BackendError, match="Redis timed out during"):
        call()
    return time.monotonic() - started


def test_a_paused_redis_is_a_backend_error_within_the_timeout(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, timeout_s=1.0, namespace="t")
    try:
        backend.push([Payload(jid="j0", name="step", queue="default")])  # pooled connection
        with paused(redis_server):
            assert _timed_failure(backend.queue_sizes) < 2.0
            job = Payload(jid="j1", name="step", queue="default")
            assert _timed_failure(lambda: backend.push([job])) < 2.0
            assert _timed_failure(lambda: backend.fetch("w1", ["default", "other"], 5.0)) < 2.0
        # the timed-out connections were dropped; fresh ones work at once
        assert backend.queue_sizes()["default"] >= 1
        assert backend.fetch("w1", ["default"], 0.1) is not None
    finally:
        backend.close()


def test_a_blocking_fetch_longer_than_the_socket_timeout_returns_none(
        redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, timeout_s=1.0, namespace="t")
    try:
        assert backend.block_limit_s == 0.5
        started = time.monotonic()
        assert backend.fetch("w1", ["empty"], 3.0) is None  # not "Redis timed out"
        assert 0.4 < time.monotonic() - started < 1.0
    finally:
        backend.close()


def test_block_limit_leaves_room_for_the_reply() -> None:
    assert block_limit(5.0) == 4.0
    assert block_limit(2.0) == 1.0
    assert block_limit(1.0) == 0.5
    assert block_limit(0.2) == pytest.approx(0.1)


def test_a_handed_client_sets_its_own_socket_timeout(redis_server: RedisServer) -> None:
    options = {"decode_responses": True, "encoding_errors": "surrogateescape"}
    untimed = redis.Redis.from_url(redis_server.url, socket_timeout=None, **options)
    timed = redis.Redis.from_url(redis_server.url, socket_timeout=3, **options)
    try:
        assert RedisBackend(untimed).block_limit_s == math.inf
        assert RedisBackend(timed).block_limit_s == 2.0
    finally:
        untimed.close()
        timed.close()


def test_a_job_threads_own_connection_times_out_in_the_kernel(redis_server: RedisServer) -> None:
    """A thread that fetches keeps a blocking connection whose timeout the kernel keeps
    (SO_RCVTIMEO, no poll per call); a paused Redis still ends its calls as "timed out",
    and the next call after the pause reconnects."""
    backend = RedisBackend.from_url(redis_server.url, timeout_s=1.0, namespace="t")
    try:
        backend.push([Payload(jid="j0", name="step", queue="default")])
        assert backend.fetch("w1", ["default"], 0.1) is not None  # this thread now holds one
        held = backend.scripts.caller._local.held
        assert held.connection._sock.gettimeout() is None  # blocking: the kernel times out
        with paused(redis_server):
            job = Payload(jid="j1", name="step", queue="default")
            started = time.monotonic()
            with pytest.raises(BackendError, match="Redis timed out during push: Timeout on "
                                                   "the socket"):
                backend.push([job])
            assert time.monotonic() - started < 2.0
            assert _timed_failure(lambda: backend.fetch("w1", ["default"], 5.0)) < 2.0
        backend.fetch("w1", ["default"], 0.1)  # reconnected: answers (j1 or nothing)
        assert held.connection._sock.gettimeout() is None
    finally:
        backend.close()
