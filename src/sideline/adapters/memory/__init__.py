"""The embedded in-memory backend: thread-safe, deterministic, with fault injection."""

from sideline.adapters.memory.backend import MemoryBackend
from sideline.adapters.memory.faults import FaultPlan, InjectedFault

__all__ = ["FaultPlan", "InjectedFault", "MemoryBackend"]
