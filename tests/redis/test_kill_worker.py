"""SIGKILL a worker process mid-job: the other worker recovers its jobs and finishes the run.

Two `sideline worker` processes run a 200-node workflow (a chain of 20 groups of 10 steps).
Once some steps have run, one worker is killed with SIGKILL while one of its jobs is running.
Reliable fetch kept that job in the dead worker's in-progress list; when its heartbeat expires
the surviving worker moves it back to the queue and runs it. The run must succeed with the
graph's order respected and every continuation pushed exactly once: a node runs once, except
the nodes the killed worker held, which may run twice (never more).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from sideline import Chain, Group, NodeStatus, RunStatus, Signature, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from sideline.core.verify import order_violations
from sideline.core.workflow import Graph
from tests.redis.apps.jobs_app import build_app
from tests.redis.helpers import Spawn, first_occurrences, in_progress_keys, read_events, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

GROUPS, WIDTH = 20, 10


def open_starts(events: list[dict[str, Any]], pid: int) -> set[int]:
    """Nodes the process `pid` started and has not ended."""
    started = {e["node"] for e in events if e["pid"] == pid and e["kind"] == "start"}
    ended = {e["node"] for e in events if e["pid"] == pid and e["kind"] == "end"}
    return started - ended


def check_trace(graph: Graph, events: list[dict[str, Any]], *, held: set[int | None],
                interrupted: set[int], victim_pid: int, survivor_pid: int) -> None:
    """The recorded events of a run in which the victim was killed holding `held`."""
    starts = Counter(e["node"] for e in events if e["kind"] == "start")
    ends = Counter(e["node"] for e in events if e["kind"] == "end")
    assert {e["pid"] for e in events} == {victim_pid, survivor_pid}, "both workers ran steps"
    # Every node ended at least once.
    assert [n.id for n in graph.nodes if ends[n.id] < 1] == []
    # Continuations exactly once: a node's payload was pushed once, so it started once,
    # unless the killed worker held it; then its recovery may start it a second time.
    assert set(starts) == {n.id for n in graph.nodes}
    assert {n: c for n, c in starts.items() if c != 1 and n not in held} == {}
    assert {n: c for n, c in starts.items() if c > 2} == {}
    # The interrupted jobs were run again, to completion, by the survivor.
    for node in interrupted:
        assert starts[node] == 2, (node, starts[node])
        assert any(e["kind"] == "end" and e["node"] == node and e["pid"] == survivor_pid
                   for e in events), node
    # Recovery marked what it moved: only the survivor's runs of held nodes were recovered.
    assert [e for e in events if e["kind"] == "start"
            and e["recoveries"] != int(e["node"] in held and e["pid"] == survivor_pid)] == []
    # Order: no node started before all its predecessors had ended at least once.
    assert order_violations(graph, first_occurrences(events)) == []


def test_sigkill_mid_job_other_worker_recovers_and_finishes_the_run(
        redis_ns: RedisBackend, spawn: Spawn) -> None:
    backend = redis_ns
    app = build_app(backend.keys.namespace)
    try:
        victim = spawn("victim", ["-c", "3", "-t", "5"])
        survivor = spawn("survivor", ["-c", "3", "-t", "5"])
        tree = Chain(*(Group(*(Signature("step", (f"{g}.{i}",)) for i in range(WIDTH)))
                       for g in range(GROUPS)))
        workflow = Workflow(tree, app=app)
        graph = workflow.graph
        assert len(graph.nodes) == GROUPS * WIDTH
        started_at = time.monotonic()
        run_id = workflow.run()

        def victim_mid_job() -> set[int]:
            # Decide from the events alone, so the kill follows the read at once.
            events = read_events(backend)
            ended = sum(e["kind"] == "end" for e in events)
            running = open_starts(events, victim.pid) if ended >= 40 else set()
            if not running and app.status(run_id).finished:
                raise AssertionError("the run finished before the victim could be killed")
            return running

        wait_until(victim_mid_job, 30, "the victim to be running a job after 40 steps", 0.001)
        victim.proc.kill()  # SIGKILL: no shutdown code runs
        assert victim.wait(10) == -signal.SIGKILL
        killed_at = time.monotonic()

        # What reliable fetch kept for the dead worker (read before recovery moves it).
        held = {decode(raw).node_id for raw in backend.in_progress(victim.worker_id)}
        events_at_kill = read_events(backend)
        interrupted = open_starts(events_at_kill, victim.pid)
        assert interrupted, "the victim was not running any job when it was killed"
        assert interrupted <= held, (interrupted, held)

        info = app.wait(run_id, timeout_s=60)
        finished_at = time.monotonic()
        print(f"\n200-node run: victim killed {killed_at - started_at:.2f} s in while running "
              f"nodes {sorted(interrupted)} (held {sorted(held)}); run finished "
              f"{finished_at - killed_at:.2f} s after the kill")
        assert info.status is RunStatus.SUCCEEDED, info.counts()
        # A succeeded run is compacted (no per-node states): its node counts must say
        # every one of the GROUPS * WIDTH nodes succeeded.
        assert info.compacted
        assert info.nodes == ()
        assert info.counts() == {str(NodeStatus.SUCCEEDED): len(graph.nodes)}, info.counts()

        check_trace(graph, read_events(backend), held=held, interrupted=interrupted,
                    victim_pid=victim.pid, survivor_pid=survivor.pid)

        # Nothing left behind: no in-progress job, no dead job, the dead worker forgotten.
        assert in_progress_keys(backend) == {}
        assert backend.entries("dead") == []
        assert sum(backend.queue_sizes().values()) == 0
        assert victim.worker_id not in {w.worker_id for w in backend.workers(time.time())}

        survivor.signal(signal.SIGTERM)
        assert survivor.wait(15) == 0, survivor.log()
        assert in_progress_keys(backend) == {}
    finally:
        app.backend.close()
