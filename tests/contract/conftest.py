"""The adapters every contract suite runs against.

Each backend fixture yields a fresh, empty backend. New adapters join by adding
a parameter here; a behaviour that differs between adapters is a bug in one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sideline.adapters.memory import MemoryBackend
from sideline.core.ports import Backend

ADAPTERS = ["memory"]


def make_backend(kind: str, **options: int) -> Iterator[Backend]:
    if kind == "memory":
        backend = MemoryBackend(**options)
        yield backend
        backend.close()
        return
    raise AssertionError(f"unknown adapter {kind}")  # pragma: no cover


@pytest.fixture(params=ADAPTERS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from make_backend(request.param)


@pytest.fixture(params=ADAPTERS)
def small_dead_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A backend whose dead set keeps at most 3 jobs for at most 100 s."""
    yield from make_backend(request.param, max_dead=3, dead_ttl_s=100)
