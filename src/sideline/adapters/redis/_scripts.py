"""Load the Lua scripts shipped as package data and register them on a client."""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.commands.core import Script

__all__ = ["SCRIPT_NAMES", "Scripts"]

SCRIPT_NAMES = (
    "admin_kill",
    "admin_retry_now",
    "admin_signal",
    "begin_node",
    "cancel_run",
    "claim",
    "complete_node",
    "create_run",
    "extend_run_ttl",
    "fail_node",
    "fetch",
    "heartbeat",
    "kill",
    "memory_write",
    "move_due",
    "push",
    "recover_job",
    "release_lock",
    "requeue",
    "retry_dead",
    "retry_later",
    "schedule",
    "settle",
)


def _source(name: str) -> str:
    return (resources.files("sideline.adapters.redis") / "lua" / f"{name}.lua").read_text("utf-8")


class Scripts:
    """Every operation's script, registered once per client (EVALSHA, EVAL on a cache miss).

    Each script is its own file; the helpers of `_lib.lua` are prepended to it.
    """

    def __init__(self, client: Any) -> None:
        library = _source("_lib")
        self._scripts: dict[str, Script] = {
            name: client.register_script(f"{library}\n-- ==== {name}.lua ====\n{_source(name)}")
            for name in SCRIPT_NAMES
        }

    def __getitem__(self, name: str) -> Script:
        return self._scripts[name]
