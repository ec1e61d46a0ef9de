"""Ports for the two things the core never takes from the environment: time and chance."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock", "RandomSource"]


class Clock(Protocol):
    """Tells the time as seconds since the epoch (float, sub-second precision)."""

    def now(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...


class RandomSource(Protocol):
    """Draws uniform floats in [0, 1); injected so backoff jitter is reproducible in tests."""

    def random(self) -> float:
        """Return a float in [0, 1)."""
        ...
