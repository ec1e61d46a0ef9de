"""SettlePort on Redis: a Settlement carried out by one script, settle.lua."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import attrs

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.adapters.redis._combine import Combiner
from sideline.adapters.redis._runs import _transition
from sideline.core.errors import RunExpired
from sideline.core.payload import encode, raw_bytes
from sideline.core.ports import STAT_DAY_TTL_S, STAT_MINUTE_TTL_S, Delivery, Settled
from sideline.core.results import JobState, ResultRecord
from sideline.core.run import NodeError, NodeStatus, Transition
from sideline.core.settlement import Action, NodeEvent, Settlement, stat_buckets

__all__ = ["SettleOps"]


_NO_NODE_ERROR = json.dumps([None, None])  # a step's error record when it has none
_NO_ERROR = json.dumps(["", ""])  # a batch member's error when it has none
_NO_TRANSITION = Transition()  # frozen: one for every settle that changed no run


class SettleOps(RedisBase):
    """The end of a job: every part of a Settlement, and the next fetch, in one script."""

    def _run_keys(self, run_id: str) -> list[str]:
        """KEYS[1..6] of settle.lua: the run's five keys and its memory ("-": no run)."""
        if run_id == "-":
            return self._no_run_keys
        return [*self.keys.run(run_id), self.keys.memory(run_id)]

    @cached_property
    def _no_run_keys(self) -> list[str]:
        return [*self.keys.run("-"), self.keys.memory("-")]

    @cached_property
    def _no_lock(self) -> str:
        return self.keys("lock", "-")

    @cached_property
    def _combiner(self) -> Combiner:
        """Puts the settles of threads that settle at the same time into one call."""
        settle, settle_many = self.scripts["settle"], self.scripts["settle_many"]

        def one(keys: list[Any], args: list[Any]) -> Any:
            return settle(keys=keys, args=args)

        def many(items: Sequence[tuple[list[Any], list[Any]]]) -> list[Any]:
            # settle_many.lua: the count, each settle's key and argument counts, then
            # every settle's keys and arguments in order
            counts = [count for keys, args in items for count in (len(keys), len(args))]
            reply: list[Any] = settle_many(
                keys=[key for keys, _ in items for key in keys],
                args=[len(items), *counts, *(arg for _, args in items for arg in args)])
            return reply

        return Combiner(one, many)

    def settle(self, worker_id: str, delivery: Delivery, settlement: Settlement, now: float,
               fetch_from: Sequence[str] = (), *, begin_next: bool = False) -> Settled:
        """Apply `settlement` atomically, then fetch at most one job (see SettlePort)."""
        payload = settlement.payload
        step = payload.run_id is not None and payload.node_id is not None
        event = str(settlement.node) if settlement.node is not None and step else ""
        run_id = payload.run_id or "-"
        node = "" if payload.node_id is None else str(payload.node_id)
        error = NodeError(payload.error_class, payload.error_message)  # as fail_node keeps it
        release = settlement.release_unique and payload.unique_key is not None
        token = (payload.unique_token or "") if release else ""
        minute, day = stat_buckets(now)
        keys = [*self._run_keys(run_id), self.keys.held(worker_id, delivery),
                self.keys("lock", payload.unique_key) if release and payload.unique_key
                else self._no_lock]
        for queue in fetch_from:
            keys += [self.keys.queue(queue), self.keys.in_progress(worker_id, queue)]
        failed = payload.error_class is not None or payload.error_message is not None
        args: list[str | bytes | int] = [
            self.prefix, raw_bytes(delivery.raw), str(settlement.action), payload.jid,
            payload.queue, "" if settlement.action is Action.ACK else encode(payload),
            num(now if settlement.retry_at is None else settlement.retry_at),
            int(settlement.keep_dead), num(now), self.max_dead, num(self.dead_ttl_s),
            event, run_id, node,
            json.dumps([error.error_class, error.error_message]) if failed else _NO_NODE_ERROR,
            token, settlement.processed, settlement.failed, minute, day,
            STAT_MINUTE_TTL_S, STAT_DAY_TTL_S, "1" if begin_next else "",
            payload.batch_id or "" if settlement.batch is not None else "",
            str(settlement.batch or ""),
            json.dumps([payload.error_class or "", payload.error_message or ""]) if failed
            else _NO_ERROR,
            json.dumps(list(settlement.await_batches)) if settlement.await_batches else "",
            worker_id]
        if settlement.tracked:  # ARGV[29..32]; an untracked job sends none (settle.lua)
            args += _tracking(settlement)
        with translate("settle"):
            if self.scripts.caller.combines():
                result = self._combiner.call(keys, args)
            else:
                result = self.scripts["settle"](keys=keys, args=args)
        if result == "expired":
            raise RunExpired.of(run_id)
        transition = _transition(result[0]) if result[0] else _NO_TRANSITION
        if (event == NodeEvent.FAILED and payload.node_id is not None
                and transition.nodes.get(payload.node_id) is NodeStatus.DEAD):
            transition = attrs.evolve(transition, errors={payload.node_id: error})
        fetched = None
        if len(result) == 4:
            fetched = Delivery(result[2], fetch_from[int(result[1]) - 1], begun=result[3] or None)
        return Settled(transition, fetched)

    def stats(self, names: Sequence[str]) -> dict[str, int]:
        """The counters `names`, 0 for one that is absent (or expired)."""
        if not names:
            return {}
        with translate("stats"):
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.get(self.keys("stat", name))
            values = pipe.execute()
        return {name: int(value or 0) for name, value in zip(names, values, strict=True)}


def _tracking(settlement: Settlement) -> list[str | bytes | int]:
    """settle.lua's ARGV[29..32] for a job that stores its result: the TTL, its state, its
    result record and a retry's count (see _lib.lua store_result)."""
    if settlement.action is Action.RETRY:
        return [settlement.result_ttl_s, str(JobState.RETRYING), "",
                settlement.payload.retry_count]
    if settlement.result is not None:
        state = ResultRecord.decode(settlement.result).state
    else:  # a settlement built by hand without its record: its action says
        state = JobState.FAILED if settlement.action is Action.BURY else JobState.SUCCEEDED
    return [settlement.result_ttl_s, str(state), settlement.result or "", ""]
