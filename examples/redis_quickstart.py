"""Quickstart on Redis: the same jobs and workflow as quickstart.py, stored in Redis.

Connects to SIDELINE_REDIS_URL (default redis://127.0.0.1:6379/0), in a namespace of
its own (so it never touches other keys), runs a workflow on an embedded 4-thread
worker, prints the run's status, and deletes every key of its namespace at the end.

Without a reachable Redis it prints that it needs one and exits 0 — or, when CI=true,
exits 1, so a CI run cannot pass by silently skipping it.
Run it with `python examples/redis_quickstart.py`.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid

from sideline import App, BackendError, Chain, Group, WithDelay, Workflow
from sideline.adapters.redis import RedisBackend, redis_url

# A namespace per run: every key is "{quickstart-<random>}:...", deleted at the end.
backend = RedisBackend.from_url(namespace=f"quickstart-{uuid.uuid4().hex[:8]}")
app = App(backend)

done: list[str] = []
_lock = threading.Lock()
greeted = threading.Event()


@app.job(name="quickstart.greet")
def greet(name: str) -> None:
    """A plain background job."""
    with _lock:
        done.append(f"greet {name}")
    greeted.set()


@app.job(name="quickstart.step")
def step(label: str) -> None:
    """A workflow step (jobs run on worker threads, hence the lock)."""
    with _lock:
        done.append(label)


def redis_is_reachable() -> bool:
    """Ask the backend for something; a BackendError says Redis is unreachable."""
    try:
        app.admin.queues()
    except BackendError as exc:
        print(exc, file=sys.stderr)
        return False
    return True


def main() -> int:
    """Run a job and a workflow on Redis; return the exit code."""
    if not redis_is_reachable():
        if os.environ.get("CI") == "true":
            print(f"redis_quickstart: FAILED: Redis at {redis_url()} is unreachable (CI=true)",
                  file=sys.stderr)
            return 1
        print(f"redis_quickstart needs a Redis server at {redis_url()} (set SIDELINE_REDIS_URL);"
              " skipped")
        return 0
    try:
        with app.worker(concurrency=4, queues=["default"]):
            jid = greet.enqueue("ada")
            print(f"pushed quickstart.greet as jid {jid}")
            tree = Chain(step.s("fetch"), Group(step.s("resize-a"), step.s("resize-b")),
                         WithDelay(step.s("publish"), delay=200))  # 200 milliseconds
            workflow = Workflow(tree)
            run_id = workflow.run()
            info = app.wait(run_id, timeout_s=15)  # seconds
            greeted_ok = greeted.wait(timeout=15)
        # A succeeded run is compacted: its node counts remain, per-node states are gone.
        print(f"workflow run {run_id}: {info.status} {info.counts()}")
        for node in workflow.graph.nodes:  # the compiled graph: each node's job and successors
            print(f"  node {node.id} {node.job}{list(node.args)} -> {list(node.successors)}")
        print("ran:", ", ".join(done))
        steps = [d for d in done if not d.startswith("greet")]
        ok = (greeted_ok and info.status == "succeeded" and steps[0] == "fetch"
              and steps[-1] == "publish")
    finally:
        deleted = backend.flush_namespace()
        backend.close()
        print(f"deleted {deleted} keys of namespace {backend.keys.namespace}")
    print("redis quickstart OK" if ok else "redis quickstart FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
