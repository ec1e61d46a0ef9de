"""Helpers of the real-Redis tests: bounded waits, a test-owned redis-server, worker processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from sideline import BackendError
from sideline.adapters.redis import RedisBackend, redis_url
from sideline.core.verify import Event
from tests.redis.apps.jobs_app import events_key

__all__ = ["REPO_ROOT", "RedisServer", "Spawn", "WorkerProcess", "first_occurrences", "free_port",
           "in_progress_keys", "read_events", "require_redis_server_binary", "spawn_worker", "wait_until"]

REPO_ROOT = Path(__file__).resolve().parents[2]

FAST_HEARTBEATS = {
    "SIDELINE_HEARTBEAT_INTERVAL_S": "0.5",
    "SIDELINE_HEARTBEAT_TTL_S": "2",
    "SIDELINE_RECOVERY_INTERVAL_S": "0.5",
}


def first_occurrences(events: list[dict[str, Any]]) -> list[Event]:
    """The trace of each node's first start and first end, in Redis order."""
    seen: set[tuple[str, int]] = set()
    trace: list[Event] = []
    for event in events:
        key = (event["kind"], event["node"])
        if key not in seen:
            seen.add(key)
            trace.append(Event(event["kind"], event["node"]))
    return trace


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str,
               interval_s: float = 0.01) -> Any:
    """Poll `condition` until it returns something truthy (returned); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    """A loopback TCP port nobody listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_events(backend: RedisBackend) -> list[dict[str, Any]]:
    """Every event the jobs_app middleware recorded, in Redis's (global) order."""
    return [json.loads(raw) for raw in backend.client.lrange(events_key(backend), 0, -1)]


def in_progress_keys(backend: RedisBackend) -> dict[str, int]:
    """Every in-progress list of the namespace with its length (Redis drops empty lists)."""
    keys = sorted(backend.client.scan_iter(match=f"{backend.prefix}inprogress:*", count=1000))
    return {key: backend.client.llen(key) for key in keys}


def require_redis_server_binary() -> str:
    """The redis-server executable; skip (or, under CI=true, fail) when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not on PATH; the test starts a server of its own"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


class RedisServer:
    """A redis-server owned by one test: 127.0.0.1 on a free port, no RDB snapshots, an
    append-only file fsynced on every write in `directory` (so a restart keeps the data)."""

    def __init__(self, binary: str, directory: Path, extra_args: Sequence[str] = ()) -> None:
        self.binary = binary
        self.directory = directory
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server (again) on the same port and directory; wait until it answers."""
        if self.proc is not None:
            raise RuntimeError("redis-server already started")
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis-server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
                 *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        wait_until(self.ping, timeout_s, f"redis-server on port {self.port} to answer PING",
                   interval_s=0.02)

    def ping(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited; log:\n{self.log()}")
        probe = RedisBackend.from_url(self.url, namespace="probe")
        try:
            probe.queue_sizes()  # a read; fails while refused or still loading the AOF
            return True
        except BackendError:
            return False
        finally:
            probe.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (the server fsyncs its append-only file and exits); SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def kill(self) -> None:
        """SIGKILL, for teardown."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)

    def log(self) -> str:
        path = self.directory / "redis-server.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""


class WorkerProcess:
    """A `sideline worker` subprocess; its stdout and stderr go to one log file."""

    def __init__(self, proc: subprocess.Popen[bytes], instance_id: str, log_path: Path) -> None:
        self.proc = proc
        self.instance_id = instance_id
        self.worker_id = instance_id  # the registry id "<instance>#<incarnation>", once known
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        """The exit code; fails the test (with the log) if it does not exit in time."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {self.instance_id} still running after {timeout_s} s; "
                                 f"log:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


Spawn = Callable[..., WorkerProcess]
"""The `spawn` fixture: spawn(instance_id, args=[...], env={...}) -> WorkerProcess."""


def worker_env(namespace: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker subprocess: this test's namespace and Redis, short
    heartbeats, the repo root importable; other SIDELINE_* settings of the caller dropped."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIDELINE_") or k == "SIDELINE_REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if part)
    env["SIDELINE_REDIS_URL"] = redis_url()
    env["SIDELINE_NAMESPACE"] = namespace
    env.update(FAST_HEARTBEATS)
    env.update(extra or {})
    return env


def spawn_worker(backend: RedisBackend, directory: Path, instance_id: str, *,
                 args: Sequence[str] = (), env: dict[str, str] | None = None,
                 ready_timeout_s: float = 20.0,
                 app: str = "tests.redis.apps.jobs_app:app") -> WorkerProcess:
    """Start `sideline worker` for `app` (default tests.redis.apps.jobs_app) on `backend`'s
    namespace and wait until it has registered its heartbeat. The caller kills it (see the
    spawn fixture)."""
    log_path = directory / f"worker-{instance_id}-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "sideline.cli", "worker", "--app", app, "-i", instance_id,
               *args]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=worker_env(backend.keys.namespace, env),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    worker = WorkerProcess(proc, instance_id, log_path)

    def registered() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"worker {instance_id} exited with {proc.returncode}; "
                                 f"log:\n{worker.log()}")
        found = [w for w in backend.workers(time.time())  # this process, not an earlier one
                 if w.info.get("pid") == str(proc.pid) and w.alive]
        if found:
            worker.worker_id = found[0].worker_id
        return bool(found)

    try:
        wait_until(registered, ready_timeout_s, f"worker {instance_id} to register", 0.05)
    except BaseException:
        worker.kill()
        raise
    return worker
