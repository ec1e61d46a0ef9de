"""ResultStore of the memory backend: results, job info and stop requests under the
backend's lock; waiters sleep on conditions the writers notify (the twin of
adapters/redis/_results.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager

from sideline.adapters.memory._runs import _Run
from sideline.core.results import JobState, ResultRecord
from sideline.core.run import RunSummary
from sideline.core.settlement import Action, Settlement

__all__ = ["STOP_REQUEST_TTL_S", "ResultOps"]

STOP_REQUEST_TTL_S = 24 * 3600
"""How long a stop request is kept (ResultStore.request_stop: a day)."""


class ResultOps:
    """A mixin of MemoryBackend: it uses the backend's lock, clock and run maps.

    Results and info records expire by the backend's clock (`_clock`, the wall clock
    unless one was given), as Redis expires keys by its own: their methods take no time.
    A run's finished state is read without its expiry, which needs the callers' time;
    an expired run is seen until it is touched (as every memory run is).
    """

    _lock: threading.RLock
    _clock: Callable[[], float]
    _results: dict[str, tuple[float, str]]  # jid -> (expires, result record)
    _job_infos: dict[str, tuple[float, dict[str, str]]]  # jid -> (expires, fields)
    _stops: dict[str, float]  # target -> requested at
    _results_changed: threading.Condition
    _runs_changed: threading.Condition
    _runs: dict[str, _Run]
    _summaries: dict[str, tuple[RunSummary, float]]

    def _op(self, name: str) -> AbstractContextManager[None]:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _store_result(self, settlement: Settlement, now: float) -> None:
        """settle's part for a job that stores its result (Settlement.tracked): its state,
        and once it ended its result (see _lib.lua store_result). Under the lock."""
        jid = settlement.payload.jid
        expires = self._clock() + settlement.result_ttl_s
        if settlement.action is Action.RETRY:
            self._merge_info(jid, {"state": str(JobState.RETRYING),
                                   "retry_count": str(settlement.payload.retry_count)}, expires)
            return
        if settlement.result is not None:
            state = ResultRecord.decode(settlement.result).state
        else:  # a settlement built by hand without its record: its action says
            state = JobState.FAILED if settlement.action is Action.BURY else JobState.SUCCEEDED
        self._merge_info(jid, {"state": str(state), "finished_at": repr(float(now))}, expires)
        if settlement.result is not None:
            self._results[jid] = (expires, settlement.result)
            self._results_changed.notify_all()

    def _merge_info(self, jid: str, fields: Mapping[str, str], expires: float) -> None:
        known = self._live_info(jid)
        self._job_infos[jid] = (expires, {**known, **fields})

    def _live_info(self, jid: str) -> dict[str, str]:
        found = self._job_infos.get(jid)
        if found is None:
            return {}
        if found[0] <= self._clock():
            del self._job_infos[jid]
            return {}
        return found[1]

    def _result(self, jid: str) -> str | None:
        found = self._results.get(jid)
        if found is None:
            return None
        if found[0] <= self._clock():
            del self._results[jid]
            return None
        return found[1]

    def _run_finished(self, run_id: str) -> bool:
        if run_id in self._summaries:  # compacted: it finished succeeded or cancelled
            return True
        run = self._runs.get(run_id)
        return run is not None and run.state.finished_at is not None

    # -- ResultStore -----------------------------------------------------------------------

    def get_results(self, jids: Sequence[str]) -> list[str | None]:
        """The stored result records of `jids`, None where none is."""
        with self._lock:
            return [self._result(jid) for jid in jids]

    def wait_result(self, jid: str, timeout_s: float) -> str | None:
        """Block until the result of `jid` is stored (at most `timeout_s`); None on timeout."""
        with self._results_changed:
            self._results_changed.wait_for(lambda: self._result(jid) is not None,
                                           max(timeout_s, 0.0))
            return self._result(jid)

    def set_job_info(self, jid: str, fields: Mapping[str, str], ttl_s: int) -> None:
        """Merge `fields` into the job's info record, which expires `ttl_s` from now."""
        with self._op("set_job_info"):
            known = self._live_info(jid)
            if fields or known:
                self._merge_info(jid, fields, self._clock() + ttl_s)

    def job_info(self, jid: str) -> dict[str, str]:
        """The job's info record (empty if none is stored)."""
        with self._lock:
            return dict(self._live_info(jid))

    def wait_run(self, run_id: str, timeout_s: float) -> bool:
        """Block until run `run_id` has finished (at most `timeout_s`); False on timeout."""
        with self._runs_changed:
            return self._runs_changed.wait_for(lambda: self._run_finished(run_id),
                                               max(timeout_s, 0.0))

    def request_stop(self, targets: Sequence[str], now: float) -> None:
        """Record stop requests for `targets` at `now`; drop those older than a day."""
        if not targets:
            return
        with self._op("request_stop"):
            for target in targets:
                self._stops[target] = now
            cutoff = now - STOP_REQUEST_TTL_S
            for target, at in list(self._stops.items()):
                if at < cutoff:
                    del self._stops[target]

    def stop_requests(self, targets: Sequence[str]) -> list[str]:
        """Those of `targets` that have a stop request."""
        with self._lock:
            return [target for target in targets if target in self._stops]
