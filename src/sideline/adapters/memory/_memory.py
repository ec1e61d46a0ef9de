"""MemoryStore of the memory backend: per-run key/value memory with expiry."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["RunMemory"]


class RunMemory:
    """Per-run memory held as JSON text, as Redis holds it; times are passed in.

    A mixin of MemoryBackend: it uses the backend's lock and fault plan (operation
    name "memory_write").
    """

    _lock: threading.RLock
    _memory: dict[str, tuple[float, dict[str, str]]]

    def _op(self, name: str) -> AbstractContextManager[None]:  # pragma: no cover (overridden)
        raise NotImplementedError

    def write(self, run_id: str, values: Mapping[str, Any], ttl_s: float, now: float) -> None:
        """Set keys of the run's memory (JSON text, as in Redis) and push back its expiry."""
        encoded = {key: json.dumps(value) for key, value in values.items()}
        with self._op("memory_write"):
            expires_at, stored = self._memory.get(run_id, (0.0, {}))
            if expires_at <= now:
                stored = {}
            if not encoded and not stored:
                self._memory.pop(run_id, None)
                return
            stored.update(encoded)
            # Redis keeps millisecond TTLs: round the same way so both expire alike.
            self._memory[run_id] = (max(expires_at, now + math.ceil(ttl_s * 1000) / 1000), stored)

    def read(self, run_id: str, keys: Sequence[str] | None, now: float) -> dict[str, Any]:
        """The stored values of `keys` (all when None) of a run's live memory."""
        with self._lock:
            expires_at, stored = self._memory.get(run_id, (0.0, {}))
            if expires_at <= now:
                self._memory.pop(run_id, None)
                return {}
            wanted = stored if keys is None else {k: stored[k] for k in keys if k in stored}
            return {key: json.loads(raw) for key, raw in wanted.items()}

    def clear(self, run_id: str) -> None:
        """Forget a run's memory."""
        with self._lock:
            self._memory.pop(run_id, None)
