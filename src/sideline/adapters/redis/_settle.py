"""SettlePort on Redis: a Settlement carried out by one script, settle.lua."""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.adapters.redis._runs import _transition
from sideline.core.errors import RunExpired
from sideline.core.payload import encode, raw_bytes
from sideline.core.ports import STAT_DAY_TTL_S, STAT_MINUTE_TTL_S, Delivery, Settled
from sideline.core.results import JobState, ResultRecord
from sideline.core.run import NodeError, NodeStatus, Transition
from sideline.core.settlement import Action, NodeEvent, Settlement, stat_buckets

__all__ = ["SettleOps"]


class SettleOps(RedisBase):
    """The end of a job: every part of a Settlement, and the next fetch, in one script."""

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
        held = self.keys.held(worker_id, delivery)
        keys = [*self.keys.run(run_id), self.keys.memory(run_id), held,
                self.keys("lock", payload.unique_key if release and payload.unique_key else "-")]
        for queue in fetch_from:
            keys += [self.keys.queue(queue), self.keys.in_progress(worker_id, queue)]
        args: list[str | bytes | int] = [
            self.prefix, raw_bytes(delivery.raw), str(settlement.action), payload.jid,
            payload.queue, "" if settlement.action is Action.ACK else encode(payload),
            num(now if settlement.retry_at is None else settlement.retry_at),
            int(settlement.keep_dead), num(now), self.max_dead, num(self.dead_ttl_s),
            event, run_id, node, json.dumps([error.error_class, error.error_message]),
            token, settlement.processed, settlement.failed, minute, day,
            STAT_MINUTE_TTL_S, STAT_DAY_TTL_S, "1" if begin_next else "",
            payload.batch_id or "" if settlement.batch is not None else "",
            str(settlement.batch or ""),
            json.dumps([payload.error_class or "", payload.error_message or ""]),
            json.dumps(list(settlement.await_batches)) if settlement.await_batches else "",
            worker_id]
        if settlement.tracked:  # ARGV[29..32]; an untracked job sends none (settle.lua)
            args += _tracking(settlement)
        with translate("settle"):
            result = self.scripts["settle"](keys=keys, args=args)
        if result == "expired":
            raise RunExpired.of(run_id)
        transition = _transition(result[0]) if result[0] else Transition()
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
