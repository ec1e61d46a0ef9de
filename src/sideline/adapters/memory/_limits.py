"""Fleet-wide limits per key on the memory backend: the twin of _lib.lua's admit and
limit_free and of limit_view.lua, step for step, inside the backend's locked operations.

A concurrency job takes a slot (jid -> worker) when it is handed to a worker and frees
it when it leaves that worker's hands, releasing one parked job of its key to the head of
its queue; a job whose key is full is parked. A rate job records its start; one whose
window is full goes to the scheduled set for when the window has room.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import deque

import attrs

from sideline.core.admin import LimitView
from sideline.core.limits import CONCURRENCY, HeldLimit, limit_of, parse_spec, spec_text

__all__ = ["Budget", "LimitOps", "LimitState", "queue_of"]


@attrs.define
class Budget:
    """How many jobs one fetch call has refused so far (core.limits.PARK_PER_FETCH)."""

    refused: int = 0


@attrs.define
class LimitState:
    """What the Redis keys "limits" and "limit:<key>:..." hold, in memory."""

    index: dict[str, str] = attrs.field(factory=dict)
    """Key in use -> its limit (core.limits.spec_text)."""
    running: dict[str, dict[str, str]] = attrs.field(factory=dict)
    """Key -> jid -> the worker holding the slot."""
    parked: dict[str, deque[tuple[str, str]]] = attrs.field(factory=dict)
    """Key -> (queue, payload) parked, the next to release first."""
    starts: dict[str, list[tuple[float, str]]] = attrs.field(factory=dict)
    """Key -> (start time, "<jid>@<time>") of a rate key, sorted as Redis sorts them."""


def queue_of(raw: str) -> str:
    """The queue a text that is not a payload names, else "default": where move_due sends a
    scheduled job no worker will accept (a rate-limited job whose limit this adapter
    reads but the strict decode refuses), for its worker to bury it."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return "default"
    queue = data.get("queue") if isinstance(data, dict) else None
    return queue if isinstance(queue, str) else "default"


def _member_time(now: float) -> str:
    return repr(float(now))  # the text Redis's scripts get for `now` (adapters/redis num)


class LimitOps:
    """A mixin of MemoryBackend: it uses the backend's lock, queues and scheduled set."""

    _lock: threading.RLock
    _limits: LimitState
    _sets: dict[str, dict[str, tuple[float, str]]]

    def _push_raw(self, queue: str, raw: str, front: bool = False) -> None:  # pragma: no cover
        raise NotImplementedError

    def _admit(self, worker_id: str, queue: str, raw: str, now: float) -> bool:
        """Whether job `raw`, just taken from `queue`, may go to `worker_id` (_lib.lua
        admit); a refused job is parked or scheduled here."""
        limit = limit_of(raw)
        if limit is None:
            return True
        state = self._limits
        if limit.max is not None:
            running = state.running.setdefault(limit.key, {})
            if len(running) < limit.max:
                if not running:  # the key's first slot enters it in the index
                    state.index[limit.key] = spec_text(limit)
                running[limit.jid] = worker_id
                return True
            state.parked.setdefault(limit.key, deque()).append((queue, raw))
            return False
        return self._admit_rate(limit, limit.rate or 0, limit.per_s or 0.0, raw, now)

    def _admit_rate(self, limit: HeldLimit, rate: int, per_s: float, raw: str,
                    now: float) -> bool:
        """A rate job: record its start if the key's window has room, else schedule it
        for when the oldest start leaves the window (the scheduled set keeps no queue in
        memory: the job goes back to its payload's)."""
        starts = [start for start in self._limits.starts.get(limit.key, [])
                  if start[0] > now - per_s]
        if len(starts) < rate:
            if not starts:  # the window's first start enters the key in the index
                self._limits.index[limit.key] = spec_text(limit)
            member = f"{limit.jid}@{_member_time(now)}"
            starts = [start for start in starts if start[1] != member]  # ZADD updates
            bisect.insort(starts, (now, member))
            self._limits.starts[limit.key] = starts
            return True
        self._limits.starts[limit.key] = starts
        self._sets["scheduled"][limit.jid] = (starts[0][0] + per_s, raw)
        return False

    def _free(self, worker_id: str, raw: str) -> None:
        """Job `raw` left `worker_id`'s hands: free its concurrency slot, if it holds one
        (_lib.lua limit_free)."""
        limit = limit_of(raw)
        if limit is not None and limit.max is not None:
            self._free_slot(limit.key, limit.jid, worker_id)

    def _free_slot(self, key: str, jid: str, worker_id: str) -> int:
        """Free `jid`'s slot under `key` if `worker_id` holds it; release one parked job of
        the key to its queue head; drop a key left empty from the index (_lib.lua
        free_slot). Returns 1 if a slot was freed."""
        state = self._limits
        running = state.running.get(key, {})
        if running.get(jid) != worker_id:
            return 0
        del running[jid]
        parked = state.parked.get(key)
        if parked:
            queue, raw = parked.popleft()
            self._push_raw(queue, raw, front=True)
        elif not running:
            state.index.pop(key, None)
        if not running:
            state.running.pop(key, None)
        if parked is not None and not parked:
            state.parked.pop(key, None)
        return 1

    def _forget_slots(self, worker_id: str) -> int:
        """Free every slot still recorded for a forgotten worker (forget_worker.lua)."""
        freed = 0
        for key in sorted(self._limits.index):
            if not self._limits.index[key].startswith(f"{CONCURRENCY}|"):
                continue
            holders = self._limits.running.get(key, {})
            for jid in sorted(jid for jid, holder in holders.items() if holder == worker_id):
                freed += self._free_slot(key, jid, worker_id)
        return freed

    def limits(self, now: float) -> list[LimitView]:
        """Every limit key in use, by key; keys nothing holds leave the index as read."""
        with self._lock:
            state = self._limits
            views = []
            for key in sorted(state.index):
                kind, most, per_s = parse_spec(state.index[key])
                running = len(state.running.get(key, {}))
                parked = len(state.parked.get(key, ()))
                started = 0
                if per_s is not None:
                    starts = [s for s in state.starts.get(key, []) if s[0] > now - per_s]
                    state.starts[key] = starts
                    started = len(starts)
                if running + parked + started == 0:
                    del state.index[key]
                    state.starts.pop(key, None)
                    continue
                views.append(LimitView(key, kind, most, per_s, running, parked, started))
            return views

    def parked_page(self, key: str, start: int, count: int) -> list[str]:
        """Up to `count` raw jobs parked under `key` from position `start`."""
        if count <= 0 or start < 0:
            return []
        with self._lock:
            parked = list(self._limits.parked.get(key, ()))
        return [raw for _queue, raw in parked[start:start + count]]
