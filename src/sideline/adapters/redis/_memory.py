"""MemoryStore on Redis: one hash per run, values as JSON text, with its own TTL."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sideline.adapters.redis._base import RedisBase, translate

__all__ = ["MemoryOps"]


class MemoryOps(RedisBase):
    """Per-run memory: the hash "{ns}:run:<id>:memory" (same hash tag as every key)."""

    def write(self, run_id: str, values: Mapping[str, Any], ttl_s: float, now: float) -> None:
        """Set keys and push back the hash's expiry, in one script (Redis keeps the time)."""
        args: list[Any] = [max(1, math.ceil(ttl_s * 1000))]
        for key, value in values.items():
            args += [key, json.dumps(value)]
        with translate("memory write"):
            self.scripts["memory_write"](keys=[self.keys.memory(run_id)], args=args)

    def read(self, run_id: str, keys: Sequence[str] | None, now: float) -> dict[str, Any]:
        """The stored values of `keys` (all when None)."""
        with translate("memory read"):
            if keys is None:
                raw: dict[str, str] = self.client.hgetall(self.keys.memory(run_id))
            else:
                wanted = list(dict.fromkeys(keys))
                found = self.client.hmget(self.keys.memory(run_id), wanted) if wanted else []
                raw = {key: value for key, value in zip(wanted, found, strict=True)
                       if value is not None}
        return {key: json.loads(value) for key, value in raw.items()}

    def clear(self, run_id: str) -> None:
        """Delete the run's memory hash."""
        with translate("memory clear"):
            self.client.delete(self.keys.memory(run_id))
