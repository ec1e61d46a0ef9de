"""`sideline worker -p N`: a supervisor with real worker processes on real Redis.

A child SIGKILLed is restarted in its slot and the job it held runs again; TERM stops
every child gracefully; TSTP quiets them all; a workflow runs end to end across two
processes; `--max-jobs-per-child` recycles children. The memory backend refuses -p > 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sideline import Chain, Group, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.cli import main
from sideline.core.jobs import Signature
from tests.redis.apps.jobs_app import build_app, events_key
from tests.redis.helpers import REPO_ROOT, wait_until, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APP = "tests.redis.apps.jobs_app:app"


class Supervised:
    """A `sideline worker -p N` process group; its output goes to a log file."""

    def __init__(self, backend: RedisBackend, directory: Path, *args: str) -> None:
        self.backend = backend
        self.log_path = directory / f"supervisor-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "sideline.cli", "worker", "--app", APP, *args]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=REPO_ROOT, env=worker_env(backend.keys.namespace), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def children(self) -> dict[str, int]:
        """Live worker processes by instance id: their pids (from their heartbeats)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"the supervisor exited with {self.proc.returncode}:\n"
                                 f"{self.log()}")
        found: dict[str, int] = {}
        for worker in self.backend.workers(time.time()):
            if worker.alive and worker.info.get("pid"):
                found[worker.worker_id.split("#")[0]] = int(worker.info["pid"])
        return found

    def wait_children(self, count: int, what: str) -> dict[str, int]:
        return dict(wait_until(lambda: (c := self.children()) and len(c) == count and c,
                               30, what, 0.05))

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def supervise(redis_ns: RedisBackend, tmp_path: Path) -> Iterator[object]:
    started: list[Supervised] = []

    def start(*args: str) -> Supervised:
        supervised = Supervised(redis_ns, tmp_path, *args)
        started.append(supervised)
        return supervised

    try:
        yield start
    finally:
        for supervised in started:
            supervised.kill_group()


def _events(backend: RedisBackend) -> list[str]:
    return list(backend.client.lrange(events_key(backend), 0, -1))


def test_two_processes_run_a_workflow_end_to_end(redis_ns: RedisBackend, supervise) -> None:
    supervised = supervise("-p", "2", "-c", "2", "-i", "sup")
    children = supervised.wait_children(2, "two worker processes")
    assert sorted(children) == ["sup.0", "sup.1"]
    assert len(set(children.values())) == 2
    app = build_app(redis_ns.keys.namespace)
    tree = Chain(*(Group(*(Signature("step", (f"{i}.{j}",)) for j in range(4)))
                   for i in range(3)))
    run_id = Workflow(tree, app=app).run()
    assert app.wait(run_id, timeout_s=30).status == "succeeded"
    pids = {event.split('"pid": ')[1].split(",")[0] for event in _events(redis_ns)}
    assert len(pids) == 2  # both processes ran steps
    app.backend.close()


def test_children_take_the_jobs_per_call_they_are_given(redis_ns: RedisBackend,
                                                        supervise) -> None:
    supervised = supervise("-p", "2", "-c", "2", "--jobs-per-call", "8", "-i", "sup")
    supervised.wait_children(2, "two worker processes")
    settings = {w.info["jobs_per_call"] for w in redis_ns.workers(time.time()) if w.alive}
    assert settings == {"8"}
    app = build_app(redis_ns.keys.namespace)
    app.enqueue_bulk("step", [[f"j{i}", 1, 2] for i in range(300)])
    wait_until(lambda: len(_events(redis_ns)) == 600, 30, "300 jobs to run", 0.05)
    supervised.proc.send_signal(signal.SIGTERM)
    assert supervised.proc.wait(20) == 0, supervised.log()
    assert redis_ns.stats(["processed"]) == {"processed": 300}
    assert not list(redis_ns.client.scan_iter(match=f"{redis_ns.prefix}inprogress:*"))
    app.backend.close()


def test_a_killed_child_is_restarted_and_its_job_runs_again(redis_ns: RedisBackend,
                                                           supervise) -> None:
    supervised = supervise("-p", "2", "-c", "1", "-i", "sup")
    children = supervised.wait_children(2, "two worker processes")
    app = build_app(redis_ns.keys.namespace)
    jid = app.enqueue("nap", [1.5])
    started = wait_until(lambda: [e for e in _events(redis_ns) if '"kind": "start"' in e],
                         10, "the nap to start")
    victim_pid = int(started[0].split('"pid": ')[1].split(",")[0])
    os.kill(victim_pid, signal.SIGKILL)
    slot = next(name for name, pid in children.items() if pid == victim_pid)
    wait_until(lambda: supervised.children().get(slot) not in (None, victim_pid), 30,
               f"{slot} to be restarted")
    # the restarted child takes over its slot's earlier incarnation at once: the nap
    # runs again (recoveries 1) and ends
    wait_until(lambda: any('"kind": "end"' in e and jid in e for e in _events(redis_ns)), 30,
               "the nap to run again and end")
    assert "exited with -9" in supervised.log()
    app.backend.close()


def test_term_stops_every_child_gracefully(redis_ns: RedisBackend, supervise) -> None:
    supervised = supervise("-p", "2", "-c", "1", "-t", "10")
    children = supervised.wait_children(2, "two worker processes")
    app = build_app(redis_ns.keys.namespace)
    app.enqueue("nap", [0.5])
    wait_until(lambda: _events(redis_ns), 10, "the nap to start")
    supervised.proc.send_signal(signal.SIGTERM)
    assert supervised.proc.wait(20) == 0
    for pid in children.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    kinds = [e.split('"kind": "')[1].split('"')[0] for e in _events(redis_ns)]
    assert kinds == ["start", "end"]  # the running job finished before its process stopped
    assert redis_ns.queue_sizes().get("default", 0) == 0
    app.backend.close()


def test_tstp_quiets_every_child(redis_ns: RedisBackend, supervise) -> None:
    supervised = supervise("-p", "2", "-c", "1")
    supervised.wait_children(2, "two worker processes")
    supervised.proc.send_signal(signal.SIGTSTP)
    wait_until(lambda: supervised.log().count("TSTP: quiet") >= 2, 10,
               "both children to be quieted")
    app = build_app(redis_ns.keys.namespace)
    app.enqueue("nap", [0.0])
    time.sleep(1.5)
    assert _events(redis_ns) == []  # quiet: nobody fetched it
    assert redis_ns.queue_sizes().get("default") == 1
    app.backend.close()


def test_children_are_recycled_after_max_jobs(redis_ns: RedisBackend, supervise) -> None:
    supervised = supervise("-p", "2", "-c", "1", "--max-jobs-per-child", "3")
    supervised.wait_children(2, "two worker processes")
    app = build_app(redis_ns.keys.namespace)
    app.enqueue_bulk("nap", [[0.0]] * 20)
    wait_until(lambda: sum('"kind": "end"' in e for e in _events(redis_ns)) == 20, 60,
               "every job to end")
    pids = {e.split('"pid": ')[1].split(",")[0] for e in _events(redis_ns)}
    assert len(pids) >= 4  # 20 jobs, at most 3 per process: several generations ran them
    assert "recycled" in supervised.log()
    app.backend.close()


def test_the_memory_backend_refuses_more_than_one_process(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SIDELINE_APP", "examples.quickstart:app")
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    assert main(["worker", "-p", "2"]) == 2
    assert "in-memory backend" in capsys.readouterr().err
