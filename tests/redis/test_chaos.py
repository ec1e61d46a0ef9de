"""Chaos: workers SIGKILLed and restarted at random while 20 workflows run.

Three `sideline worker` processes (-c 4, heartbeat every 0.3 s, dead after 1.2 s, recovery
passes every 0.3 s) run 20 workflows of mixed shape (chains, groups, chains of groups,
random nestings of both, two Dags; some steps and sub-trees behind WithDelay of 10-50 ms),
about 2,000 steps of 0-5 ms. The runs are started spread over ~24 s, so that the kills
land while there is work. Meanwhile a supervisor thread SIGKILLs a random registered worker
every 1-2 s (preferring workers that hold jobs, when there are any) and starts a
replacement at once: alternately under the SAME instance id (the new incarnation takes
over its predecessor's jobs at start) and under a new one (a survivor recovers them once
the dead heartbeat expires). Killing stops when every run has finished (or after
KILL_DEADLINE_S); the survivors then finish whatever is left.

Right after each kill, before anyone can recover the dead worker's jobs (its heartbeat is
still fresh, which the snapshot checks), the test snapshots what the dead worker held: its
in-progress list. That is exactly what recovery will push again. Then it checks:

- every run succeeded, with every node succeeded, and every node ended at least once;
- no continuation ran twice: for each node, every start after the first is explained by a
  kill. The previous start was by a killed worker that still held the node when it died
  (it was running it, or had ended it but not yet completed it: the settling call is what
  takes a job off the in-progress list). The new start carries a higher `recoveries`
  count. Any other second start (a continuation pushed twice, a job recovered from a live
  worker) fails the test;
- every node that a killed worker had started and still held was started again later;
- order: no node started before each of its predecessors had ended at least once;
- `recoveries` never went past max_recoveries (3, the default, pinned in the workers'
  environment). The test keeps the default rather than raising it: a step lasts a few ms,
  so a job is recovered a second time only if the worker it was handed to is killed too
  before it settles. A 4th recovery would make it a poison pill, a dead step and a failed
  run; this check would then say why;
- the recovery log names only killed workers (no live worker was taken for dead);
- afterwards: nothing in progress, no dead or scheduled job, queues empty, every dead
  worker forgotten, and the survivors stop cleanly on SIGTERM.

SIDELINE_CHAOS_SEED=<n> replays the workflow shapes and the supervisor's choices (the
timing of the processes is not replayable).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sideline import App, Chain, Dag, Group, NodeStatus, RunStatus, Signature, WithDelay, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.core.payload import decode
from sideline.core.verify import order_violations
from sideline.core.workflow import DagStep, Graph, Step
from tests.redis.apps.jobs_app import build_app
from tests.redis.helpers import (
    REPO_ROOT,
    first_occurrences,
    in_progress_keys,
    read_events,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKERS = 3
CONCURRENCY = 4
MAX_RECOVERIES = 3
CHAOS_HEARTBEATS = {
    "SIDELINE_HEARTBEAT_INTERVAL_S": "0.3",
    "SIDELINE_HEARTBEAT_TTL_S": "1.2",
    "SIDELINE_RECOVERY_INTERVAL_S": "0.3",
    "SIDELINE_MAX_RECOVERIES": str(MAX_RECOVERIES),
}
QUEUE = "default"
RUNS = 20
STEPS_PER_RUN = 100
STEP_SLEEP_MS = (0, 5)
DELAY_MS = (10, 50)
SUBMIT_SPREAD_S = 24.0
KILL_EVERY_S = (1.0, 2.0)
KILL_DEADLINE_S = 90.0
FINISH_TIMEOUT_S = 30.0
REGISTER_TIMEOUT_S = 30.0
SETTLE_BEFORE_SNAPSHOT_S = 0.05

NodeKey = tuple[str, int]
"""(run id, node id)."""


# -- workflows ---------------------------------------------------------------------------


class Shapes:
    """Random workflow trees of exactly `STEPS_PER_RUN` steps; each step has its own label."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.labels = itertools.count()

    def step(self) -> Signature:
        return Signature("step", (f"s{next(self.labels)}", *STEP_SLEEP_MS))

    def delayed(self, step: Step, chance: float = 0.1) -> Step:
        if self.rng.random() < chance:
            return WithDelay(step, delay=self.rng.randint(*DELAY_MS))
        return step

    def chain(self, size: int) -> Step:
        return Chain(*(self.delayed(self.step()) for _ in range(size)))

    def group(self, size: int) -> Step:
        return Group(*(self.delayed(self.step()) for _ in range(size)))

    def chain_of_groups(self, size: int) -> Step:
        widths = self.split(size, size // 10)
        return Chain(*(self.delayed(self.group(width), 0.3) for width in widths))

    def nested(self, size: int, depth: int = 0) -> Step:
        """Chains of groups of chains..., alternating by depth, random widths and delays."""
        if size <= 3 or depth == 3:
            return self.chain(size) if depth % 2 == 0 else self.group(size)
        parts = self.split(size, self.rng.randint(2, min(5, size)))
        kind = Chain if depth % 2 == 0 else Group
        return kind(*(self.delayed(self.nested(part, depth + 1), 0.2) for part in parts))

    def dag(self, size: int) -> Step:
        """Each step after 1-3 of the 8 steps before it (the first three are entries); a
        few steps are groups of 3 or delayed."""
        dag = Dag()
        handles: list[DagStep] = []
        added = 0
        while added < size:
            width = 3 if size - added >= 3 and self.rng.random() < 0.1 else 1
            step: Step = self.group(width) if width > 1 else self.step()
            recent = handles[-8:]
            after = self.rng.sample(recent, min(len(recent), self.rng.randint(1, 3))) \
                if len(handles) >= 3 else []
            handles.append(dag.add(self.delayed(step), after=after))
            added += width
        return dag

    def split(self, total: int, parts: int) -> list[int]:
        """`total` as `parts` positive sizes."""
        cuts = sorted(self.rng.sample(range(1, total), parts - 1))
        return [b - a for a, b in itertools.pairwise([0, *cuts, total])]


def chaos_workflows(app: App, rng: random.Random) -> list[Workflow]:
    """Five chains, five groups, four chains of groups, four nestings, two Dags, shuffled."""
    shapes = Shapes(rng)
    builders = ([shapes.chain] * 5 + [shapes.group] * 5 + [shapes.chain_of_groups] * 4
                + [shapes.nested] * 4 + [shapes.dag] * 2)
    assert len(builders) == RUNS
    rng.shuffle(builders)
    return [Workflow(build(STEPS_PER_RUN), app=app) for build in builders]


# -- worker processes --------------------------------------------------------------------


@dataclass
class Proc:
    """One `sideline worker` process of the test."""

    popen: subprocess.Popen[bytes]
    instance_id: str
    log_path: Path
    started_at: float
    worker_id: str | None = None
    """The registry id "<instance>#<incarnation>", once the process registered."""
    killed: bool = False

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""


@dataclass(frozen=True)
class Kill:
    """A SIGKILL, and what the killed worker held in progress right after it died."""

    worker_id: str
    pid: int
    at: float
    expires_at: float
    """When the dead worker's last heartbeat expires: recovery passes wait for it."""
    held: frozenset[NodeKey]
    restarted_as_same_instance: bool


class Fleet:
    """Starts, registers, kills (with a snapshot) and finally stops the worker processes."""

    def __init__(self, backend: RedisBackend, directory: Path) -> None:
        self.backend = backend
        self.directory = directory
        self.procs: list[Proc] = []
        self.instance_ids = (f"chaos-{n}" for n in itertools.count())
        self._lock = threading.Lock()

    def new_instance_id(self) -> str:
        return next(self.instance_ids)

    def start(self, instance_id: str) -> Proc:
        """Launch a worker (not waiting for it to register)."""
        log_path = self.directory / f"worker-{len(self.procs):03d}-{instance_id}.log"
        command = [sys.executable, "-m", "sideline.cli", "worker", "--app",
                   "tests.redis.apps.jobs_app:app", "-i", instance_id, "-c", str(CONCURRENCY),
                   "-t", "5"]
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                command, cwd=REPO_ROOT, env=worker_env(self.backend.keys.namespace, CHAOS_HEARTBEATS),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        proc = Proc(popen, instance_id, log_path, time.monotonic())
        with self._lock:
            self.procs.append(proc)
        return proc

    def live(self) -> list[Proc]:
        with self._lock:
            return [p for p in self.procs if not p.killed and p.popen.poll() is None]

    def check_registrations(self) -> None:
        """Note the registry id of every started process that registered; fail on a process
        that exited by itself or did not register in time."""
        pending = [p for p in self.live() if p.worker_id is None]
        for proc in self.procs:
            if not proc.killed and proc.popen.poll() is not None:
                raise AssertionError(f"worker {proc.instance_id} (pid {proc.popen.pid}) exited "
                                     f"with {proc.popen.returncode}; log:\n{proc.log()}")
        if not pending:
            return
        by_pid = {w.info.get("pid"): w.worker_id
                  for w in self.backend.workers(time.time()) if w.alive}
        for proc in pending:
            proc.worker_id = by_pid.get(str(proc.popen.pid))
            if proc.worker_id is None and time.monotonic() - proc.started_at > REGISTER_TIMEOUT_S:
                raise AssertionError(f"worker {proc.instance_id} did not register within "
                                     f"{REGISTER_TIMEOUT_S} s; log:\n{proc.log()}")

    def wait_registered(self) -> None:
        def all_registered() -> bool:
            self.check_registrations()
            return all(p.worker_id is not None for p in self.live())

        wait_until(all_registered, REGISTER_TIMEOUT_S + 5, "the workers to register", 0.05)

    def kill(self, proc: Proc, same_instance: bool) -> Kill:
        """SIGKILL `proc`, then snapshot its in-progress list. The snapshot is exact only
        while the dead worker's heartbeat is fresh (no recovery pass can have touched its
        jobs yet, and its own incarnation is not restarted before the snapshot): checked."""
        assert proc.worker_id is not None
        proc.killed = True
        proc.popen.kill()
        proc.popen.wait(10)
        killed_at = time.time()
        # Whatever the process had already sent (a completion, a fetch) runs now.
        time.sleep(SETTLE_BEFORE_SNAPSHOT_S)
        pipe = self.backend.client.pipeline(transaction=True)
        pipe.zscore(self.backend.keys("workers"), proc.worker_id)
        pipe.lrange(self.backend.keys.in_progress(proc.worker_id, QUEUE), 0, -1)
        expires_at, raws = pipe.execute()
        taken_at = time.time()
        if expires_at is None or taken_at >= float(expires_at):
            raise AssertionError(
                f"the in-progress snapshot of killed worker {proc.worker_id} came "
                f"{taken_at - killed_at:.2f} s after the kill, when its heartbeat had expired "
                f"(expiry {expires_at}): recovery may have moved its jobs first")
        held = frozenset((p.run_id, p.node_id) for p in map(decode, raws)
                         if p.run_id is not None and p.node_id is not None)
        return Kill(proc.worker_id, proc.popen.pid, killed_at, float(expires_at), held,
                    same_instance)

    def stop_all(self, timeout_s: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every live worker; their exit codes by registry id."""
        live = self.live()
        for proc in live:
            proc.popen.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for proc in live:
            try:
                codes[proc.worker_id or proc.instance_id] = proc.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                codes[proc.worker_id or proc.instance_id] = None
        return codes

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
            proc.popen.wait(10)


class Supervisor(threading.Thread):
    """Every 1-2 s: SIGKILL a random registered worker, start its replacement at once,
    alternately under the same instance id and under a new one."""

    def __init__(self, fleet: Fleet, rng: random.Random, deadline: float) -> None:
        super().__init__(name="chaos-supervisor", daemon=True)
        self.fleet = fleet
        self.rng = rng
        self.deadline = deadline
        self.kills: list[Kill] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.rng.uniform(*KILL_EVERY_S)):
                if time.monotonic() > self.deadline:
                    return
                self.fleet.check_registrations()
                candidates = [p for p in self.fleet.live() if p.worker_id is not None]
                if not candidates:
                    continue
                victim = self.rng.choice(self.busy(candidates) or candidates)
                same = len(self.kills) % 2 == 0
                kill = self.fleet.kill(victim, same)
                self.kills.append(kill)
                self.fleet.start(victim.instance_id if same else self.fleet.new_instance_id())
        except BaseException as exc:
            self.error = exc

    def busy(self, candidates: list[Proc], patience_s: float = 0.5) -> list[Proc]:
        """The candidates holding jobs (waiting up to `patience_s` for one to): a kill
        that lands mid-job is the interesting one."""
        backend = self.fleet.backend
        deadline = time.monotonic() + patience_s
        while True:
            pipe = backend.client.pipeline(transaction=False)
            for proc in candidates:
                pipe.llen(backend.keys.in_progress(str(proc.worker_id), QUEUE))
            busy = [p for p, held in zip(candidates, pipe.execute(), strict=True) if held]
            if busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)
        assert not self.is_alive(), "the supervisor did not stop"

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"supervisor failed: {self.error}") from self.error


# -- checking the trace ------------------------------------------------------------------


@dataclass
class Verdict:
    """What the recorded events say."""

    problems: list[str] = field(default_factory=list)
    duplicates_open: int = 0
    """Second starts after a kill during the job (started, not ended)."""
    duplicates_unsettled: int = 0
    """Second starts after a kill between the job's end and its completion."""
    interrupted: int = 0
    """Jobs running (started, not ended) in a worker when it was killed."""
    max_recoveries: int = 0

    @property
    def duplicates(self) -> int:
        return self.duplicates_open + self.duplicates_unsettled


def check_events(graphs: dict[str, Graph], events: list[dict[str, Any]], kills: list[Kill],
                 max_recoveries: int) -> Verdict:
    verdict = Verdict()
    problems = verdict.problems
    by_worker = {kill.worker_id: kill for kill in kills}
    starts: dict[NodeKey, list[dict[str, Any]]] = defaultdict(list)
    ended: set[tuple[str, str, int]] = set()  # (worker, run, node)
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        key = (event["run"], event["node"])
        by_run[event["run"]].append(event)
        if event["kind"] == "start":
            starts[key].append(event)
            verdict.max_recoveries = max(verdict.max_recoveries, event["recoveries"])
        else:
            ended.add((event["worker"], *key))
    problems += [f"events of unknown run {run}" for run in by_run if run not in graphs]

    for run_id, graph in graphs.items():
        run_events = by_run.get(run_id, [])
        ends = Counter(e["node"] for e in run_events if e["kind"] == "end")
        known = {n.id for n in graph.nodes}
        problems += [f"run {run_id}: node {n.id} never ended" for n in graph.nodes if not ends[n.id]]
        problems += [f"run {run_id}: events of unknown node {n}"
                     for n in {e["node"] for e in run_events} - known]
        problems += [f"run {run_id}: {violation}"
                     for violation in order_violations(graph, first_occurrences(run_events))]

    # Every start after a node's first is explained by a kill of the previous starter.
    for (run_id, node), node_starts in starts.items():
        for previous, again in itertools.pairwise(node_starts):
            kill = by_worker.get(previous["worker"])
            where = (f"run {run_id} node {node}: started by {previous['worker']} "
                     f"(recoveries {previous['recoveries']}), then again by {again['worker']} "
                     f"(recoveries {again['recoveries']})")
            if kill is None:
                problems.append(f"{where}, but {previous['worker']} was never killed")
            elif (run_id, node) not in kill.held:
                problems.append(f"{where}, but {previous['worker']} no longer held it when "
                                f"it was killed")
            elif again["recoveries"] <= previous["recoveries"]:
                problems.append(f"{where}: the second start is not a recovered copy")
            elif (previous["worker"], run_id, node) in ended:
                verdict.duplicates_unsettled += 1
            else:
                verdict.duplicates_open += 1

    # What a killed worker was running when it died was started again by someone else.
    for kill in kills:
        for run_id, node in sorted(kill.held):
            node_starts = starts.get((run_id, node), [])
            mine = [i for i, e in enumerate(node_starts) if e["worker"] == kill.worker_id]
            if not mine:
                continue  # fetched (or prefetched) but not started: its first start is later
            if (kill.worker_id, run_id, node) not in ended:
                verdict.interrupted += 1
            if mine[-1] == len(node_starts) - 1:
                problems.append(f"run {run_id} node {node}: held by killed worker "
                                f"{kill.worker_id}, never started again")

    if verdict.max_recoveries > max_recoveries:
        problems.append(f"a job was recovered {verdict.max_recoveries} times "
                        f"(max_recoveries={max_recoveries})")
    return verdict


# -- the test ----------------------------------------------------------------------------


class Runs:
    """The runs started so far, and which have not finished."""

    def __init__(self, app: App, supervisor: Supervisor) -> None:
        self.app = app
        self.supervisor = supervisor
        self.graphs: dict[str, Graph] = {}
        self.pending: set[str] = set()

    def start(self, workflow: Workflow) -> None:
        run_id = workflow.run()
        self.graphs[run_id] = workflow.graph
        self.pending.add(run_id)

    def unfinished(self) -> set[str]:
        self.supervisor.check()
        for run_id in list(self.pending):
            if self.app.status(run_id).finished:
                self.pending.discard(run_id)
        return self.pending

    def start_spread(self, workflows: list[Workflow], began: float) -> None:
        """Start the workflows evenly over SUBMIT_SPREAD_S."""
        for index, workflow in enumerate(workflows):
            due = began + index * SUBMIT_SPREAD_S / (len(workflows) - 1)
            while time.monotonic() < due:
                self.unfinished()
                time.sleep(min(0.1, max(0.0, due - time.monotonic())))
            self.start(workflow)

    def wait(self, until: float) -> bool:
        """Wait until every run finished (True) or `until` passed (False)."""
        while self.unfinished():
            if time.monotonic() >= until:
                return False
            time.sleep(0.1)
        return True


def assert_all_succeeded(app: App, graphs: dict[str, Graph]) -> None:
    infos = {run_id: app.status(run_id) for run_id in graphs}
    assert {r: i.counts() for r, i in infos.items() if i.status is not RunStatus.SUCCEEDED} == {}
    # A succeeded run is compacted (no per-node states): its node counts must say that
    # every node of its graph succeeded.
    expected = {r: {str(NodeStatus.SUCCEEDED): len(g.nodes)} if g.nodes else {}
                for r, g in graphs.items()}
    assert {r: i.counts() for r, i in infos.items() if i.counts() != expected[r]} == {}


def assert_nothing_left(backend: RedisBackend, fleet: Fleet) -> None:
    """Once the dead workers' entries are recovered and forgotten: nothing in progress, no
    dead, scheduled or retried job, empty queues; then the survivors stop cleanly."""

    def clean() -> bool:
        alive = {p.worker_id for p in fleet.live()}
        registered = {w.worker_id for w in backend.workers(time.time())}
        return registered == alive and not in_progress_keys(backend)

    wait_until(clean, 15, "dead workers forgotten and nothing in progress", 0.1)
    assert backend.entries("dead") == []
    assert backend.entries("scheduled") == []
    assert backend.entries("retry") == []
    assert sum(backend.queue_sizes().values()) == 0
    codes = fleet.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    assert in_progress_keys(backend) == {}
    assert backend.workers(time.time()) == []


@pytest.fixture
def fleet(redis_ns: RedisBackend, tmp_path: Path) -> Iterator[Fleet]:
    workers = Fleet(redis_ns, tmp_path)
    try:
        yield workers
    finally:
        workers.kill_all()


def test_chaos_random_sigkills_and_restarts_while_workflows_run(
        redis_ns: RedisBackend, fleet: Fleet) -> None:
    backend = redis_ns
    seed = int(os.environ.get("SIDELINE_CHAOS_SEED") or random.randrange(2**32))
    print(f"\nchaos seed {seed} (SIDELINE_CHAOS_SEED={seed} replays the shapes and choices)")
    rng = random.Random(seed)
    app = build_app(backend.keys.namespace)
    supervisor: Supervisor | None = None
    try:
        workflows = chaos_workflows(app, rng)
        steps = sum(len(w.graph.nodes) for w in workflows)
        assert 1_800 <= steps <= 2_200, steps
        for _ in range(WORKERS):
            fleet.start(fleet.new_instance_id())
        fleet.wait_registered()

        began = time.monotonic()
        supervisor = Supervisor(fleet, random.Random(rng.random()), began + KILL_DEADLINE_S)
        supervisor.start()
        runs = Runs(app, supervisor)
        runs.start_spread(workflows, began)
        runs.wait(until=began + KILL_DEADLINE_S)
        supervisor.stop()
        supervisor.check()
        kills = supervisor.kills
        chaos_s = time.monotonic() - began

        # No more kills: the survivors (and the last replacement) finish what is left.
        fleet.wait_registered()
        assert runs.wait(until=time.monotonic() + FINISH_TIMEOUT_S), (
            f"runs not finished {FINISH_TIMEOUT_S} s after the kills stopped: "
            f"{[app.status(r).counts() for r in runs.pending]}")
        total_s = time.monotonic() - began
        assert_all_succeeded(app, runs.graphs)

        events = read_events(backend)
        verdict = check_events(runs.graphs, events, kills, MAX_RECOVERIES)
        assert not verdict.problems, "\n".join(verdict.problems[:40])
        recovered = app.recovered(1_000)
        taken_for_dead = {r.worker_id for r in recovered} - {k.worker_id for k in kills}
        assert not taken_for_dead, (
            f"jobs were recovered from workers that were never killed: {taken_for_dead} "
            f"(heartbeats late on a loaded machine?)")
        assert kills, "the supervisor never killed a worker"
        same = sum(k.restarted_as_same_instance for k in kills)
        assert same >= 1

        assert_nothing_left(backend, fleet)

        holding = sum(bool(k.held) for k in kills)
        # Moved before the dead heartbeat expired: only a new incarnation's takeover does that.
        expiry = {k.worker_id: k.expires_at for k in kills}
        taken_over = sum(r.recovered_at < expiry[r.worker_id] for r in recovered)
        starts = sum(e["kind"] == "start" for e in events)
        print(f"chaos: {len(runs.graphs)} runs, {steps} steps, {starts} starts, "
              f"{len(events) - starts} ends; {len(kills)} kills ({holding} holding jobs, "
              f"{verdict.interrupted} jobs interrupted mid-run), {len(kills)} restarts ({same} "
              f"same instance id, {len(kills) - same} new id); {verdict.duplicates} duplicate "
              f"starts, all explained by kills ({verdict.duplicates_open} killed mid-job, "
              f"{verdict.duplicates_unsettled} killed between end and completion); "
              f"{len(recovered)} jobs recovered ({taken_over} taken over at once by a restarted "
              f"incarnation, {len(recovered) - taken_over} after the heartbeat expired); max "
              f"recoveries {verdict.max_recoveries}; kills stopped after {chaos_s:.1f} s, "
              f"all done in {total_s:.1f} s")
    finally:
        if supervisor is not None and supervisor.is_alive():
            supervisor.stop()
        app.backend.close()
