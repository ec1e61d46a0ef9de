"""Helpers for tests that need Redis: a fakeredis backend, and the real server.

A test that needs the real Redis and cannot reach it is skipped locally but FAILS
when CI=true, so CI never passes by silently skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis

from sideline.adapters.memory import MemoryBackend
from sideline.adapters.redis import RedisBackend, redis_url


def fake_redis_backend(**options: Any) -> Iterator[RedisBackend]:
    """A RedisBackend on a private fakeredis server (Lua through lupa)."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True,
                                 encoding_errors="surrogateescape")
    backend = RedisBackend(client, namespace="t", **options)
    yield backend
    client.close()


def memory_or_fake_backend(kind: str) -> Iterator[Any]:
    """A MemoryBackend ("memory") or a RedisBackend on fakeredis ("fakeredis")."""
    if kind == "memory":
        yield MemoryBackend()
    else:
        yield from fake_redis_backend()


def require_redis() -> None:
    """Skip (or, under CI=true, fail) when the real Redis is unreachable."""
    try:
        redis.Redis.from_url(redis_url(), socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        message = f"Redis at {redis_url()} is unreachable ({exc}); start it or set SIDELINE_REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def real_redis_backend(**options: Any) -> Iterator[RedisBackend]:
    """A RedisBackend on the real server, in a fresh namespace deleted afterwards."""
    require_redis()
    backend = RedisBackend.from_url(namespace=f"test-{uuid.uuid4().hex[:12]}", **options)
    try:
        yield backend
    finally:
        backend.flush_namespace()
        backend.close()


def wait_until(condition: Callable[[], object], timeout_s: float = 5.0) -> None:
    """Poll `condition` until it is true; AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)
