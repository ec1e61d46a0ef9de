"""BatchStore of the memory backend: batches counted by core.batch under the backend's
lock (the twin of the Redis batch functions in _lib.lua)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager

import attrs

from sideline.core.batch import (
    BATCH_INDEX_SIZE,
    BatchError,
    BatchEvent,
    BatchFinished,
    BatchPush,
    BatchSpec,
    BatchState,
    BatchView,
    Callback,
    NodeLink,
    add_callback,
    add_child,
    add_jobs,
    check,
    child_fired,
    job_ended,
)
from sideline.core.payload import Payload, decode, encode
from sideline.core.run import NodeError, Transition

__all__ = ["BatchOps"]


@attrs.define
class _Batch:
    state: BatchState
    spec: BatchSpec
    expires_at: float
    node_waits: bool = False
    """The step that opened it succeeded and waits for it (its `spec.node`)."""


class BatchOps:
    """A mixin of MemoryBackend: it uses the backend's lock, queues and runs."""

    _lock: threading.RLock
    _batches: dict[str, _Batch]
    _batch_index: dict[str, float]

    def _op(self, name: str) -> AbstractContextManager[None]:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _push_payload(self, payload: Payload, at: float | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _push_raw(self, queue: str, raw: str) -> None:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _run_complete(self, run_id: str, node_id: int,
                      now: float) -> Transition:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _run_fail(self, run_id: str, node_id: int, error: NodeError,
                  now: float) -> Transition:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _live_batch(self, bid: str, now: float) -> _Batch | None:
        batch = self._batches.get(bid)
        if batch is not None and batch.expires_at <= now:
            del self._batches[bid]
            self._batch_index.pop(bid, None)
            return None
        return batch

    # -- BatchStore ------------------------------------------------------------------------

    def push_batches(self, pushes: Sequence[BatchPush], now: float) -> None:
        """Store new batches, count and push their jobs, fire what fires (see BatchStore)."""
        with self._op("push_batches"):
            self._check_pushes(pushes, now)
            for push in pushes:
                if push.new is not None:
                    self._create(push.new, now)
                batch = self._batches[push.bid]
                add_jobs(batch.state, [p.jid for p in push.jobs]
                         + [p.jid for p, _ in push.scheduled])
                if batch.state.success_at is None:
                    batch.expires_at = max(batch.expires_at, now + batch.spec.ttl_s)
                for payload in push.jobs:
                    self._push_payload(payload, None)
                for payload, at in push.scheduled:
                    self._push_payload(payload, at)
            for push in reversed(pushes):  # children first: theirs fire up into parents
                self._fire(push.bid, check(self._batches[push.bid].state, now), now)

    def _check_pushes(self, pushes: Sequence[BatchPush], now: float) -> None:
        """Refuse the whole call before anything changes."""
        new = {push.bid for push in pushes if push.new is not None}
        for push in pushes:
            if push.new is not None:
                if self._live_batch(push.bid, now) is not None:
                    raise BatchError(f"batch {push.bid} exists already")
                parent = push.new.parent
                if parent is not None and parent not in new:
                    self._open_batch(parent, now, "child batches")
            else:
                self._open_batch(push.bid, now, "jobs")

    def _open_batch(self, bid: str, now: float, what: str) -> _Batch:
        batch = self._live_batch(bid, now)
        if batch is None:
            raise BatchError.unknown(bid)
        if batch.state.complete_at is not None:
            raise BatchFinished.of(bid, what)
        return batch

    def _create(self, spec: BatchSpec, now: float) -> None:
        self._batches[spec.bid] = _Batch(
            BatchState(spec.bid, spec.description, spec.parent, now), spec, now + spec.ttl_s)
        self._batch_index[spec.bid] = now
        if len(self._batch_index) > BATCH_INDEX_SIZE:  # the oldest (as ZREMRANGEBYRANK)
            del self._batch_index[min(self._batch_index, key=self._batch_order)]
        if spec.parent is not None:
            parent = self._batches[spec.parent]
            add_child(parent.state, spec.bid)
            if parent.state.success_at is None:  # a new child keeps its parent alive too
                parent.expires_at = max(parent.expires_at, now + parent.spec.ttl_s)

    def _fire(self, bid: str, fired: list[Callback], now: float) -> Transition:
        """Push the callbacks of `bid` that fired (a child's join its parent first, all of
        them, so the parent cannot fire before they ran), then count them in the parent,
        and so on up. Returns the change of a workflow step the batches held, if one
        moved."""
        batch = self._batches[bid]
        parent = batch.state.parent
        above = None if parent is None else self._live_batch(parent, now)
        for callback in fired:
            found = batch.spec.callbacks.get(callback)
            if found is not None:
                queue, raw = found
                job = attrs.evolve(decode(raw), enqueued_at=now)
                if above is not None:  # a child's callback runs as part of its parent
                    job = attrs.evolve(job, batch_id=above.state.bid)
                    add_callback(above.state, job.jid)
                self._push_raw(queue, encode(job))
            if callback is Callback.SUCCESS:
                batch.expires_at = now + batch.spec.linger_s
        moved = Transition()
        for callback in fired:
            step = self._fire_node(batch, callback, now)
            if above is not None:  # an expired parent is gone: it fires nothing
                up = self._fire(above.state.bid, child_fired(above.state, callback, now), now)
                step = step if up.noop else up
            moved = moved if step.noop else step
        return moved

    def _fire_node(self, batch: _Batch, callback: Callback, now: float) -> Transition:
        """A batch a waiting step opened: its success may complete the step, a death
        kills it."""
        link = batch.spec.node
        if link is None or not batch.node_waits:
            return Transition()
        if callback is Callback.DEATH:
            return self._run_fail(link.run_id, link.node_id, _death_error(batch.state), now)
        if callback is Callback.SUCCESS:
            return self._node_batch_done(link, now)
        return Transition()

    def _node_batch_done(self, link: NodeLink, now: float) -> Transition:
        waiting = [b for b in self._batches.values()
                   if b.spec.node == link and b.node_waits and b.state.success_at is None]
        return Transition() if waiting else self._run_complete(link.run_id, link.node_id, now)

    def _batch_settled(self, payload: Payload, event: BatchEvent, now: float) -> Transition:
        """settle's batch part: count a member job's ending; the change of a workflow step
        it moved, if any."""
        batch = self._live_batch(payload.batch_id or "", now)
        if batch is None:
            return Transition()
        error = (payload.error_class or "", payload.error_message or "")
        return self._fire(batch.state.bid,
                          job_ended(batch.state, payload.jid, event, error, now), now)

    def _await_batches(self, payload: Payload, bids: Sequence[str], now: float) -> Transition:
        """settle's part for a step that opened batches: it waits for them (completes now
        when all succeeded, dies when a job of one died)."""
        link = NodeLink(payload.run_id or "", payload.node_id or 0)
        dead: _Batch | None = None
        for bid in bids:
            batch = self._live_batch(bid, now)
            if batch is None:
                continue
            batch.node_waits = True
            if batch.state.death_at is not None and dead is None:
                dead = batch
        if dead is not None:
            return self._run_fail(link.run_id, link.node_id, _death_error(dead.state), now)
        return self._node_batch_done(link, now)

    def get_batch(self, bid: str, now: float) -> BatchView | None:
        """The batch, or None if unknown or expired."""
        with self._op("get_batch"):
            batch = self._live_batch(bid, now)
            return None if batch is None else _view(batch)

    def recent_batches(self, start: int, count: int, now: float) -> list[BatchView]:
        """Batches newest first, skipping expired ones."""
        with self._op("recent_batches"):
            newest = sorted(self._batch_index, key=self._batch_order, reverse=True)
            live = [b for b in (self._live_batch(bid, now) for bid in newest) if b is not None]
            return [_view(batch) for batch in live[start:start + count]]

    def _batch_order(self, bid: str) -> tuple[float, str]:
        """Order of the batches index: by created_at, then bid (as a Redis sorted set, so
        batches created together list in the same order on every backend)."""
        return self._batch_index[bid], bid

    def invalidate_batch(self, bid: str, now: float) -> bool:
        """Mark a batch invalid; False if unknown."""
        with self._op("invalidate_batch"):
            batch = self._live_batch(bid, now)
            if batch is None:
                return False
            batch.state.invalidated = True
            return True


def _death_error(state: BatchState) -> NodeError:
    """The error a step dies of when a job of its batch died (the first dead one found)."""
    for jid in sorted(state.dead):
        error_class, message = state.failures.get(jid, ("", ""))
        return NodeError("BatchJobDied",
                         f"batch {state.bid}: job {jid} died ({error_class}: {message})")
    return NodeError("BatchJobDied", f"batch {state.bid}: a job of a child batch died")


def _view(batch: _Batch) -> BatchView:
    state = batch.state
    copy = attrs.evolve(state, pending=set(state.pending), failures=dict(state.failures),
                        dead=set(state.dead), children=list(state.children))
    names = {event: decode(raw).name for event, (_queue, raw) in batch.spec.callbacks.items()}
    return BatchView(copy, names, dict(batch.spec.options), batch.expires_at, batch.spec.node)

