"""WorkflowStore on Redis: each run operation is one script over the run's keys."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.core.dispatch import outgoing
from sideline.core.errors import RunExpired
from sideline.core.payload import Payload, decode, encode, raw_bytes
from sideline.core.ports import Delivery
from sideline.core.run import (
    FINISHED_TTL_S,
    RUN_INDEX_SIZE,
    SETTLED,
    Begin,
    FailedNode,
    NodeError,
    NodeStatus,
    Release,
    RunPlan,
    RunState,
    RunStatus,
    RunSummary,
    Transition,
    apply,
    next_expiry,
    summarize,
)
from sideline.core.workflow import Graph, Node

__all__ = ["RunOps"]


class RunOps(RedisBase):
    """Workflow runs: stored once per run, advanced atomically with the pushes they cause.

    A run that finishes succeeded or cancelled keeps only its run hash, holding its
    times and a "summary" field (JSON: node status counts and dead nodes); its other
    keys are deleted in the same script (see _lib.lua compact).
    """

    def _keys(self, run_id: str) -> list[str]:
        """The run's keys and, as KEYS[6], its memory (cleared when the run is compacted)."""
        return [*self.keys.run(run_id), self.keys.memory(run_id)]

    def create_run(self, state: RunState, transition: Transition, now: float) -> None:
        """Store a new run and push its entry nodes, in one script."""
        plan = state.plan
        started = state.copy()
        apply(started, transition, now)
        expires_at = next_expiry(started, transition, now + plan.ttl_s, now)
        graph = plan.graph
        run: dict[str, Any] = {
            "status": str(started.status), "created_at": num(started.created_at),
            "updated_at": num(now), "expires_at": num(expires_at), "ttl_s": plan.ttl_s,
            "finished_ttl_s": plan.finished_ttl_s, "keep_memory": int(plan.keep_memory),
            "failure_fired": int(started.failure_fired), "n": len(graph.nodes),
            "ok": sum(s is NodeStatus.SUCCEEDED for s in started.nodes),
            "blocking": 0,
            "settled": sum(s in SETTLED for s in started.nodes),
        }
        if started.finished_at is not None:
            run["finished_at"] = num(started.finished_at)
        for which, raw in (("on_success", plan.on_success), ("on_failure", plan.on_failure)):
            if raw is not None:
                run[which] = f"{decode(raw).queue}|{raw}"
        pushes = [[job.payload.queue, encode(job.payload), job.payload.jid,
                   False if job.at is None else num(job.at)]
                  for job in outgoing(plan, transition, now)]
        doc: dict[str, Any] = {
            "run": run,
            "nodes": [str(s) for s in started.nodes],
            "remaining": started.remaining,
            "graph": [_graph_field(node, plan.node_payloads[node.id]) for node in graph.nodes],
            "payloads": list(plan.node_payloads),
            "push": pushes,
            "expire_s": math.ceil(expires_at - now) + 60,
            "clear_memory": transition.compacts and not plan.keep_memory,
            "index": [plan.run_id, num(state.created_at), RUN_INDEX_SIZE],
        }
        if transition.compacts:  # an empty run is over at once: store only its summary
            doc.update(run=_summary_fields(summarize(started), expires_at), nodes=[],
                       remaining=[], graph=[], payloads=[])
        with translate("create_run"):
            self.scripts["create_run"](keys=self._keys(plan.run_id),
                                       args=[self.prefix, json.dumps(doc)])

    def begin_node(self, run_id: str, node_id: int, now: float) -> Begin:
        """Mark a node running, or say to skip it."""
        with translate("begin_node"):
            decision = self.scripts["begin_node"](keys=self.keys.run(run_id),
                                                  args=[self.prefix, run_id, node_id, num(now)])
        if decision == "expired":
            raise RunExpired.of(run_id)
        return Begin(decision)

    def complete_node(self, worker_id: str, delivery: Delivery, run_id: str, node_id: int,
                      now: float) -> Transition:
        """Ack, count the node once, push what became ready: one script."""
        keys = [*self._keys(run_id), self.keys.in_progress(worker_id, delivery.queue)]
        with translate("complete_node"):
            result = self.scripts["complete_node"](
                keys=keys, args=[self.prefix, run_id, node_id, num(now), raw_bytes(delivery.raw),
                                 worker_id])
        if result == "expired":
            raise RunExpired.of(run_id)
        return _transition(result)

    def fail_node(self, worker_id: str, delivery: Delivery, payload: Payload,
                  now: float) -> Transition:
        """Ack, dead-set the payload, mark the node dead and the run failed: one script."""
        run_id = payload.run_id or "-"
        keys = [*self._keys(run_id), self.keys.in_progress(worker_id, delivery.queue)]
        node = "" if payload.node_id is None else str(payload.node_id)
        error = NodeError(payload.error_class, payload.error_message)
        with translate("fail_node"):
            result = self.scripts["fail_node"](
                keys=keys,
                args=[self.prefix, run_id, node, num(now), raw_bytes(delivery.raw), payload.jid,
                      payload.queue, encode(payload), int(payload.dead), self.max_dead,
                      num(self.dead_ttl_s), json.dumps([error.error_class, error.error_message]),
                      worker_id])
        transition = _transition(result)
        if payload.node_id is not None and transition.nodes.get(payload.node_id) is NodeStatus.DEAD:
            transition = attrs.evolve(transition, errors={payload.node_id: error})
        return transition

    def cancel_run(self, run_id: str, now: float) -> bool:
        """Cancel a run."""
        with translate("cancel_run"):
            result = self.scripts["cancel_run"](keys=self._keys(run_id),
                                                args=[self.prefix, run_id, num(now)])
        if result == -1:
            raise RunExpired.of(run_id)
        return bool(result)

    def extend_run_ttl(self, run_id: str, ttl_s: int, now: float) -> bool:
        """Push back a run's expiry."""
        with translate("extend_run_ttl"):
            return bool(self.scripts["extend_run_ttl"](keys=self.keys.run(run_id),
                                                       args=[self.prefix, ttl_s, num(now)]))

    def get_run(self, run_id: str, now: float) -> RunState | RunSummary | None:
        """Read a run's state, or its summary once compacted (one MULTI/EXEC snapshot)."""
        return self._read_runs([run_id], now, "get_run")[0]

    def recent_runs(self, start: int, count: int, now: float) -> list[RunState | RunSummary]:
        """Up to `count` runs from position `start` of the runs index, newest first; the
        entries of runs that are gone are dropped (ZREM) and reading goes on past them."""
        index = self.keys("runs")
        found: list[RunState | RunSummary] = []
        position = start
        while len(found) < count:
            with translate("recent_runs"):
                run_ids = self.client.zrevrange(index, position, position + count - len(found) - 1)
            if not run_ids:
                break
            states = self._read_runs(run_ids, now, "recent_runs")
            gone = [run_id for run_id, state in zip(run_ids, states, strict=True) if state is None]
            if gone:
                with translate("recent_runs"):
                    self.client.zrem(index, *gone)
            found.extend(state for state in states if state is not None)
            position += len(run_ids) - len(gone)
        return found

    def _read_runs(self, run_ids: list[str], now: float,
                   operation: str) -> list[RunState | RunSummary | None]:
        """Each run's state or summary (None if gone), read in one MULTI/EXEC snapshot."""
        with translate(operation):
            pipe = self.client.pipeline(transaction=True)
            for run_id in run_ids:
                for key in self.keys.run(run_id):
                    pipe.hgetall(key)
            replies = pipe.execute()
        return [_read_run(run_id, replies[5 * i:5 * i + 5], now)
                for i, run_id in enumerate(run_ids)]


