"""Batches: jobs pushed together, counted as they end, with callbacks (core.batch).

    batch = app.batch(description="Upload images")
    batch.on("success", mark_visible.s(), options={"album": 7})
    with batch.jobs():
        for image in images:
            upload.enqueue(image)          # collected, pushed when the block ends

Every job enqueued inside `with batch.jobs():` joins the batch; when the block ends, the
batch and all its jobs are pushed in one atomic backend call (none if the block raised).
A `jobs()` block of a new batch opened inside another batch's block makes it that batch's
child; all of them go in the outermost block's one call. Opened from inside a workflow
step (outside any other block), a batch holds the step: its successors wait until the
batch succeeds, and the step dies if a job of the batch dies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from sideline.core.batch import (
    BATCH_LINGER_S,
    BATCH_TTL_S,
    BatchError,
    BatchPush,
    BatchSpec,
    BatchView,
    Callback,
    NodeLink,
)
from sideline.core.errors import ConfigurationError
from sideline.core.jobs import Signature, check_queue_name
from sideline.core.payload import Payload, check_json_native, encode
from sideline.runtime._env import new_id
from sideline.runtime.client import Client, Staging, staging
from sideline.runtime.middleware import _current

__all__ = ["Batch", "BatchStatus"]


@attrs.frozen
class BatchStatus:
    """What `Batch.status()` and the admin API say about a batch.

    Attributes:
        pending: jobs that have not succeeded yet (failed ones included).
        failures: how many of them failed at least once (`failed` holds their errors).
        failed: jid -> (error class, message) of each such job.
        dead: jids of the jobs that died.
        complete: every job ran once (and every child batch is complete).
        success: every job succeeded (and every child batch succeeded).
        callbacks: callback -> the job it runs; `options` what was given to `on`.
    """

    bid: str
    description: str
    parent: str | None
    children: tuple[str, ...]
    total: int
    pending: int
    failures: int
    failed: dict[str, tuple[str, str]]
    dead: tuple[str, ...]
    complete: bool
    success: bool
    invalidated: bool
    created_at: float
    complete_at: float | None
    success_at: float | None
    death_at: float | None
    expires_at: float
    callbacks: dict[str, str]
    options: dict[str, dict[str, Any]]
    run_id: str | None = None
    """The workflow run whose step opened the batch (dynamic fan-out), with `node_id`."""
    node_id: int | None = None

    @classmethod
    def of(cls, view: BatchView) -> BatchStatus:
        """The status of a stored batch."""
        state = view.state
        return cls(
            bid=state.bid, description=state.description, parent=state.parent,
            children=tuple(state.children), total=state.total, pending=len(state.pending),
            failures=len(state.failures), failed=dict(sorted(state.failures.items())),
            dead=tuple(sorted(state.dead)), complete=state.complete_at is not None,
            success=state.success_at is not None, invalidated=state.invalidated,
            created_at=state.created_at, complete_at=state.complete_at,
            success_at=state.success_at, death_at=state.death_at, expires_at=view.expires_at,
            callbacks=dict(view.callbacks), options={k: dict(v) for k, v in view.options.items()},
            run_id=view.node.run_id if view.node else None,
            node_id=view.node.node_id if view.node else None)


@attrs.define
class _Staged:
    batch: Batch
    new: BatchSpec | None
    jobs: list[Payload] = attrs.field(factory=list)
    scheduled: list[tuple[Payload, float]] = attrs.field(factory=list)

    def push(self) -> BatchPush:
        return BatchPush(self.batch.bid, self.new, tuple(self.jobs), tuple(self.scheduled))


class _Collector(Staging):
    """The jobs of the open `jobs()` blocks of one thread (or task), pushed as one call."""

    def __init__(self) -> None:
        self.staged: list[_Staged] = []
        self.open: list[_Staged] = []  # the blocks entered and not left, innermost last

    @property
    def bid(self) -> str:
        return self.open[-1].batch.bid

    def add(self, payload: Payload, at: float | None) -> None:
        target = self.open[-1]
        if at is None:
            target.jobs.append(payload)
        else:
            target.scheduled.append((payload, at))

    def payloads(self, since: int = 0) -> list[Payload]:
        return [p for s in self.staged[since:] for p in [*s.jobs, *(q for q, _ in s.scheduled)]]


class Batch:
    """A batch of jobs; made by `app.batch(...)`, or `current_job().batch` from inside one.

    Args:
        description: shown in the status, the CLI and the dashboard.
        parent: the bid of the batch this one is a child of (by default the batch whose
            `jobs()` block is open around this one's, if any).
        callback_queue: the queue callbacks are pushed to (default: each callback job's
            own queue; `on(..., queue=)` overrides both).
        ttl_s: seconds the batch is kept while it has not succeeded (default 30 days,
            pushed back by every addition).
        linger_s: seconds it is kept once it succeeded (default 24 hours).
    """

    def __init__(self, client: Client, bid: str | None = None, *, description: str = "",
                 parent: str | None = None, callback_queue: str | None = None,
                 ttl_s: int = BATCH_TTL_S, linger_s: int = BATCH_LINGER_S) -> None:
        if not isinstance(description, str):
            raise ConfigurationError(f"description must be a str, got {description!r}")
        for name, value in (("ttl_s", ttl_s), ("linger_s", linger_s)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"{name} takes whole seconds > 0, got {value!r}")
        if callback_queue is not None:
            check_queue_name(callback_queue)
        self.client = client
        self.bid = bid or new_id()
        self.description = description
        self.parent = parent
        self.callback_queue = callback_queue
        self.ttl_s = ttl_s
        self.linger_s = linger_s
        self.event: str | None = None
        self._callbacks: dict[str, tuple[Signature, str | None]] = {}
        self._options: dict[str, dict[str, Any]] = {}
        self._stored = bid is not None

    @classmethod
    def existing(cls, client: Client, bid: str, *, event: str | None = None) -> Batch:
        """The stored batch `bid` (not read until used); `event`: the callback being run."""
        batch = cls(client, bid)
        batch.event = event
        return batch

    def on(self, event: str, signature: Signature, options: dict[str, Any] | None = None, *,
           queue: str | None = None) -> Batch:
        """Run `signature` as a job when `event` ("success", "complete" or "death") fires.

        The job is called as `job(bid, *signature.args, **signature.kwargs)`; inside it,
        `current_job().batch` is this batch (`.status()`, `.options` = `options`). Set
        before the batch's first `jobs()` block; returns the batch, for chaining.

        Raises:
            BatchError: the event is unknown, or the batch was pushed already.
            SerializationError: `options` is not JSON-native.
        """
        if event not in {c.value for c in Callback}:
            raise BatchError(f"unknown batch callback {event!r}: use 'success', 'complete' "
                             "or 'death'")
        if not isinstance(signature, Signature):
            raise BatchError(f"on({event!r}, ...) takes a signature such as job.s(...), "
                             f"got {signature!r}")
        if self._stored:
            raise BatchError(f"batch {self.bid} was pushed already: set its callbacks before "
                             "its first jobs() block")
        self.client.registry.get(signature.job)  # UnknownJob now, not when it fires
        options = dict(options or {})
        check_json_native(options, f"options of the batch's {event} callback")
        if queue is not None:
            check_queue_name(queue)
        self._callbacks[event] = (signature, queue)
        self._options[event] = options
        return self

    @contextmanager
    def jobs(self) -> Iterator[Batch]:
        """Collect the jobs enqueued in the block; push them with the batch when it ends.

        Nothing is pushed if the block raises. Jobs enqueued with a delay join now and wait
        in the schedule set.

        Raises:
            BatchFinished: the batch (or the parent of a new one) is complete already;
                nothing was pushed.
            BatchError: an existing batch is unknown or expired.
        """
        outer = staging.get()
        collector = outer if isinstance(outer, _Collector) else _Collector()
        mark = len(collector.staged)
        entry = _Staged(self, None if self._stored else self._spec(collector))
        collector.staged.append(entry)
        collector.open.append(entry)
        reset = staging.set(collector) if collector is not outer else None
        self._stored = True  # callbacks are fixed from here on
        try:
            yield self
        except BaseException:
            self._abort(collector, mark)
            raise
        finally:
            collector.open.pop()
            if reset is not None:
                staging.reset(reset)
        if reset is not None:
            self._flush(collector)

    def _spec(self, collector: _Collector) -> BatchSpec:
        parent = self.parent
        if parent is None and collector.open:
            parent = collector.open[-1].batch.bid
        node = None
        context = _current.get()
        if parent is None and context is not None and context.payload.run_id is not None \
                and context.payload.node_id is not None:
            node = NodeLink(context.payload.run_id, context.payload.node_id)
        self.parent = parent
        callbacks = {}
        for event, (signature, queue) in self._callbacks.items():
            payload = self.client.build_payload(
                signature.job, [self.bid, *signature.args], dict(signature.kwargs),
                callback_of=self.bid, callback_event=event,
                **_queue(queue or self.callback_queue or signature.queue))
            callbacks[event] = (payload.queue, encode(payload))
        return BatchSpec(self.bid, self.description, parent, callbacks, dict(self._options),
                         self.ttl_s, self.linger_s, node)

    def _abort(self, collector: _Collector, mark: int) -> None:
        """Drop what this block (and blocks inside it) staged; free their unique locks."""
        for payload in collector.payloads(mark):
            if payload.unique_key is not None and payload.unique_token is not None:
                self.client.backend.release_lock(payload.unique_key, payload.unique_token)
        for staged in collector.staged[mark:]:
            if staged.new is not None:
                staged.batch._stored = False  # its callbacks may still change
        del collector.staged[mark:]

    def _flush(self, collector: _Collector) -> None:
        client = self.client
        payloads = collector.payloads()
        for payload in payloads:
            client.notify("before_enqueue", payload)
        try:
            client.backend.push_batches([s.push() for s in collector.staged],
                                        client.clock.now())
        except BaseException:
            self._abort(collector, 0)
            raise
        context = _current.get()
        if context is not None:
            context.opened.extend(s.batch.bid for s in collector.staged
                                  if s.new is not None and s.new.node is not None)
        for payload in payloads:
            client.notify("after_enqueue", payload)
        client.after_push()

    # -- reading and changing a stored batch ----------------------------------------------

    def _view(self) -> BatchView:
        view = self.client.backend.get_batch(self.bid, self.client.clock.now())
        if view is None:
            raise BatchError.unknown(self.bid)
        return view

    def status(self) -> BatchStatus:
        """The batch as stored now.

        Raises:
            BatchError: it is unknown (expired, or its jobs block has not ended yet).
        """
        return BatchStatus.of(self._view())

    @property
    def valid(self) -> bool:
        """False once the batch was invalidated (its jobs should skip their work)."""
        return not self._view().state.invalidated

    @property
    def options(self) -> dict[str, Any]:
        """In a callback job: the options given to `on` for the event being run."""
        if self.event is None:
            raise BatchError("options are those of a callback: read them inside a callback "
                             "job, or from status().options")
        return dict(self._view().options.get(self.event, {}))

    def invalidate(self) -> None:
        """Mark the batch invalid: its jobs see `current_job().batch.valid` false and
        should skip their work. Callbacks still fire as the jobs end.

        Raises:
            BatchError: the batch is unknown.
        """
        if not self.client.backend.invalidate_batch(self.bid, self.client.clock.now()):
            raise BatchError.unknown(self.bid)

    def __repr__(self) -> str:
        return f"Batch({self.bid!r}, description={self.description!r})"


def _queue(queue: str | None) -> dict[str, str]:
    return {} if queue is None else {"queue": queue}
