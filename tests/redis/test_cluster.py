"""RedisBackend on a 3-master Redis Cluster (started by tests/redis/cluster.py).

The contract suites run on the cluster too (the "cluster" adapter of
tests/contract/conftest.py); these tests add what only a cluster shows: where the keys
land, how to connect, and a worker running jobs and workflows end to end.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from sideline import App, BackendError, Chain, ConfigurationError, Group, RunStatus, WithDelay, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import Payload
from sideline.core.ports import Delivery
from tests.redis.cluster import LocalCluster, cluster_backend, shared_cluster
from tests.redis.helpers import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture(scope="session")
def redis_cluster() -> LocalCluster:
    """The 3-master cluster shared by every cluster test of this process (killed at exit)."""
    return shared_cluster()


@pytest.fixture
def cluster_ns(redis_cluster: LocalCluster) -> Iterator[RedisBackend]:
    yield from cluster_backend()


def _client(cluster: LocalCluster) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes],
                        decode_responses=True, encoding_errors="surrogateescape")


def _namespaces_on_different_masters(client: RedisCluster) -> tuple[str, str]:
    """Two fresh namespaces whose slots are served by different masters."""
    first = f"test-{uuid.uuid4().hex[:12]}"
    owner = client.get_node_from_key(f"{{{first}}}:queues").name
    for _ in range(100):
        other = f"test-{uuid.uuid4().hex[:12]}"
        if client.get_node_from_key(f"{{{other}}}:queues").name != owner:
            return first, other
    raise AssertionError("no namespace found on another master")


def _fill(backend: RedisBackend, app: App) -> None:
    """Touch every kind of key: queues, wake lists, in-progress, sets, a run, workers, locks."""
    step = app.job(name="step")(lambda label: None)
    step.enqueue("now")
    step.enqueue_in(3600, "later")
    Workflow(Chain(step.s("a"), WithDelay(step.s("b"), 60_000))).run()
    delivery = backend.fetch("w1", ["default"], 0)
    assert delivery is not None
    backend.kill("w1", delivery, Payload(jid="dead-1", name="step", queue="default"), 1.0)
    backend.heartbeat("w1", {"host": "h"}, 60, time.time())
    assert backend.acquire_lock("recovery", 60, time.time()) is not None
    backend.log_recoveries(["{}"], 10)


def test_each_namespace_lives_in_one_slot_and_namespaces_spread_over_masters(
        redis_cluster: LocalCluster) -> None:
    client = _client(redis_cluster)
    backends: list[RedisBackend] = []
    try:
        names = _namespaces_on_different_masters(client)
        slots: dict[str, int] = {}
        for name in names:
            backend = RedisBackend(client, namespace=name)
            backends.append(backend)
            _fill(backend, App(backend))
            keys = sorted(client.scan_iter(match=f"{backend.prefix}*", count=1000))
            assert len(keys) >= 15, keys  # queue, wake, inprogress, sets, run keys, ...
            # CLUSTER KEYSLOT, asked of the server: one slot for all keys of the namespace
            key_slots = {client.cluster_keyslot(key) for key in keys}
            assert len(key_slots) == 1, key_slots
            [slots[name]] = key_slots
            # ...and every key is on the master serving that slot, none on the others
            owner = client.get_node_from_key(keys[0])
            for node in client.get_primaries():
                found = list(client.scan_iter(match=f"{backend.prefix}*", count=1000,
                                              target_nodes=node))
                assert len(found) == (len(keys) if node.name == owner.name else 0)
        assert slots[names[0]] != slots[names[1]]
        owners = {client.get_node_from_key(f"{b.prefix}queues").name for b in backends}
        assert len(owners) == 2
    finally:
        for backend in backends:
            backend.flush_namespace()
        client.close()


def test_flush_namespace_deletes_the_namespace_keys_and_nothing_else(
        cluster_ns: RedisBackend) -> None:
    others = cluster_backend()  # a second namespace on the same cluster
    other = next(others)
    try:
        _fill(cluster_ns, App(cluster_ns))
        other.push([Payload(jid="x", name="step", queue="default")])
        count = len(list(cluster_ns.client.scan_iter(match=f"{cluster_ns.prefix}*")))
        assert cluster_ns.flush_namespace() == count
        assert list(cluster_ns.client.scan_iter(match=f"{cluster_ns.prefix}*")) == []
        assert other.queue_sizes() == {"default": 1}
    finally:
        others.close()  # flushes and closes it


def test_workflows_retries_dead_set_and_scheduled_jobs_run_end_to_end(
        cluster_ns: RedisBackend) -> None:
    app = App(cluster_ns)
    lock = threading.Lock()
    ran: list[str] = []
    attempts: dict[str, int] = {}

    def record(label: str) -> None:
        with lock:
            ran.append(label)

    def flaky(label: str) -> None:
        with lock:
            attempts[label] = attempts.get(label, 0) + 1
            if attempts[label] == 1:
                raise ConnectionError("first attempt fails")
        record(label)

    def doomed() -> None:
        raise ValueError("always")

    step = app.job(name="step")(record)
    retried = app.job(name="flaky", retry_in=lambda count, exc: 0.05)(flaky)
    gate = app.job(name="gate", retry=False)(flaky)  # dies on its first attempt
    app.job(name="doomed", retry=False)(doomed)
    done = app.job(name="done")(lambda run_id: record(f"done:{run_id}"))

    with app.worker(concurrency=4, poll_interval_s=0.02, fetch_timeout_s=0.5,
                    heartbeat_interval_s=0.5) as worker:
        run_id = Workflow(Chain(step.s("a"), Group(step.s("b1"), retried.s("b2")),
                                WithDelay(step.s("c"), 200)), on_success=done.s()).run()
        app.enqueue("doomed")
        step.enqueue_in(0.3, "scheduled")
        broken = Workflow(Chain(step.s("x"), gate.s("gate"), step.s("y"))).run()

        info = app.wait(run_id, timeout_s=15)
        assert info.status is RunStatus.SUCCEEDED
        wait_until(lambda: f"done:{run_id}" in ran, 5, "the success callback")
        assert ran.index("a") < min(ran.index("b1"), ran.index("b2"))
        assert max(ran.index("b1"), ran.index("b2")) < ran.index("c")
        assert attempts["b2"] == 2  # failed once, retried from the retry set

        wait_until(lambda: "scheduled" in ran, 5, "the scheduled job")
        dead = wait_until(lambda: [e for e in cluster_ns.entries("dead")
                                   if e.payload.name == "doomed"], 5, "the dead job")
        assert dead[0].payload.error_message == "always"

        wait_until(lambda: app.status(broken).status is RunStatus.FAILED, 5, "the failed run")
        [gate_dead] = [e for e in cluster_ns.entries("dead") if e.payload.name == "gate"]
        assert app.retry_dead(gate_dead.payload.jid)  # revives the node and its run
        assert app.wait(broken, timeout_s=10).status is RunStatus.SUCCEEDED
        assert "y" in ran
        assert worker.processed >= 11
        assert [w.worker_id for w in cluster_ns.workers(time.time())] == [worker.worker_id]
    assert cluster_ns.queue_sizes() == {"default": 0}
    assert cluster_ns.in_progress(worker.worker_id) == []


def test_blocked_fetch_wakes_when_a_job_is_pushed(cluster_ns: RedisBackend) -> None:
    got: list[Delivery | None] = []
    fetcher = threading.Thread(
        target=lambda: got.append(cluster_ns.fetch("w", ["low", "default"], 10.0)))
    started = time.monotonic()
    fetcher.start()
    time.sleep(0.2)  # the fetcher is blocked in BLPOP on both wake lists by now
    cluster_ns.push([Payload(jid="j1", name="step", queue="default")])
    fetcher.join(5)
    assert not fetcher.is_alive()
    assert time.monotonic() - started < 3
    [delivery] = got
    assert delivery is not None
    assert delivery.queue == "default"


def test_from_url_with_cluster_true_discovers_every_master(redis_cluster: LocalCluster) -> None:
    backend = RedisBackend.from_url(redis_cluster.url, cluster=True, max_connections=8,
                                    namespace=f"test-{uuid.uuid4().hex[:12]}")
    try:
        assert backend.cluster
        assert len(backend.client.get_primaries()) == 3
        backend.push([Payload(jid="j", name="step", queue="default")])
        assert backend.queue_sizes() == {"default": 1}
    finally:
        backend.flush_namespace()
        backend.close()


def test_a_handed_cluster_client_is_never_closed(redis_cluster: LocalCluster) -> None:
    client = _client(redis_cluster)
    try:
        backend = RedisBackend(client, namespace=f"test-{uuid.uuid4().hex[:12]}")
        backend.push([Payload(jid="j", name="step", queue="default")])
        backend.close()
        assert client.ping() is True  # still usable: the backend did not close it
        assert backend.flush_namespace() >= 1
    finally:
        client.close()


def test_a_cluster_client_without_decode_responses_is_refused(
        redis_cluster: LocalCluster) -> None:
    nodes = [ClusterNode(h, p) for h, p in redis_cluster.startup_nodes]
    for client in (RedisCluster(startup_nodes=nodes),
                   RedisCluster(startup_nodes=nodes, decode_responses=True)):
        try:
            with pytest.raises(ConfigurationError, match=(
                    'decode_responses=True and encoding_errors="surrogateescape"')):
                RedisBackend(client)
        finally:
            client.close()


def test_from_cluster_sets_timeouts_and_byte_exact_decoding(redis_cluster: LocalCluster) -> None:
    backend = RedisBackend.from_cluster(redis_cluster.startup_nodes, timeout_s=2.0)
    try:
        kwargs = backend.client.get_connection_kwargs()
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 2.0)
        assert (kwargs["decode_responses"], kwargs["encoding_errors"]) == (
            True, "surrogateescape")
        assert backend.block_limit_s == 1.0
        assert backend.client.retry.get_retries() == 2
    finally:
        backend.close()


def test_redis_py_older_than_6_1_is_refused_for_a_cluster(
        redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis, "__version__", "5.2.1")  # no MULTI/EXEC on RedisCluster yet
    with pytest.raises(ConfigurationError, match=r"redis-py 6\.1 or newer \(found 5\.2\.1\)"):
        RedisBackend.from_cluster(redis_cluster.startup_nodes)


def test_an_unreachable_cluster_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="Redis Cluster unreachable"):
        RedisBackend.from_cluster([("127.0.0.1", 1)])
    with pytest.raises(BackendError, match="Redis Cluster unreachable"):
        RedisBackend.from_url("redis://127.0.0.1:1", cluster=True)
    with pytest.raises(ConfigurationError, match="startup node"):
        RedisBackend.from_cluster([])
