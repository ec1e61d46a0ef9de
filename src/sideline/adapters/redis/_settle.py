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
from sideline.core.settlement import Action, NodeEvent, Settlement, check_acks, stat_buckets

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
        settle = self.scripts["settle"]

        def one(keys: list[Any], args: list[Any]) -> Any:
            return settle(keys=keys, args=args)

        return Combiner(one, self._settle_many)

    def _settle_many(self, items: Sequence[tuple[list[Any], list[Any]]]) -> list[Any]:
        """Several settles in one call (settle_many.lua): one reply per settle, an error
        reply as the exception it raises."""
        # settle_many.lua: the count, each settle's key and argument counts, then every
        # settle's keys and arguments in order
        counts = [count for keys, args in items for count in (len(keys), len(args))]
        reply: list[Any] = self.scripts["settle_many"](
            keys=[key for keys, _ in items for key in keys],
            args=[len(items), *counts, *(arg for _, args in items for arg in args)])
        return reply

    def settle(self, worker_id: str, delivery: Delivery, settlement: Settlement, now: float,
               fetch_from: Sequence[str] = (), *, begin_next: bool = False) -> Settled:
        """Apply `settlement` atomically, then fetch at most one job (see SettlePort)."""
        keys, args = self._settle_call(worker_id, delivery, settlement, now, fetch_from,
                                       begin_next=begin_next)
        with translate("settle"):
            if self.scripts.caller.combines():
                result = self._combiner.call(keys, args)
            else:
                result = self.scripts["settle"](keys=keys, args=args)
        payload = settlement.payload
        if result == "expired":
            raise RunExpired.of(payload.run_id or "-")
        transition = _transition(result[0]) if result[0] else _NO_TRANSITION
        if (settlement.node is NodeEvent.FAILED and payload.node_id is not None
                and payload.run_id is not None
                and transition.nodes.get(payload.node_id) is NodeStatus.DEAD):
            error = NodeError(payload.error_class, payload.error_message)  # as fail_node keeps it
            transition = attrs.evolve(transition, errors={payload.node_id: error})
        return Settled(transition, _fetched(result, fetch_from))

    def settle_acks(self, worker_id: str, acks: Sequence[tuple[Delivery, Settlement]],
                    now: float, fetch_from: Sequence[str] = (), fetch: int = 0, *,
                    begin_next: bool = False) -> list[Delivery]:
        """Write plain acks in one call (settle_many.lua), the first `fetch` of them each
        taking a next job (see SettlePort)."""
        check_acks(acks, fetch)
        calls = [self._settle_call(worker_id, delivery, settlement, now,
                                   fetch_from if index < fetch else (), begin_next=begin_next)
                 for index, (delivery, settlement) in enumerate(acks)]
        with translate("settle"):
            if len(calls) > 1 and self.scripts.caller.functions:
                replies = self._settle_many(calls)
            else:  # settle_many is a function only: a server without them settles one by one
                replies = [self.scripts["settle"](keys=keys, args=args) for keys, args in calls]
            for reply in replies:
                if isinstance(reply, Exception):  # not for a plain ack; what the others
                    raise reply  # took stays held until reconcile pushes it back
        return [fetched for reply in replies
                if (fetched := _fetched(reply, fetch_from)) is not None]

    def _settle_call(self, worker_id: str, delivery: Delivery, settlement: Settlement,
                     now: float, fetch_from: Sequence[str], *, begin_next: bool
                     ) -> tuple[list[Any], list[Any]]:
        """settle.lua's keys and arguments for one settle."""
        payload = settlement.payload
        step = payload.run_id is not None and payload.node_id is not None
        event = str(settlement.node) if settlement.node is not None and step else ""
        run_id = payload.run_id or "-"
        node = "" if payload.node_id is None else str(payload.node_id)
        release = settlement.release_unique and payload.unique_key is not None
        token = (payload.unique_token or "") if release else ""
        minute, day = stat_buckets(now)
        keys = [*self._run_keys(run_id), self.keys.held(worker_id, delivery),
                self.keys("lock", payload.unique_key) if release and payload.unique_key
                else self._no_lock]
        for queue in fetch_from:
            keys += [self.keys.queue(queue), self.keys.in_progress(worker_id, queue)]
        failed = payload.error_class is not None or payload.error_message is not None
        args: list[Any] = [
            self.prefix, raw_bytes(delivery.raw), str(settlement.action), payload.jid,
            payload.queue, "" if settlement.action is Action.ACK else encode(payload),
            num(now if settlement.retry_at is None else settlement.retry_at),
            int(settlement.keep_dead), num(now), self.max_dead, num(self.dead_ttl_s),
            event, run_id, node,
            json.dumps([payload.error_class, payload.error_message]) if failed
            else _NO_NODE_ERROR,
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
        return keys, args

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


def _fetched(reply: list[Any], fetch_from: Sequence[str]) -> Delivery | None:
    """The job a settle took for its caller, from settle.lua's reply."""
    if len(reply) != 4:
        return None
    return Delivery(reply[2], fetch_from[int(reply[1]) - 1], begun=reply[3] or None)


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
