"""A workflow run survives its Redis server going away and coming back.

The test owns a redis-server (append-only file fsynced on every write). An embedded worker
runs a chain of 30 steps; mid-run the server is stopped (SIGTERM), stays down ~1 s, and is
started again on the same port and directory. The worker's settling calls retry while Redis is
unreachable, its fetchers back off, the Lua scripts are reloaded into the fresh script cache,
and the run completes with every node succeeded, each step run exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from sideline import App, Chain, NodeStatus, RunStatus, Signature, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.core.verify import Event, order_violations
from tests.redis.helpers import RedisServer, in_progress_keys, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

STEPS = 30


def test_run_completes_across_a_redis_restart(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(redis_server.url, namespace=f"test-{uuid.uuid4().hex[:12]}")
    app = App(backend)
    trace: list[Event] = []
    lock = threading.Lock()

    @app.job(name="slow_step")
    def slow_step(index: int) -> None:
        with lock:
            trace.append(Event("start", index))
        time.sleep(0.03)
        with lock:
            trace.append(Event("end", index))

    workflow = Workflow(Chain(*(Signature("slow_step", (i,)) for i in range(STEPS))), app=app)
    worker = app.worker(concurrency=2, fetch_timeout_s=0.5, shutdown_timeout_s=5,
                        heartbeat_interval_s=0.5, heartbeat_ttl_s=2, recovery_interval_s=0.5)
    worker.start()
    try:
        run_id = workflow.run()
        wait_until(lambda: app.status(run_id).counts().get("succeeded", 0) >= 8, 20,
                   "8 steps to succeed")
        stopped_at = time.monotonic()
        redis_server.stop()
        done_before = sum(e.kind == "end" for e in trace)
        assert done_before < STEPS - 5, "the server must go away mid-run"
        time.sleep(1.0)
        redis_server.start()
        restarted_at = time.monotonic()
        info = app.wait(run_id, timeout_s=45)
        app_done = sum(e.kind == "end" for e in trace)
        print(f"\nserver down {restarted_at - stopped_at:.2f} s after {done_before} steps; run "
              f"finished {time.monotonic() - restarted_at:.2f} s after the restart")
        assert info.status is RunStatus.SUCCEEDED, info.counts()
        # A succeeded run is compacted: its node counts say every node succeeded.
        assert info.compacted
        assert info.counts() == {str(NodeStatus.SUCCEEDED): STEPS}
        assert app_done == STEPS
        assert order_violations(workflow.graph, trace) == []  # each step once, in order
        assert backend.entries("dead") == []
        assert in_progress_keys(backend) == {}
    finally:
        if redis_server.proc is None:  # failed while the server was down
            redis_server.start()
        worker.stop(10)
        backend.flush_namespace()
        backend.close()
