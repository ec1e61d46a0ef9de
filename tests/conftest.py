"""Shared fixtures: a fake clock and apps on the memory backend."""

from __future__ import annotations

import pytest


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.current = now

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
