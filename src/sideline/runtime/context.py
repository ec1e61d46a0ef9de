"""The runtime context: what the worker side (executor, worker, housekeeping, orphan
recovery, drain) uses, frozen, built in one place (`App.runtime`, the composition root).

Modules on the worker side take a `Runtime` (or the few ports they use), never the whole
App: the App is the user's facade, not a service locator (DESIGN.md section 7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from sideline.core.clock import Clock, RandomSource
from sideline.core.jobs import JobSpec, Registry
from sideline.core.payload import Payload
from sideline.core.ports import Backend
from sideline.runtime.middleware import ServerMiddleware
from sideline.runtime.observers import Observer

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["DeathHandler", "Hooks", "Perform", "Runtime", "Settings"]

DeathHandler = Callable[[Payload, BaseException], None]
"""Called with the dead payload and the last error when a job exhausts its retries."""

Perform = Callable[[JobSpec, list[Any], dict[str, Any]], Any]
"""Calls a job's code directly: (spec, args, kwargs) -> its value."""


@attrs.frozen
class Settings:
    """The app-wide settings the worker side reads."""

    max_recoveries: int
    """A job recovered more often than this is a poison pill (goes to the dead set)."""
    run_ttl_s: int
    """How long a workflow run's state (and memory) lives after its last change."""


@attrs.frozen
class Hooks:
    """What is called when a job exhausts its retries, after its settlement is written.

    Both are the App's live collections: hooks added after a worker starts apply.
    """

    exhausted: Mapping[str, DeathHandler]
    """Per job name: the job's `on_exhausted` hook."""
    death_handlers: Sequence[DeathHandler]
    """Called for every job that exhausts its retries."""

    def for_job(self, name: str) -> list[DeathHandler]:
        """The hooks to call for job `name`, its own first."""
        own = self.exhausted.get(name)
        return [*([own] if own is not None else []), *self.death_handlers]


@attrs.frozen
class Runtime:
    """The worker side's context: ports, clock, randomness, registry, settings,
    middleware, observers and hooks.

    `server_middleware` and `observers` are the App's live lists (users may append to
    them after creating a worker). `app` is the user-facing facade, passed on only as
    `JobContext.app` for jobs and middleware; nothing on the worker side reads it.
    """

    backend: Backend
    clock: Clock
    random: RandomSource
    registry: Registry
    settings: Settings
    server_middleware: Sequence[ServerMiddleware]
    observers: Sequence[Observer]
    hooks: Hooks
    perform: Perform
    app: App
