"""PeriodicStore on Redis: the entry names in a set, each entry's definition and state in
a hash; a tick is claimed and its jobs pushed by one script (compare and set)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.core.payload import Payload, encode
from sideline.core.periodic import PeriodicEntry, PeriodicState, to_ms

__all__ = ["PeriodicOps"]


class PeriodicOps(RedisBase):
    """Periodic entries: sync, read, fire, pause."""

    def sync_periodic(self, entries: Sequence[PeriodicEntry], owned_jobs: Sequence[str],
                      now: float) -> None:
        """Store new or changed entries, remove this app's entries gone from its code."""
        given = [[entry.name, entry.fingerprint, entry.definition()] for entry in entries]
        with translate("sync_periodic"):
            self.scripts["periodic_sync"](
                keys=[self.keys("periodic")],
                args=[self.prefix, to_ms(now), json.dumps(sorted(set(owned_jobs))),
                      json.dumps(given)])

    def periodic_states(self) -> list[PeriodicState]:
        """Every stored entry's state, sorted by name (one round trip after the names)."""
        with translate("periodic_states"):
            names = sorted(self.client.smembers(self.keys("periodic")))
            if not names:
                return []
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self.keys("periodic", name))
            found = pipe.execute()
        return [PeriodicState.of(name, fields) for name, fields in zip(names, found, strict=True)
                if fields]

    def fire_periodic(self, name: str, fingerprint: str, expected_ms: int | None,
                      claim_ms: int, *, payloads: Sequence[Payload], now: float) -> bool:
        """Claim the ticks up to `claim_ms` and push `payloads` if nobody did first."""
        args: list[str | int] = [self.prefix, fingerprint,
                                 "" if expected_ms is None else str(expected_ms), str(claim_ms),
                                 num(now)]
        for payload in payloads:
            args += [payload.queue, encode(payload), payload.jid]
        with translate("fire_periodic"):
            claimed = self.scripts["periodic_fire"](keys=[self.keys("periodic", name)],
                                                    args=args)
        return bool(claimed)

    def pause_periodic(self, name: str, paused: bool, now: float) -> bool:
        """Pause or resume an entry (resuming skips the ticks missed while paused)."""
        key = self.keys("periodic", name)
        with translate("pause_periodic"):
            if not self.client.exists(key):
                return False
            fields = {"paused": "1" if paused else "0"}
            if not paused:
                fields["last_tick_ms"] = str(to_ms(now))
            self.client.hset(key, mapping=fields)
        return True
