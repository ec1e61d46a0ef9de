"""The adapters every contract suite runs against: memory, fakeredis, a real Redis and a
3-master Redis Cluster.

Each backend fixture yields a fresh, empty backend (the Redis ones in a namespace of
their own, deleted afterwards). A behaviour that differs between adapters is a bug
in one of them. The cluster is started once per test process (tests/redis/cluster.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sideline.adapters.memory import MemoryBackend
from sideline.core.ports import Backend
from tests.redis.cluster import cluster_backend
from tests.support import fake_redis_backend, real_redis_backend

ADAPTERS = ["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis),
            pytest.param("cluster", marks=pytest.mark.redis)]


def make_backend(kind: str, **options: Any) -> Iterator[Backend]:
    if kind == "memory":
        yield MemoryBackend(**options)
    elif kind == "fakeredis":
        yield from fake_redis_backend(**options)
    elif kind == "cluster":
        yield from cluster_backend(**options)
    else:
        yield from real_redis_backend(**options)


@pytest.fixture(params=ADAPTERS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from make_backend(request.param)


@pytest.fixture(params=ADAPTERS)
def small_dead_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A backend whose dead set keeps at most 3 jobs for at most 100 s."""
    yield from make_backend(request.param, max_dead=3, dead_ttl_s=100)
