"""`sideline worker -p N`: a supervisor process that runs N worker processes.

Each child is a plain `sideline worker` process with its own incarnation (instance id
`<base>.<slot>`, so a child restarted in a slot recovers at once what its predecessor
held). The supervisor:

- restarts a child that exits on its own, after a backoff that doubles for each quick
  death in a row (0.5 s up to 30 s; it resets once a child lived 30 s), and logs it;
- restarts a child at once when it exits to be recycled (`--max-jobs-per-child`);
- forwards TERM and INT (graceful stop: children finish their jobs and push back what
  they hold) and TSTP (quiet: no new jobs) to every child, and exits once all stopped.

It runs no jobs itself and holds no connection to Redis.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

import attrs

__all__ = ["EXIT_RECYCLE", "Supervisor"]

log = logging.getLogger("sideline.supervisor")

EXIT_RECYCLE = 75
"""The exit code of a child that stopped to be recycled (it ran `max_jobs` jobs)."""

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0
"""A child that lived this long resets its slot's backoff."""


@attrs.define
class _Slot:
    number: int
    instance_id: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


class Supervisor:
    """Runs `processes` children `sideline worker <child_args> -i <base>.<slot>`.

    Args:
        processes: how many worker processes.
        child_args: the arguments of each child's `sideline worker` (without -p or -i).
        base_id: the instance-id prefix of the children.
        shutdown_timeout_s: how long a child may take to stop gracefully before it is
            killed (its jobs are then recovered from its lists).
    """

    def __init__(self, processes: int, child_args: Sequence[str], base_id: str,
                 shutdown_timeout_s: float) -> None:
        self.slots = [_Slot(k, f"{base_id}.{k}") for k in range(processes)]
        self.child_args = list(child_args)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._stopping = threading.Event()

    # -- children ------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        command = [sys.executable, "-m", "sideline.cli", "worker", *self.child_args,
                   "-i", slot.instance_id]
        env = dict(os.environ, SIDELINE_PROCESSES="1")
        slot.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        slot.started_at = time.monotonic()
        log.info("started worker process %s (pid %d)", slot.instance_id, slot.process.pid)

    def _reap(self, slot: _Slot, now: float) -> None:
        """Note a child's exit and plan its restart."""
        assert slot.process is not None
        code = slot.process.returncode
        lived = now - slot.started_at
        slot.process = None
        if code == EXIT_RECYCLE:
            log.info("worker process %s recycled after its job limit; starting a new one",
                     slot.instance_id)
            slot.failures, slot.restart_at = 0, now
            return
        slot.failures = 1 if lived >= STABLE_AFTER_S else slot.failures + 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (slot.failures - 1))
        slot.restart_at = now + delay
        log.warning("worker process %s exited with %s after %.1f s; restarting in %.1f s",
                    slot.instance_id, code, lived, delay)

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # just exited: reaped next pass
                    slot.process.send_signal(signum)

    # -- running -------------------------------------------------------------------------

    def run(self) -> int:
        """Start the children and keep them running until TERM or INT; return 0."""
        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping %d worker processes", signal.Signals(signum).name,
                     len(self.slots))
            self._stopping.set()

        def quiet(_signum: int, _frame: FrameType | None) -> None:
            log.info("TSTP: quieting every worker process")
            self._signal_all(signal.SIGTSTP)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTSTP, quiet)
        for slot in self.slots:
            self._start(slot)
        print(f"sideline supervisor (pid {os.getpid()}) ready: {len(self.slots)} worker "
              "processes", flush=True)
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is not None:
                    self._reap(slot, now)
                if slot.process is None and now >= slot.restart_at:
                    self._start(slot)
        self._stop_children()
        return 0

    def _stop_children(self) -> None:
        """TERM every child, wait for the graceful stops, kill what is left."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout_s + 5.0
        for slot in self.slots:
            if slot.process is None:
                continue
            try:
                slot.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process %s did not stop in time: killing it (its jobs are "
                          "recovered from its lists)", slot.instance_id)
                slot.process.kill()
                slot.process.wait()
        log.info("every worker process stopped")
