"""How the scripts reach the server: as Redis Functions (one library, loaded once, loaded
again after FUNCTION FLUSH or a restart without persistence), or by EVALSHA on a server
without functions (reloaded after SCRIPT FLUSH)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sideline import App, Chain, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from sideline.core.run import NodeStatus
from sideline.core.settlement import Action, NodeEvent, Settlement
from tests.contract.helpers import payload
from tests.redis.conftest import require_redis_server_binary
from tests.redis.helpers import RedisServer


def _settle_twice(backend: RedisBackend) -> None:
    """Push three jobs, fetch one and settle it twice along the chain: each settle hands
    back the next job."""
    backend.push([payload("j1"), payload("j2"), payload("j3")])
    first = backend.fetch("w", ["default"], 0)
    assert first is not None
    settled = backend.settle("w", first, Settlement(Action.ACK, decode(first.raw)), 100.0,
                             ["default"])
    assert settled.next is not None
    assert decode(settled.next.raw).jid == "j2"
    last = backend.settle("w", settled.next, Settlement(Action.ACK, decode(settled.next.raw)),
                          101.0, ["default"])
    assert last.next is not None
    assert decode(last.next.raw).jid == "j3"


def _calls(backend: RedisBackend, command: str) -> int:
    stats = backend.client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_scripts_run_as_functions_of_one_library(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, namespace="functions")
    try:
        backend.client.config_resetstat()
        _settle_twice(backend)
        libraries = [dict(zip(entry[::2], entry[1::2], strict=True))["library_name"]
                     for entry in backend.client.function_list()]
        assert libraries == [backend.scripts.caller.library_name]
        assert _calls(backend, "fcall") >= 4  # push, fetch, two settles
        assert _calls(backend, "evalsha") == 0
        assert _calls(backend, "function|load") == 1
    finally:
        backend.close()


def test_a_flushed_library_is_loaded_again_on_the_next_call(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, namespace="functions")
    try:
        backend.push([payload("j1"), payload("j2")])
        first = backend.fetch("w", ["default"], 0)
        assert first is not None
        backend.client.function_flush()
        assert backend.client.function_list() == []
        settled = backend.settle("w", first, Settlement(Action.ACK, decode(first.raw)), 100.0,
                                 ["default"])
        assert settled.next is not None
        assert decode(settled.next.raw).jid == "j2"
        assert len(backend.client.function_list()) == 1
        assert backend.scripts.caller.functions
    finally:
        backend.close()


@pytest.fixture
def old_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server without FCALL and FUNCTION, as Redis before 7 is."""
    server = RedisServer(require_redis_server_binary(), tmp_path / "old",
                         ["--rename-command", "FCALL", "", "--rename-command", "FUNCTION", ""])
    try:
        server.start()
        yield server
    finally:
        server.kill()


def test_a_server_without_functions_runs_the_scripts_by_evalsha(old_server: RedisServer) -> None:
    backend = RedisBackend.from_url(old_server.url, namespace="scripts")
    try:
        backend.client.config_resetstat()
        _settle_twice(backend)
        assert not backend.scripts.caller.functions  # asked once, then scripts
        assert _calls(backend, "evalsha") >= 4
    finally:
        backend.close()


def test_a_flushed_script_cache_is_reloaded_on_the_next_call(old_server: RedisServer) -> None:
    backend = RedisBackend.from_url(old_server.url, namespace="scripts")
    try:
        backend.push([payload("j1"), payload("j2")])
        first = backend.fetch("w", ["default"], 0)
        assert first is not None
        backend.client.script_flush()
        assert backend.client.script_exists(backend.scripts["settle"].sha) == [False]
        settled = backend.settle("w", first, Settlement(Action.ACK, decode(first.raw)), 100.0,
                                 ["default"])
        assert settled.next is not None
        assert decode(settled.next.raw).jid == "j2"
        assert backend.client.script_exists(backend.scripts["settle"].sha) == [True]
    finally:
        backend.close()


def test_each_call_of_a_function_starts_with_empty_state(redis_server: RedisServer) -> None:
    """_lib.lua keeps per-call state (the nodes a call changed, its graph cache) at the top
    of the library; a function's call must not see the previous call's: each settle of a
    chain step reports only its own run's changes."""
    backend = RedisBackend.from_url(redis_server.url, namespace="state")
    app = App(backend)

    @app.job(name="step")
    def step() -> None:
        """Does nothing."""

    try:
        run_ids = [Workflow(Chain(step.s(), step.s()), app=app).run() for _ in range(2)]
        for _ in range(4):
            delivery = backend.fetch("w", ["default"], 0, begin_at=time.time)
            assert delivery is not None
            job = decode(delivery.raw)
            settled = backend.settle("w", delivery, Settlement(
                Action.ACK, job, node=NodeEvent.SUCCEEDED), time.time())
            change = settled.transition
            if job.node_id == 0:  # the first step: it succeeded and released the second
                assert change.nodes == {0: NodeStatus.SUCCEEDED, 1: NodeStatus.QUEUED}, change
                assert [release.node_id for release in change.releases] == [1], change
            else:  # the last step: it succeeded and nothing else changed
                assert change.nodes == {1: NodeStatus.SUCCEEDED}, change
                assert change.releases == (), change
        for run_id in run_ids:
            assert app.status(run_id).status == "succeeded"
    finally:
        backend.close()


def test_a_worker_fits_in_a_pool_of_its_concurrency_plus_two(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Each job thread keeps one connection for its scripts and waits for work on the same
    one, so `concurrency + 2` connections are enough (docs/redis.md)."""
    backend = RedisBackend.from_url(redis_server.url, namespace="pool", max_connections=6)
    app = App(backend)
    done: list[int] = []

    @app.job(name="record")
    def record(value: int) -> None:
        done.append(value)

    try:
        record.enqueue_bulk([[i] for i in range(300)])
        with app.worker(concurrency=4, fetch_timeout_s=0.2, poll_interval_s=0.05):
            deadline = time.monotonic() + 30
            while len(done) < 300 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.5)  # idle threads block in BLPOP meanwhile
        assert sorted(done) == list(range(300))
        assert "pool exhausted" not in caplog.text
        assert "unavailable" not in caplog.text
    finally:
        backend.close()


def test_calls_without_hiredis_pack_with_redis_py(redis_server: RedisServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the `fast` extra the lean path packs with redis-py's own packer."""
    from sideline.adapters.redis import _scripts  # noqa: PLC0415

    monkeypatch.setattr(_scripts, "_pack", None)
    backend = RedisBackend.from_url(redis_server.url, namespace="nohiredis")
    try:
        _settle_twice(backend)
    finally:
        backend.close()
