"""Job control across processes, on real Redis with real `sideline worker` processes:
stopping a running job (thread, async, isolated process), a cancelled run stopping its
running step, isolated timeouts killing the child and retrying, progress and results
read from another process."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sideline import Chain, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.core.jobs import Signature
from sideline.core.results import JobFailed, JobState
from sideline.runtime.handles import JobHandle
from tests.redis.apps.control_app import build_app
from tests.redis.helpers import Spawn, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.redis.apps.control_app:app"


def _running(handle: JobHandle) -> bool:
    return handle.status() is JobState.RUNNING


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_results_and_progress_cross_processes(redis_ns: RedisBackend, spawn: Spawn) -> None:
    app = build_app(redis_ns.keys.namespace)
    spawn("control-a", ["-c", "2"], app=APP)
    handle = app.enqueue("add", [2, 3])
    assert handle is not None
    assert handle.result(10) == 5
    reporting = app.enqueue("reporting", [30])
    assert reporting is not None
    wait_until(lambda: reporting.info().progress == 0.5, 10, "progress to show")
    info = app.admin.job(reporting)
    assert (info.state, info.message, info.meta) == (JobState.RUNNING, "half-way", {"pages": 10})
    app.admin.stop_job(reporting)
    with pytest.raises(JobFailed, match="JobStopped"):
        reporting.result(10)


@pytest.mark.parametrize("job", ["soft_loop", "async_nap", "isolated_nap"])
def test_a_running_job_is_stopped_within_a_second(redis_ns: RedisBackend, spawn: Spawn,
                                                   tmp_path: Path, job: str) -> None:
    app = build_app(redis_ns.keys.namespace)
    spawn("control-b", ["-c", "2"], app=APP)
    log = tmp_path / "pids"
    args: list[object] = [60, str(log)] if job.startswith("isolated") else [60]
    handle = app.enqueue(job, args)
    assert handle is not None
    wait_until(lambda: _running(handle), 15, f"{job} to start")
    if job.startswith("isolated"):
        wait_until(log.exists, 15, "the isolated child to start the job")
    asked = time.monotonic()
    app.admin.stop_job(handle)
    with pytest.raises(JobFailed, match="JobStopped: stopped by request") as caught:
        handle.result(10)
    assert time.monotonic() - asked < 2.5
    assert caught.value.error_class == "JobStopped"
    dead = app.admin.dead().entries
    assert [(e.payload.name, e.payload.dead_reason) for e in dead] == [
        (job, "stopped: stopped by request")]
    if job.startswith("isolated"):
        pid = int(log.read_text().split()[0])
        wait_until(lambda: not _alive(pid), 5, "the isolated child to be killed")


def test_an_isolated_job_is_killed_at_its_timeout_and_retried(
        redis_ns: RedisBackend, spawn: Spawn, tmp_path: Path) -> None:
    app = build_app(redis_ns.keys.namespace)
    spawn("control-c", ["-c", "2"], app=APP)
    log = tmp_path / "pids"
    handle = app.enqueue("isolated_hang", [60, str(log)])
    assert handle is not None
    with pytest.raises(JobFailed, match="JobTimeout"):
        handle.result(30)
    pids = [int(line) for line in log.read_text().split()]
    assert len(pids) == 2
    assert len(set(pids)) == 2
    wait_until(lambda: not any(_alive(pid) for pid in pids), 5, "both children to be gone")
    [entry] = app.admin.dead().entries
    assert entry.payload.retry_count == 1


def test_cancelling_a_run_stops_its_running_step(redis_ns: RedisBackend, spawn: Spawn) -> None:
    app = build_app(redis_ns.keys.namespace)
    spawn("control-d", ["-c", "2"], app=APP)
    run_id = Workflow(Chain(Signature("soft_loop", (60,)), Signature("add", (1, 2))),
                      app=app).run()
    step = app.handle(f"{run_id}.0")
    wait_until(lambda: _running(step), 15, "the first step to start")
    assert app.cancel(run_id)
    with pytest.raises(JobFailed, match="JobStopped: its workflow run was cancelled"):
        step.result(10)
    assert app.status(run_id).status == "cancelled"
    assert app.admin.dead().entries == ()  # a cancelled run's step is not kept dead



def test_async_jobs_of_a_sigkilled_worker_are_recovered_and_finished(
        redis_ns: RedisBackend, spawn: Spawn) -> None:
    app = build_app(redis_ns.keys.namespace)
    victim = spawn("control-victim", ["-c", "2", "--async-concurrency", "50"], app=APP)
    handles = [app.enqueue("async_nap", [1.5]) for _ in range(30)]
    assert all(handle is not None for handle in handles)
    wait_until(lambda: sum(_running(h) for h in handles if h is not None) >= 20, 15,
               "the victim to run async jobs")
    held = len(redis_ns.in_progress(victim.worker_id))
    assert held >= 20  # handed to the loop, still held in its in-progress list
    victim.proc.kill()  # SIGKILL mid-await: no shutdown code runs
    victim.wait(10)
    spawn("control-survivor", ["-c", "2"], app=APP)
    assert [h.result(60) for h in handles if h is not None] == ["woke"] * 30
    assert app.admin.dead().entries == ()
