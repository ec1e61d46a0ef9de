"""The client: builds, checks and pushes payloads (enqueue now, at a time, in bulk).

The whole enqueue path: `Job.enqueue*` (runtime/jobs.py) -> `Client` (here: build and
check the payload, client middleware, the unique lock, observers) -> the backend port.
`App.enqueue*` and workflow runs use the same `Client`; it holds only what it uses (the
ports, the clock, the registry and the App's live middleware and observer lists), never
the App.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from sideline.core.clock import Clock
from sideline.core.errors import SerializationError
from sideline.core.jobs import Registry
from sideline.core.limits import limit_fields, resolve_key
from sideline.core.payload import MAX_PAYLOAD_BYTES, Payload, check_json_native, encode
from sideline.core.ports import Backend
from sideline.runtime import typed
from sideline.runtime._env import new_id
from sideline.runtime.middleware import ClientMiddleware, run_client_chain
from sideline.runtime.observers import Observer, notify

__all__ = ["Client", "Staging", "staging"]

log = logging.getLogger("sideline.client")


class Staging:
    """Where enqueued jobs go instead of the backend while a batch's `jobs()` block is
    open (runtime/batches.py): `bid` is the batch they join."""

    @property
    def bid(self) -> str:  # pragma: no cover (overridden)
        raise NotImplementedError

    def add(self, payload: Payload, at: float | None) -> None:  # pragma: no cover
        raise NotImplementedError


staging: contextvars.ContextVar[Staging | None] = contextvars.ContextVar(
    "sideline_batch_staging", default=None)
"""The open batch block of this thread or task, if any."""


class Client:
    """Pushes declared jobs: `build_payload`, `enqueue` (now or at a time), `enqueue_bulk`.

    Args:
        backend: the port jobs are pushed through.
        clock: the time of `created_at`, `enqueued_at` and delays.
        registry: the declared jobs (a payload's options come from its spec).
        middleware: client middleware, a live list (appends apply at once).
        observers: observers, a live list (`before_enqueue`, `after_enqueue`).
        after_push: called after each push (the App's inline testing mode runs the job).
    """

    def __init__(self, backend: Backend, clock: Clock, registry: Registry, *,
                 middleware: Sequence[ClientMiddleware], observers: Sequence[Observer],
                 after_push: Callable[[], None]) -> None:
        self.backend = backend
        self.clock = clock
        self.registry = registry
        self.middleware = middleware
        self.observers = observers
        self.after_push = after_push

    def build_payload(self, name: str, args: Sequence[Any], kwargs: dict[str, Any],
                      **fields: Any) -> Payload:
        """A payload for declared job `name`, with its options; arguments checked JSON-native.

        Raises:
            UnknownJob: `name` was not declared.
            SerializationError: an argument is not JSON-native (the message names it), or
                the payload would be over `MAX_PAYLOAD_BYTES`.
            SchemaError: a typed job's arguments do not fit its Input (for a workflow
                step, only the arguments given are checked: run memory adds the rest).
            ConfigurationError: the job's limit key cannot be built from its arguments
                (core.limits.resolve_key; a typed step's key sees only the arguments
                given, not those run memory adds).
        """
        spec = self.registry.get(name)
        for index, arg in enumerate(args):
            check_json_native(arg, f"{name} argument {index}")
        for key, value in kwargs.items():
            check_json_native(value, f"{name} keyword argument {key!r}")
        typed.check_arguments(spec, args, kwargs, partial=fields.get("run_id") is not None,
                              reads=fields.get("memory_reads"))
        options = spec.options
        fields.setdefault("jid", new_id())
        fields.setdefault("queue", options.queue)
        fields.setdefault("created_at", self.clock.now())
        if options.limit is not None and "limit_key" not in fields:
            fields.update(limit_fields(options.limit,
                                       resolve_key(options.limit, name, args, kwargs)))
        payload = Payload(name=name, args=list(args), kwargs=dict(kwargs), retry=options.retry,
                          dead=options.dead, timeout_s=options.timeout_s,
                          tags=list(options.tags), **fields)
        size = len(encode(payload).encode("utf-8"))
        if size > MAX_PAYLOAD_BYTES:
            raise SerializationError(
                f"{name}: the payload would be {size} bytes, over the limit of "
                f"{MAX_PAYLOAD_BYTES} (workers refuse larger ones); pass a reference such "
                "as an id or a URL instead of the data")
        return payload

    def through_middleware(self, payload: Payload) -> Payload | None:
        """`payload` as the client middleware leaves it; None if one dropped it."""
        return run_client_chain(self.middleware, payload)

    def enqueue(self, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                *, at: float | None = None, queue: str | None = None) -> str | None:
        """Push declared job `name` now (or at `at`); return its jid, None if middleware
        dropped it or an identical `unique_for` job is pending."""
        extra: dict[str, Any] = {"queue": queue} if queue is not None else {}
        batch = staging.get()
        if batch is not None:
            extra["batch_id"] = batch.bid
        payload = self.through_middleware(self.build_payload(name, args, kwargs or {}, **extra))
        if payload is None:
            return None
        now = self.clock.now()
        payload = self._lock_unique(payload, max(0.0, (at or now) - now))
        if payload is None:
            return None
        if batch is not None:  # pushed with its batch when the block ends
            later = at is not None and at > now
            batch.add(payload if later else attrs.evolve(payload, enqueued_at=now),
                      at if later else None)
            return payload.jid
        notify(self.observers, "before_enqueue", payload)
        if at is not None and at > now:
            self.backend.schedule(payload, at)
        else:
            payload = attrs.evolve(payload, enqueued_at=now)
            self.backend.push([payload])
        notify(self.observers, "after_enqueue", payload)
        self.after_push()
        return payload.jid

    def enqueue_bulk(self, name: str, arg_lists: Iterable[Sequence[Any]]) -> list[str]:
        """Push many jobs of one kind in a single backend call; return the pushed jids."""
        now = self.clock.now()
        batch = staging.get()
        extra = {} if batch is None else {"batch_id": batch.bid}
        payloads = []
        for args in arg_lists:
            payload = self.through_middleware(self.build_payload(name, args, {}, **extra))
            if payload is not None:
                payload = self._lock_unique(payload, 0.0)
            if payload is not None:
                payloads.append(attrs.evolve(payload, enqueued_at=now))
        if batch is not None:  # pushed with its batch when the block ends
            for payload in payloads:
                batch.add(payload, None)
            return [p.jid for p in payloads]
        for payload in payloads:
            notify(self.observers, "before_enqueue", payload)
        self.backend.push(payloads)
        for payload in payloads:
            notify(self.observers, "after_enqueue", payload)
        self.after_push()
        return [p.jid for p in payloads]

    def notify(self, hook: str, payload: Payload) -> None:
        """Tell the observers `hook` ("before_enqueue", "after_enqueue") about `payload`."""
        notify(self.observers, hook, payload)

    def _lock_unique(self, payload: Payload, delay_s: float) -> Payload | None:
        """Take the uniqueness lock of a unique_for job; None if another copy holds it."""
        unique_for_s = self.registry.get(payload.name).options.unique_for_s
        if not unique_for_s:
            return payload
        digest = hashlib.sha256(json.dumps(
            [payload.name, payload.queue, payload.args, payload.kwargs], sort_keys=True,
            separators=(",", ":")).encode()).hexdigest()[:32]
        key = f"unique:{digest}"
        token = self.backend.acquire_lock(key, unique_for_s + delay_s, self.clock.now())
        if token is None:
            log.info("not pushing %s: an identical job is already pending (unique_for=%s s)",
                     payload.name, unique_for_s)
            return None
        return attrs.evolve(payload, unique_key=key, unique_token=token)