def _read_run(run_id: str, hashes: list[dict[str, str]],
              now: float) -> RunState | RunSummary | None:
    """A run's state from its hashes (Keys.run order); its summary once compacted; None if
    it is gone.

    The run hash holds per-node fields "error:<node>" (JSON [class, message]),
    "started:<node>", "ended:<node>" (s) and "attempts:<node>" (see _lib.lua set_node).
    """
    run, nodes, remaining, graph_fields, payloads = hashes
    if not run or float(run["expires_at"]) <= now:
        return None
    if "summary" in run:
        return _summary(run_id, run)
    count = int(run["n"])
    graph = _graph(graph_fields, payloads, count)
    plan = RunPlan(run_id, graph, tuple(payloads[str(i)] for i in range(count)),
                   _callback(run.get("on_success")), _callback(run.get("on_failure")),
                   int(run["ttl_s"]), int(run.get("finished_ttl_s", FINISHED_TTL_S)),
                   run.get("keep_memory") == "1")
    finished = run.get("finished_at")
    errors: dict[int, NodeError] = {}
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    attempts: dict[int, int] = {}
    for field, value in run.items():
        kind, _, node = field.partition(":")
        if kind == "error":
            errors[int(node)] = NodeError(*json.loads(value))
        elif kind == "started":
            started[int(node)] = float(value)
        elif kind == "ended":
            ended[int(node)] = float(value)
        elif kind == "attempts":
            attempts[int(node)] = int(value)
    return RunState(
        plan=plan, status=RunStatus(run["status"]),
        nodes=[NodeStatus(nodes[str(i)]) for i in range(count)],
        remaining=[int(remaining[str(i)]) for i in range(count)],
        created_at=float(run["created_at"]), updated_at=float(run["updated_at"]),
        finished_at=None if finished is None else float(finished),
        failure_fired=run.get("failure_fired") == "1", errors=errors, started_at=started,
        ended_at=ended, attempts=attempts)


