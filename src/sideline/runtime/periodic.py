"""The scheduling loop of periodic jobs, run by every worker (no leader, no beat process).

On start a worker reconciles the stored entries with its app's (`sync_periodic`); then its
poller calls `Scheduler.run_due` on every pass. For each entry whose next tick has come it
plans what to fire (core/periodic.py: the missed-tick policy) and claims the ticks with
one atomic compare-and-set that also pushes their jobs (`fire_periodic`). Of all workers
trying the same tick, exactly one claim succeeds; a worker killed at any point either
claimed and pushed, or did neither.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import attrs

from sideline.core.errors import SidelineError
from sideline.core.payload import Payload
from sideline.core.periodic import PeriodicEntry, PeriodicState, plan, tick_jid, to_ms
from sideline.core.ports import Backend
from sideline.runtime.client import Client

__all__ = ["PeriodicView", "Scheduler", "view"]

log = logging.getLogger("sideline.periodic")

_PAUSED_RECHECK_S = 1.0
"""How often a paused entry's state is read again (to notice a resume)."""


class Scheduler:
    """Fires the ticks of an app's periodic entries from one worker.

    Args:
        backend: where entries' states live and jobs are pushed.
        client: builds each tick's payload (checked, through client middleware).
        entries: the app's entries by name.
        owned_jobs: the job names the app declares (sync removes only their entries).
    """

    def __init__(self, backend: Backend, client: Client, entries: Mapping[str, PeriodicEntry],
                 owned_jobs: Sequence[str]) -> None:
        self.backend = backend
        self.client = client
        self.entries = dict(entries)
        self.owned_jobs = list(owned_jobs)
        self._states: dict[str, PeriodicState] = {}
        self._due: dict[str, float] = {}
        self.fired = 0
        """Ticks this worker fired (for tests and logs)."""

    def start(self, now: float) -> None:
        """Reconcile the stored entries with the app's, then read their states."""
        self.backend.sync_periodic(list(self.entries.values()), self.owned_jobs, now)
        self._reload(now)

    @property
    def next_due(self) -> float:
        """When the earliest entry is due next (inf: no entry)."""
        return min(self._due.values(), default=float("inf"))

    def _reload(self, now: float) -> None:
        self._states = {state.name: state for state in self.backend.periodic_states()}
        for name, entry in self.entries.items():
            self._due[name] = self._next_due(entry, self._states.get(name), now)

    def _next_due(self, entry: PeriodicEntry, state: PeriodicState | None, now: float) -> float:
        if state is None or state.fingerprint != entry.fingerprint:
            return now + _PAUSED_RECHECK_S  # changed by another deploy: look again later
        if state.paused:
            return now + _PAUSED_RECHECK_S
        return entry.next_after(now if state.last_tick is None else state.last_tick)

    def run_due(self, now: float) -> int:
        """Fire every entry whose tick has come; return how many ticks this worker fired."""
        fired = 0
        stale = False
        for name, entry in self.entries.items():
            if self._due.get(name, 0.0) > now:
                continue
            state = self._states.get(name)
            if state is None or state.paused or state.fingerprint != entry.fingerprint:
                stale = True
                continue
            decided = plan(entry, state.last_tick, now)
            if decided is None:
                self._due[name] = entry.next_after(now)
                continue
            payloads = self._payloads(entry, decided.fire, now)
            claim_ms = to_ms(decided.claim)
            if self.backend.fire_periodic(name, entry.fingerprint, state.last_tick_ms,
                                          claim_ms, payloads=payloads, now=now):
                fired += len(payloads)
                for payload in payloads:
                    self.client.notify("after_enqueue", payload)
                if len(decided.fire) != 1:
                    log.info("periodic %s: %d tick(s) were missed; fired %d (policy %s)",
                             name, _missed(entry, state, decided.claim), len(decided.fire),
                             entry.missed)
                self._states[name] = attrs.evolve(state, last_tick_ms=claim_ms)
                self._due[name] = entry.next_after(decided.claim)
            else:
                stale = True  # another worker claimed it first (or it changed): read again
        if stale:
            self._reload(now)
        self.fired += fired
        return fired

    def _payloads(self, entry: PeriodicEntry, ticks: Sequence[float], now: float) -> list[Payload]:
        payloads = []
        for tick in ticks:
            extra = {} if entry.queue is None else {"queue": entry.queue}
            try:
                payload = self.client.through_middleware(self.client.build_payload(
                    entry.job, list(entry.args), dict(entry.kwargs),
                    jid=tick_jid(entry.name, tick), enqueued_at=now, **extra))
            except SidelineError as exc:  # the tick is claimed all the same: say why it did nothing
                log.error("periodic %s: tick %.3f pushes nothing: %s", entry.name, tick, exc)
                continue
            if payload is not None:
                self.client.notify("before_enqueue", payload)
                payloads.append(payload)
        return payloads


def _missed(entry: PeriodicEntry, state: PeriodicState, claim: float) -> int:
    after = state.last_tick if state.last_tick is not None else claim
    return max(0, len(entry.ticks(after, claim, limit=100_000)) - 1)


@attrs.frozen
class PeriodicView:
    """A periodic entry as the admin API shows it."""

    name: str
    job: str
    schedule: str
    tz: str
    missed: str
    paused: bool
    next_run: float | None
    last_tick: float | None
    last_fired_at: float | None
    last_jid: str | None
    args: tuple[object, ...] = ()


def view(state: PeriodicState, now: float) -> PeriodicView | None:
    """The view of a stored entry (None if its definition cannot be read)."""
    if state.definition is None:
        return None
    try:
        entry = PeriodicEntry.from_definition(state.definition)
        next_run = None if state.paused else entry.next_after(
            now if state.last_tick is None else state.last_tick)
    except (SidelineError, ValueError, KeyError, TypeError):
        return None
    return PeriodicView(entry.name, entry.job, entry.schedule, entry.tz, str(entry.missed),
                        state.paused, next_run, state.last_tick, state.last_fired_at,
                        state.last_jid, tuple(entry.args))
