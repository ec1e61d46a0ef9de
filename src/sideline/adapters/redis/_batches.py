"""BatchStore on Redis: batch_push.lua stores and pushes; settle.lua counts (_lib.lua's
batch functions mirror core/batch.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.core.batch import (
    BATCH_INDEX_SIZE,
    BatchError,
    BatchFinished,
    BatchPush,
    BatchState,
    BatchView,
    NodeLink,
)
from sideline.core.payload import decode, encode

__all__ = ["BatchOps"]

_INDEX_CHUNK = 500
"""How many index entries recent_batches reads per round trip (while skipping to start)."""


class BatchOps(RedisBase):
    """Batches: created with their jobs in one script, read in one MULTI/EXEC."""

    def _batch_keys(self, bid: str) -> list[str]:
        base = self.keys("batch", bid)
        return [base, f"{base}:pending", f"{base}:failures", f"{base}:dead", f"{base}:children"]

    def push_batches(self, pushes: Sequence[BatchPush], now: float) -> None:
        """Store new batches, count and push their jobs, fire what fires (see BatchStore)."""
        document = [_push_document(push) for push in pushes]
        with translate("push_batches"):
            result = self.scripts["batch_push"](
                keys=[self.keys("batches")],
                args=[self.prefix, num(now), BATCH_INDEX_SIZE, json.dumps(document)])
        verdict, bid = ([*result, ""])[:2]
        if verdict == "finished":
            raise BatchFinished.of(bid)
        if verdict == "unknown":
            raise BatchError.unknown(bid)
        if verdict == "exists":
            raise BatchError(f"batch {bid} exists already")

    def get_batch(self, bid: str, now: float) -> BatchView | None:
        """The batch, or None if unknown or expired."""
        return self._read_batches([bid], now, "get_batch")[0]

    def recent_batches(self, start: int, count: int, now: float) -> list[BatchView]:
        """Batches newest first, skipping expired ones: `start` counts live batches (as
        the memory backend's does), so an expired batch never shifts a page; the index
        entries of batches that are gone are dropped (ZREM) as they are met."""
        index = self.keys("batches")
        found: list[BatchView] = []
        position, skip = 0, max(start, 0)
        while len(found) < count:
            want = min(skip + count - len(found), _INDEX_CHUNK)
            with translate("recent_batches"):
                bids = self.client.zrevrange(index, position, position + want - 1)
            if not bids:
                break
            views = self._read_batches(bids, now, "recent_batches")
            gone = [bid for bid, view in zip(bids, views, strict=True) if view is None]
            if gone:
                with translate("recent_batches"):
                    self.client.zrem(index, *gone)
            position += len(bids) - len(gone)
            live = [view for view in views if view is not None]
            found.extend(live[skip:][:count - len(found)])
            skip = max(skip - len(live), 0)
        return found

    def invalidate_batch(self, bid: str, now: float) -> bool:
        """Mark a batch invalid; False if unknown."""
        with translate("invalidate_batch"):
            return bool(self.scripts["batch_invalidate"](
                keys=[self.keys("batches")], args=[self.prefix, bid, num(now)]))

    def _read_batches(self, bids: Sequence[str], now: float,
                      operation: str) -> list[BatchView | None]:
        with translate(operation):
            pipe = self.client.pipeline(transaction=True)
            for bid in bids:
                hash_key, pending, failures, dead, children = self._batch_keys(bid)
                pipe.hgetall(hash_key)
                pipe.smembers(pending)
                pipe.hgetall(failures)
                pipe.smembers(dead)
                pipe.lrange(children, 0, -1)
            replies = pipe.execute()
        return [_view(bid, replies[5 * i:5 * i + 5], now) for i, bid in enumerate(bids)]


def _push_document(push: BatchPush) -> dict[str, Any]:
    spec = push.new
    new: dict[str, Any] | bool = False
    if spec is not None:
        new = {"description": spec.description, "parent": spec.parent or "",
               "callbacks": {event: f"{queue}|{raw}"
                             for event, (queue, raw) in spec.callbacks.items()},
               "options": {event: json.dumps(options, sort_keys=True)
                           for event, options in spec.options.items()},
               "ttl_s": spec.ttl_s, "linger_s": spec.linger_s,
               "node_run": spec.node.run_id if spec.node else "",
               "node_id": spec.node.node_id if spec.node else 0}
    jids = [p.jid for p in push.jobs] + [p.jid for p, _ in push.scheduled]
    return {"bid": push.bid, "new": new, "jids": jids,
            "jobs": [[p.queue, encode(p)] for p in push.jobs],
            "scheduled": [[p.jid, num(at), p.queue, encode(p)] for p, at in push.scheduled]}


def _number(value: str | None) -> float | None:
    return None if value is None else float(value)


def _view(bid: str, replies: list[Any], now: float) -> BatchView | None:
    fields, pending, failures, dead, children = replies
    if not fields or float(fields.get("expires_at", 0)) <= now:
        return None
    errors = {}
    for jid, text in failures.items():
        error_class, message = json.loads(text)
        errors[jid] = (str(error_class or ""), str(message or ""))
    state = BatchState(
        bid, fields.get("description", ""), fields.get("parent") or None,
        float(fields["created_at"]), int(fields.get("total", 0)), set(pending), errors,
        set(dead), list(children), int(fields.get("kids_incomplete", 0)),
        int(fields.get("kids_unsucceeded", 0)), _number(fields.get("complete_at")),
        _number(fields.get("success_at")), _number(fields.get("death_at")),
        fields.get("invalidated") == "1")
    callbacks, options = {}, {}
    for field, value in fields.items():
        if field.startswith("cb:"):
            callbacks[field[3:]] = decode(value.split("|", 1)[1]).name
        elif field.startswith("opt:"):
            options[field[4:]] = json.loads(value)
    node = None
    if fields.get("node_run"):
        node = NodeLink(fields["node_run"], int(fields["node_id"]))
    return BatchView(state, callbacks, options, float(fields["expires_at"]), node)