def _summary_fields(summary: RunSummary, expires_at: float) -> dict[str, Any]:
    """The run hash of a compacted run, as _lib.lua compact writes it."""
    failed = [[f.node_id, f.job, json.dumps([f.error_class, f.error_message])]
              for f in summary.failed]
    return {"status": str(summary.status), "created_at": num(summary.created_at),
            "updated_at": num(summary.updated_at), "finished_at": num(summary.finished_at),
            "expires_at": num(expires_at),
            "summary": json.dumps({"counts": summary.counts, "failed": failed})}


def _summary(run_id: str, run: dict[str, str]) -> RunSummary:
    data = json.loads(run["summary"])
    counts = data["counts"] if isinstance(data["counts"], dict) else {}  # cjson: {} or []
    failed = []
    for node_id, job, error in data["failed"] if isinstance(data["failed"], list) else []:
        error_class, error_message = json.loads(error) if error else (None, None)
        failed.append(FailedNode(int(node_id), job, error_class, error_message))
    return RunSummary(run_id, RunStatus(run["status"]), float(run["created_at"]),
                      float(run["updated_at"]), float(run["finished_at"]),
                      {status: int(n) for status, n in sorted(counts.items())}, tuple(failed))


def _graph_field(node: Node, payload: str) -> str:
    # where the step's job is pushed when released: its payload's queue, which a run
    # started by Workflow.run has copied into the node already
    queue = node.queue if node.queue is not None else decode(payload).queue
    successors = ",".join(str(s) for s in node.successors)
    return f"{queue}|{node.delay_ms}|{int(node.allow_failure)}|{successors}"


def _graph(fields: dict[str, str], payloads: dict[str, str], count: int) -> Graph:
    parsed: list[tuple[str, int, bool, tuple[int, ...]]] = []
    predecessors = [0] * count
    for i in range(count):
        queue, delay, allow, succ = fields[str(i)].split("|", 3)
        successors = tuple(int(s) for s in succ.split(",") if s)
        for s in successors:
            predecessors[s] += 1
        parsed.append((queue, int(delay), allow == "1", successors))
    nodes = []
    for i, (queue, delay_ms, allow_failure, successors) in enumerate(parsed):
        payload = decode(payloads[str(i)])
        nodes.append(Node(id=i, job=payload.name, args=tuple(payload.args),
                          kwargs=dict(payload.kwargs), queue=queue, allow_failure=allow_failure,
                          delay_ms=delay_ms, successors=successors, predecessors=predecessors[i],
                          memory_ns=payload.memory_ns,
                          memory_reads=tuple(sorted(payload.memory_reads.items()))))
    return Graph(tuple(nodes))


def _callback(entry: str | None) -> str | None:
    return None if entry is None else entry.split("|", 1)[1]


def _transition(result: str) -> Transition:
    data = json.loads(result)

    def pairs(value: Any) -> list[list[Any]]:
        return value if isinstance(value, list) else []  # cjson writes {} for an empty list

    return Transition(
        nodes={int(i): NodeStatus(s) for i, s in pairs(data["nodes"])},
        remaining={int(i): int(c) for i, c in pairs(data["remaining"])},
        releases=tuple(Release(int(i), int(d)) for i, d in pairs(data["releases"])),
        status=RunStatus(data["status"]) if data["status"] else None,
        callback=data["callback"] or None,
        finished=bool(data["finished"]),
    )
