"""The runtime context: what the worker side (executor, worker, housekeeping, orphan
recovery, drain) uses, frozen, built in one place (`App.runtime`, the composition root).

Modules on the worker side take a `Runtime` (or the few ports they use), never the whole
App: the App is the user's facade, not a service locator (DESIGN.md section 7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from sideline.core.clock import Clock, RandomSource
from sideline.core.jobs import JobSpec, Registry
from sideline.core.periodic import PeriodicEntry
from sideline.core.ports import Backend
from sideline.runtime.client import Client
from sideline.runtime.middleware import ServerMiddleware
from sideline.runtime.observers import DeathHandler, Observer

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["DeathHandler", "Perform", "Runtime", "Settings"]

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
class Runtime:
    """The worker side's context: ports, clock, randomness, registry, settings,
    middleware and observers.

    `server_middleware` is the App's live list and `observers` a live view of the App's
    death handlers (an observer) and its `observers` list (users may append to them
    after creating a worker). `app` is the user-facing facade, passed on only as
    `JobContext.app` for jobs and middleware; nothing on the worker side reads it.
    """

    backend: Backend
    clock: Clock
    random: RandomSource
    registry: Registry
    settings: Settings
    server_middleware: Sequence[ServerMiddleware]
    observers: Iterable[Observer]
    perform: Perform
    app: App
    client: Client
    """Pushes jobs (the periodic scheduler builds each tick's payload through it)."""
    periodic: Mapping[str, PeriodicEntry]
    """The app's periodic entries by name (every worker runs their scheduling loop)."""
    poller_tasks: Sequence[Callable[[], object]] = ()
    """Called by every worker's poller on each pass (`App.poller_tasks`)."""
