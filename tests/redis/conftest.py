"""Fixtures of the real-Redis tests.

- `redis_ns`: a RedisBackend on the shared server (SIDELINE_REDIS_URL, default
  redis://127.0.0.1:6379/0) in a fresh uuid namespace, deleted afterwards.
- `spawn`: starts `sideline worker` subprocesses on that namespace; kills them afterwards.
- `redis_server`: a redis-server this test owns (loopback, free port, append-only file in
  tmp_path), started; killed afterwards. Tests stop and restart it at will.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sideline.adapters.redis import RedisBackend
from tests.redis.helpers import (
    RedisServer,
    Spawn,
    WorkerProcess,
    require_redis_server_binary,
    spawn_worker,
)
from tests.support import fake_redis_backend, real_redis_backend


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Iterator[RedisBackend]:
    """A RedisBackend on fakeredis, then on the real server (a module may override it)."""
    if request.param == "fakeredis":
        yield from fake_redis_backend()
    else:
        yield from real_redis_backend()


@pytest.fixture
def redis_ns() -> Iterator[RedisBackend]:
    yield from real_redis_backend()


@pytest.fixture
def spawn(redis_ns: RedisBackend, tmp_path: Path) -> Iterator[Spawn]:
    started: list[WorkerProcess] = []

    def start(instance_id: str, args: Sequence[str] = (), env: dict[str, str] | None = None,
              app: str = "tests.redis.apps.jobs_app:app") -> WorkerProcess:
        worker = spawn_worker(redis_ns, tmp_path, instance_id, args=args, env=env, app=app)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server_binary(), tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.kill()
