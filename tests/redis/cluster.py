"""A throwaway 3-master Redis Cluster on loopback, for the cluster tests.

`shared_cluster()` starts one cluster per test process, the first time a test asks for
it, and kills it when the process exits; every caller after the first gets the same
one (the contract suites and tests/redis/test_cluster.py share it). `cluster_backend()`
yields a RedisBackend on it in a fresh namespace, deleted afterwards.

A missing redis-server or redis-cli skips the test locally and fails it under CI=true,
as the other real-Redis tests do.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Generator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis

from sideline.adapters.redis import RedisBackend

__all__ = ["LocalCluster", "cluster_backend", "shared_cluster"]

MASTERS = 3


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not on PATH; the cluster tests start a Redis Cluster of their own"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nobody listened on a moment ago."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


class LocalCluster:
    """`masters` redis-servers in cluster mode on 127.0.0.1, no persistence, no replicas.

    Each node's cluster bus port is chosen explicitly (`--cluster-port`), since a
    random client port plus 10000 may not be a valid port.
    """

    def __init__(self, directory: Path, masters: int = MASTERS) -> None:
        self.directory = directory
        ports = _free_ports(2 * masters)
        self.ports = ports[:masters]
        self.bus_ports = ports[masters:]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the nodes, join them with `redis-cli --cluster create`, wait for state ok."""
        server, cli = _require("redis-server"), _require("redis-cli")
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            with (self.directory / f"redis-{port}.log").open("ab") as log:
                self.procs.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                     "--cluster-config-file", str(self.directory / f"nodes-{port}.conf"),
                     "--cluster-node-timeout", "5000",
                     "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                     "--daemonize", "no"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        for port in self.ports:
            self._wait(deadline, f"node {port} to answer PING", lambda p=port: self._ping(p))
        create = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=max(1.0, deadline - time.monotonic()), check=False)
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({create.returncode}):\n"
                               f"{create.stdout}\n{create.stderr}\n{self.logs()}")
        self._wait(deadline, "cluster_state:ok on every node", self._all_ok)

    def _wait(self, deadline: float, what: str, condition: Any) -> None:
        while not condition():
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a cluster node exited with {proc.returncode}:\n"
                                       f"{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}:\n{self.logs()}")
            time.sleep(0.05)

    def _node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2,
                           socket_connect_timeout=2, decode_responses=True)

    def _ping(self, port: int) -> bool:
        client = self._node(port)
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def _all_ok(self) -> bool:
        for port in self.ports:
            client = self._node(port)
            try:
                info = client.execute_command("CLUSTER INFO")  # parsed into a dict
                if (info.get("cluster_state") != "ok"
                        or int(info.get("cluster_known_nodes", 0)) != len(self.ports)):
                    return False
            except redis.exceptions.RedisError:
                return False
            finally:
                client.close()
        return True

    def kill(self) -> None:
        """SIGKILL every node (nothing to keep: no persistence)."""
        procs, self.procs = self.procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text('utf-8', 'replace')[-2000:]}"
                         for path in sorted(self.directory.glob("redis-*.log")))


_lock = threading.Lock()
_shared: LocalCluster | None = None
_failure: BaseException | None = None


def _stop_shared() -> None:
    global _shared
    with _lock:
        if _shared is not None:
            _shared.kill()
            shutil.rmtree(_shared.directory, ignore_errors=True)
            _shared = None


def shared_cluster() -> LocalCluster:
    """The test process's cluster, started on first use and killed when the process exits.

    A start that failed is not retried: every later caller fails with the same error
    at once instead of waiting for another timeout.
    """
    global _shared, _failure
    _require("redis-server")
    _require("redis-cli")
    with _lock:
        if _failure is not None:
            raise RuntimeError(f"the test Redis Cluster failed to start: {_failure}")
        if _shared is None:
            cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="sideline-cluster-")))
            try:
                cluster.start()
            except BaseException as exc:
                cluster.kill()
                shutil.rmtree(cluster.directory, ignore_errors=True)
                _failure = exc
                raise
            _shared = cluster
            atexit.register(_stop_shared)
        return _shared


def cluster_backend(**options: Any) -> Generator[RedisBackend, None, None]:
    """A RedisBackend on the shared cluster, in a fresh namespace deleted afterwards."""
    cluster = shared_cluster()
    backend = RedisBackend.from_cluster(cluster.startup_nodes,
                                        namespace=f"test-{uuid.uuid4().hex[:12]}", **options)
    try:
        yield backend
    finally:
        backend.flush_namespace()
        backend.close()
