"""The limits part of AdminStore on Redis: the keys in use and their parked jobs.

Enforcement is not here: it lives in the scripts that hand jobs to workers and take them
back (_lib.lua admit, limit_free), so it is atomic with each move.
"""

from __future__ import annotations

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.core.admin import LimitView
from sideline.core.limits import parse_spec

__all__ = ["LimitOps"]


class LimitOps(RedisBase):
    """Reads of the limit keys in use (limit_view.lua) and of a key's parked jobs."""

    def limits(self, now: float) -> list[LimitView]:
        """Every limit key in use, by key; keys nothing holds leave the index as read."""
        with translate("limits"):
            found = self.scripts["limit_view"](keys=[self.keys("limits")],
                                               args=[self.prefix, num(now)])
        views = []
        for i in range(0, len(found), 5):
            kind, most, per_s = parse_spec(found[i + 1])
            views.append(LimitView(found[i], kind, most, per_s, int(found[i + 2]),
                                   int(found[i + 3]), int(found[i + 4])))
        return views

    def parked_page(self, key: str, start: int, count: int) -> list[str]:
        """Up to `count` raw jobs parked under `key` from position `start` (LRANGE)."""
        if count <= 0 or start < 0:
            return []
        with translate("parked_page"):
            entries = self.client.lrange(self.keys("limit", key, "parked"), start,
                                         start + count - 1)
        return [entry.partition("|")[2] for entry in entries]  # "queue|payload"
