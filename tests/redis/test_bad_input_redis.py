"""Bad input on the Redis backend (fakeredis and the real server): garbage on a queue, forged
job names, and Redis itself going away. Each gets a clear error and loses or imports nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sideline import App, BackendError, Chain, Signature, Workflow
from sideline.adapters.redis import RedisBackend
from tests.redis.helpers import REPO_ROOT, RedisServer, free_port, in_progress_keys, wait_until

NEVER_IMPORTED = "tests.redis.never_imported_module"


def unknown_job_reason(name: str) -> str:
    return (f"unknown job {name!r}: no job of that name is declared in this worker's app "
            "(declare it with @app.job, and make sure the worker imports that module)")


def test_garbage_on_a_queue_is_buried_and_the_worker_runs_the_next_job(
        backend: RedisBackend) -> None:
    app = App(backend)
    ran: list[int] = []
    app.job(name="rec")(ran.append)
    backend.push_raw("default", "this is not json")
    backend.client.rpush(backend.keys.queue("default"), '{"name": 1}')  # bypasses push.lua
    app.enqueue("rec", [7])
    with app.worker(concurrency=1, fetch_timeout_s=0.1, shutdown_timeout_s=5) as worker:
        wait_until(lambda: worker.processed >= 3, 10, "three jobs to be processed")
        assert ran == [7]
        assert backend.in_progress(worker.worker_id) == []
    dead = [entry.payload for entry in backend.entries("dead")]
    assert [p.name for p in dead] == ["<undecodable>", "<undecodable>"]
    assert sorted(p.args[0] for p in dead) == ["this is not json", '{"name": 1}']
    reasons = sorted(p.dead_reason or "" for p in dead)
    assert reasons[0].startswith("undecodable payload: payload is not valid JSON"), reasons
    assert reasons[1] == ("undecodable payload: payload lacks string field(s) name, jid, queue: "
                          "'{\"name\": 1}'"), reasons
    assert in_progress_keys(backend) == {}
    assert backend.queue_sizes() == {"default": 0}


def test_forged_job_names_are_buried_and_never_imported(
        backend: RedisBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imported = tmp_path / "imported"
    ran_system = tmp_path / "os-system-ran"
    ran_subprocess = tmp_path / "subprocess-ran"
    monkeypatch.setenv("SIDELINE_IMPORT_MARKER", str(imported))
    assert NEVER_IMPORTED not in sys.modules
    app = App(backend)
    app.job(name="rec")(lambda: None)
    forged = {
        "os.system": [f"touch {ran_system}"],
        "subprocess.run": [["touch", str(ran_subprocess)]],
        f"{NEVER_IMPORTED}.evil": ["payload"],
    }
    for index, (name, args) in enumerate(forged.items()):
        backend.push_raw("default", json.dumps(
            {"name": name, "jid": f"forged{index}", "queue": "default", "args": args}))
    app.enqueue("rec")
    with app.worker(concurrency=2, fetch_timeout_s=0.1, shutdown_timeout_s=5) as worker:
        wait_until(lambda: worker.processed >= 4, 10, "four jobs to be processed")
    dead = {entry.payload.name: entry.payload for entry in backend.entries("dead")}
    assert set(dead) == set(forged)
    for name, args in forged.items():
        assert dead[name].dead_reason == unknown_job_reason(name)
        assert dead[name].error_class == "UnknownJob"
        assert dead[name].args == args
    assert NEVER_IMPORTED not in sys.modules
    assert not imported.exists()
    assert not ran_system.exists()
    assert not ran_subprocess.exists()
    assert in_progress_keys(backend) == {}
    # The detector works: importing the module does leave the marker.
    subprocess.run([sys.executable, "-c", f"import {NEVER_IMPORTED}"], cwd=REPO_ROOT, check=True,
                   timeout=30, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert imported.exists()


def test_closed_port_gives_a_clear_backend_error() -> None:
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{free_port()}/0",
                                    namespace=f"test-{uuid.uuid4().hex[:12]}")
    app = App(backend)
    app.job(name="rec")(lambda: None)
    try:
        with pytest.raises(BackendError) as raised:
            app.enqueue("rec")
        assert "Redis unreachable" in str(raised.value)
        assert "SIDELINE_REDIS_URL" in str(raised.value)
    finally:
        backend.close()


def snapshot(backend: RedisBackend) -> dict[str, object]:
    """Every key of the namespace with its type and content."""
    client = backend.client
    state: dict[str, object] = {}
    for key in sorted(client.scan_iter(match=f"{backend.prefix}*", count=1000)):
        kind = client.type(key)
        if kind == "list":
            state[key] = client.lrange(key, 0, -1)
        elif kind == "set":
            state[key] = sorted(client.smembers(key))
        elif kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            state[key] = (kind, client.dump(key))
    return state


@pytest.mark.redis
def test_redis_going_away_half_writes_nothing(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, namespace=f"test-{uuid.uuid4().hex[:12]}")
    app = App(backend)
    ran: list[str] = []
    app.job(name="rec")(ran.append)
    try:
        app.enqueue("rec", ["before"])
        Workflow(Chain(Signature("rec", ("w1",)), Signature("rec", ("w2",))), app=app).run()
        before = snapshot(backend)
        redis_server.stop()
        for attempt in (lambda: app.enqueue("rec", ["during"]),
                        lambda: app.enqueue_bulk("rec", [["bulk1"], ["bulk2"]]),
                        lambda: Workflow(Chain(Signature("rec", ("x",))), app=app).run()):
            with pytest.raises(BackendError, match="Redis unreachable") as raised:
                attempt()
            assert "SIDELINE_REDIS_URL" in str(raised.value)
        redis_server.start()
        assert snapshot(backend) == before  # the failed calls left nothing behind
        app.enqueue("rec", ["after"])  # the same backend reconnects
        with app.worker(concurrency=1, fetch_timeout_s=0.1, shutdown_timeout_s=5) as worker:
            wait_until(lambda: worker.processed >= 4, 10, "four jobs to be processed")
        assert sorted(ran) == ["after", "before", "w1", "w2"]
        assert in_progress_keys(backend) == {}
        assert backend.entries("dead") == []
    finally:
        if redis_server.proc is None:
            redis_server.start()
        backend.flush_namespace()
        backend.close()
