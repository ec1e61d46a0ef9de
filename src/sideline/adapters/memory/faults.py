"""Fault injection for the memory backend: make an operation fail before or after it applies.

A fault "before" an operation leaves the backend untouched, like a process killed
just before its call; "after" applies the operation and then raises, like a
process killed (or a connection lost) before it saw the reply.
"""

from __future__ import annotations

import threading
from collections import Counter

from sideline.core.errors import BackendError

__all__ = ["FaultPlan", "InjectedFault"]


class InjectedFault(BackendError):
    """Raised by the memory backend where a test asked for a crash."""


class FaultPlan:
    """Which backend operations fail, when, and how many times.

    Example:
        faults.inject("complete_node", "after", times=2)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: Counter[tuple[str, str]] = Counter()
        self.fired: Counter[tuple[str, str]] = Counter()

    def inject(self, operation: str, when: str, times: int = 1) -> None:
        """Arm `times` faults for `operation` at `when` ('before' or 'after')."""
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', got {when!r}")
        with self._lock:
            self._armed[(operation, when)] += times

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()

    def check(self, operation: str, when: str) -> None:
        """Raise InjectedFault if a fault is armed for this point (and consume it)."""
        with self._lock:
            key = (operation, when)
            if self._armed[key] <= 0:
                return
            self._armed[key] -= 1
            self.fired[key] += 1
        raise InjectedFault(f"injected fault {when} {operation}")
