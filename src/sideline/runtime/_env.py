"""The real clock, randomness and id generator the runtime injects into the core."""

from __future__ import annotations

import random
import time
import uuid

__all__ = ["SystemClock", "new_id"]


class SystemClock:
    """Wall-clock time in float seconds since the epoch."""

    def now(self) -> float:
        """Return time.time()."""
        return time.time()


def new_id() -> str:
    """A fresh 24-hex-character id for jobs and runs."""
    return uuid.uuid4().hex[:24]


def system_random() -> random.Random:
    """A fresh random source seeded from the OS."""
    return random.Random()
