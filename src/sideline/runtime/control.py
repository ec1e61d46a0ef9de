"""Control over a running job: its deadline, and requests to stop it.

Each job a worker runs gets a `JobControl`. A stop request (`app.admin.stop_job`, or its
run cancelled) reaches it through the backend: the worker's poller asks which of its
running jobs someone wants stopped (`RunningJobs.targets`, `ResultStore.stop_requests`)
and calls `request_stop`, which sets the flag a thread job reads through
`current_job().should_stop()` and runs the hooks that cancel an async job's task or kill
an isolated job's process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sideline.core.payload import Payload

__all__ = ["JobControl", "RunningJobs", "job_target", "run_target"]

log = logging.getLogger("sideline.worker")


def run_target(run_id: str) -> str:
    """The stop target naming every job of run `run_id`."""
    return f"run:{run_id}"


def job_target(jid: str) -> str:
    """The stop target naming job `jid`."""
    return f"jid:{jid}"


class JobControl:
    """The deadline and the stop flag of one running job.

    Args:
        timeout_s: the job's timeout (None: none); the deadline counts from now.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.is_stopped = False
        """True once a stop was requested."""
        self.reason: str | None = None
        self.run_cancelled = False
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._event: threading.Event | None = None  # made only for code that waits on it

    @property
    def stopped(self) -> threading.Event:
        """An event set once a stop is requested, for code that waits on it."""
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self.is_stopped:
                    self._event.set()
            return self._event

    def timed_out(self) -> bool:
        """True once the deadline has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def should_stop(self) -> bool:
        """True when the job should stop: its deadline passed, or a stop was requested."""
        return self.is_stopped or self.timed_out()

    def request_stop(self, reason: str, *, run_cancelled: bool = False) -> None:
        """Ask the job to stop (once): set the flag and run the stop hooks."""
        with self._lock:
            if self.is_stopped:
                return
            self.reason, self.run_cancelled = reason, run_cancelled
            self.is_stopped = True
            if self._event is not None:
                self._event.set()
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:  # a hook must not keep the others from running
                log.exception("a stop hook failed")

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Run `hook` when a stop is requested (at once if one was already)."""
        with self._lock:
            if not self.is_stopped:
                self._hooks.append(hook)
                return
        hook()


class RunningJobs:
    """The jobs running in one worker, by the stop targets that name them."""

    def __init__(self) -> None:
        self._jobs: dict[int, tuple[Payload, JobControl]] = {}
        self._lock = threading.Lock()

    def add(self, payload: Payload, control: JobControl) -> int:
        """Register a running job; returns the key to `remove` it with."""
        key = id(control)
        with self._lock:
            self._jobs[key] = (payload, control)
        return key

    def remove(self, key: int) -> None:
        """Forget a job that ended."""
        with self._lock:
            self._jobs.pop(key, None)

    def tracking(self, payload: Payload, control: JobControl) -> _Tracking:
        """Registered while the block runs (`add`, then `remove`)."""
        return _Tracking(self, payload, control)

    def targets(self) -> dict[str, list[JobControl]]:
        """Every stop target of the running jobs ("jid:<jid>", "run:<run_id>") with the
        controls it names."""
        found: dict[str, list[JobControl]] = {}
        with self._lock:
            jobs = list(self._jobs.values())
        for payload, control in jobs:
            found.setdefault(job_target(payload.jid), []).append(control)
            if payload.run_id is not None:
                found.setdefault(run_target(payload.run_id), []).append(control)
        return found

    def stop(self, requested: list[str], targets: dict[str, list[JobControl]]) -> int:
        """Request a stop of the jobs named by `requested`; return how many were asked."""
        asked = 0
        for target in requested:
            cancelled = target.startswith("run:")
            reason = "its workflow run was cancelled" if cancelled else "stopped by request"
            for control in targets.get(target, ()):
                if not control.is_stopped:
                    control.request_stop(reason, run_cancelled=cancelled)
                    asked += 1
        return asked


class _Tracking:
    """`RunningJobs.tracking`'s block (a class, not a generator: every job enters one)."""

    __slots__ = ("control", "jobs", "key", "payload")

    def __init__(self, jobs: RunningJobs, payload: Payload, control: JobControl) -> None:
        self.jobs, self.payload, self.control = jobs, payload, control
        self.key: int | None = None

    def __enter__(self) -> None:
        self.key = self.jobs.add(self.payload, self.control)

    def __exit__(self, *exc_info: object) -> None:
        if self.key is not None:
            self.jobs.remove(self.key)
