"""PeriodicStore of the memory backend: entries' definitions and states under the
backend's lock (the twin of adapters/redis/_periodic.py and its two scripts)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from sideline.core.payload import Payload, encode
from sideline.core.periodic import PeriodicEntry, PeriodicState, to_ms

__all__ = ["PeriodicOps"]


class PeriodicOps:
    """A mixin of MemoryBackend: it uses the backend's lock and queues."""

    _lock: threading.RLock
    _periodic: dict[str, dict[str, str]]  # name -> the fields Redis keeps in its hash

    def _push_raw(self, queue: str, raw: str, front: bool = False) -> None:
        raise NotImplementedError

    def sync_periodic(self, entries: Sequence[PeriodicEntry], owned_jobs: Sequence[str],
                      now: float) -> None:
        """Store new or changed entries, remove this app's entries gone from its code."""
        owned = set(owned_jobs)
        with self._lock:
            given = set()
            for entry in entries:
                given.add(entry.name)
                state = self._periodic.setdefault(entry.name, {})
                if state.get("fingerprint") != entry.fingerprint:
                    state.update(definition=entry.definition(), fingerprint=entry.fingerprint,
                                 last_tick_ms=str(to_ms(now)))
            for name in list(self._periodic):
                if name in given:
                    continue
                try:
                    job = json.loads(self._periodic[name].get("definition") or "").get("job")
                except (ValueError, AttributeError):
                    job = None
                if job is None or job in owned:
                    del self._periodic[name]

    def periodic_states(self) -> list[PeriodicState]:
        """Every stored entry's state, sorted by name."""
        with self._lock:
            return [PeriodicState.of(name, dict(fields))
                    for name, fields in sorted(self._periodic.items())]

    def fire_periodic(self, name: str, fingerprint: str, expected_ms: int | None,
                      claim_ms: int, *, payloads: Sequence[Payload], now: float) -> bool:
        """Claim the ticks up to `claim_ms` and push `payloads` if nobody did first."""
        with self._lock:
            state = self._periodic.get(name)
            expected = "" if expected_ms is None else str(expected_ms)
            if (state is None or state.get("fingerprint") != fingerprint
                    or state.get("paused") == "1" or state.get("last_tick_ms", "") != expected):
                return False
            state["last_tick_ms"] = str(claim_ms)
            for payload in payloads:
                self._push_raw(payload.queue, encode(payload))
            if payloads:
                state.update(last_fired_at=repr(now), last_jid=payloads[-1].jid)
            return True

    def pause_periodic(self, name: str, paused: bool, now: float) -> bool:
        """Pause or resume an entry (resuming skips the ticks missed while paused)."""
        with self._lock:
            state = self._periodic.get(name)
            if state is None:
                return False
            state["paused"] = "1" if paused else "0"
            if not paused:
                state["last_tick_ms"] = str(to_ms(now))
            return True
