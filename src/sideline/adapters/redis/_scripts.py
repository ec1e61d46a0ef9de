"""Load the Lua scripts shipped as package data and register them on a client."""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from sideline.core.batch import BatchEvent, Callback
from sideline.core.limits import MAX_COUNT, PARK_PER_FETCH
from sideline.core.run import (
    FINISHED_TTL_S,
    RUN_TTL_HEADROOM,
    SETTLED,
    STOPPABLE,
    NodeStatus,
    RunStatus,
)
from sideline.core.settlement import NodeEvent

__all__ = ["SCRIPT_NAMES", "Scripts", "prelude"]

SCRIPT_NAMES = (
    "admin_kill",
    "admin_retry_now",
    "admin_signal",
    "batch_invalidate",
    "batch_push",
    "begin_node",
    "cancel_run",
    "claim",
    "complete_node",
    "create_run",
    "drop_held",
    "extend_run_ttl",
    "fail_node",
    "fetch",
    "forget_worker",
    "heartbeat",
    "kill",
    "limit_view",
    "memory_write",
    "move_due",
    "periodic_fire",
    "periodic_sync",
    "push",
    "push_once",
    "recover_job",
    "release_lock",
    "requeue",
    "retry_dead",
    "retry_later",
    "schedule",
    "settle",
)

_WORD = re.compile(r"^[a-z_]+$")


def _quote(value: str) -> str:
    if not _WORD.match(value):
        raise ValueError(f"{value!r} cannot be a Lua prelude constant: use [a-z_]+")
    return f"'{value}'"


def _enum_table(name: str, members: type[enum.StrEnum]) -> str:
    fields = ", ".join(f"{m.name} = {_quote(m.value)}" for m in members)
    return f"local {name} = {{{fields}}}  -- {members.__module__}.{members.__qualname__}"


def _set_table(name: str, statuses: Iterable[NodeStatus]) -> str:
    fields = ", ".join(f"[{_quote(s.value)}] = true" for s in sorted(statuses))
    return f"local {name} = {{{fields}}}  -- sideline.core.run.{name}"


def prelude() -> str:
    """The Lua constants generated from core (statuses, status sets, default TTLs, limits).

    Prepended to every script before `_lib.lua`, so the Lua state machine reads the same
    values as core.run instead of copies that could drift.
    """
    return "\n".join((
        "-- ==== prelude: generated from core by adapters/redis/_scripts.py ====",
        _enum_table("NODE", NodeStatus),
        _enum_table("RUN", RunStatus),
        _enum_table("EVENT", NodeEvent),
        _enum_table("BATCH", BatchEvent),
        _enum_table("CALLBACK", Callback),
        _set_table("SETTLED", SETTLED),
        _set_table("STOPPABLE", STOPPABLE),
        f"local FINISHED_TTL_S = {int(FINISHED_TTL_S)}  -- sideline.core.run.FINISHED_TTL_S",
        f"local RUN_TTL_HEADROOM = {RUN_TTL_HEADROOM!r}  -- sideline.core.run.RUN_TTL_HEADROOM",
        f"local PARK_PER_FETCH = {PARK_PER_FETCH}  -- sideline.core.limits.PARK_PER_FETCH",
        f"local MAX_COUNT = {MAX_COUNT}  -- sideline.core.limits.MAX_COUNT",
    ))


def _source(name: str) -> str:
    return (resources.files("sideline.adapters.redis") / "lua" / f"{name}.lua").read_text("utf-8")


class LuaScript:
    """One script, run by EVALSHA straight through the client's `execute_command` (the
    hot path: redis-py's Script wrapper costs more than the call's own packing); on
    NOSCRIPT (a restarted or flushed server) it loads its source and runs again."""

    __slots__ = ("_client", "sha", "source")

    def __init__(self, client: Any, source: str) -> None:
        self._client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        try:
            return self._client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self._client.script_load(self.source)
            return self._client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


class Scripts:
    """Every operation's script, registered once per client (EVALSHA, loaded on a miss).

    Each script is its own file; the generated `prelude` and the helpers of `_lib.lua`
    are prepended to it.
    """

    def __init__(self, client: Any) -> None:
        head = f"{prelude()}\n-- ==== _lib.lua ====\n{_source('_lib')}"
        self._scripts: dict[str, LuaScript] = {
            name: LuaScript(client, f"{head}\n-- ==== {name}.lua ====\n{_source(name)}")
            for name in SCRIPT_NAMES
        }

    def __getitem__(self, name: str) -> LuaScript:
        return self._scripts[name]
