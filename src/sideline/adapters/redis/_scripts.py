"""Load the Lua scripts shipped as package data and register them on a client."""

from __future__ import annotations

import enum
import hashlib
import importlib
import os
import re
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

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

__all__ = ["FUNCTION_ONLY", "SCRIPT_NAMES", "Caller", "LuaScript", "Scripts", "library", "prelude"]

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
    "settle_many",
)
FUNCTION_ONLY = frozenset({"settle_many"})
"""Scripts that exist only as functions of the library: they run another script's body."""

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


class Caller:
    """How the scripts of one client reach the server.

    Scripts run as Redis Functions (FCALL) where the server has them (Redis 7+): the
    library (`library()`) is loaded once with FUNCTION LOAD, so a call does not set up the
    prelude and `_lib.lua` again as an EVALSHA does. A server without functions (older
    Redis) is asked once, then the same code runs by EVALSHA; so does every script on a
    cluster client, whose routing of FCALL would ask the server for the keys of each call.
    A function or script the server forgot (a restart without persistence, FUNCTION FLUSH,
    SCRIPT FLUSH) is loaded again and the call made once more.

    Settling a job is the hot path of every job, so on a client of one server that does not
    retry (what `RedisBackend.from_url` makes) a call skips redis-py's per-command layers:
    it takes a pooled connection, writes the command and reads the reply. Other clients (a
    single-connection client, one with a retry policy) go through `execute_command`, so
    their retries apply.

    On that lean path a thread that fetches jobs keeps one connection (`hold`).
    """

    def __init__(self, client: Any, library: tuple[str, str], *, cluster: bool) -> None:
        self.client = client
        self.pool = None if cluster else _lean_pool(client)
        self.library_name, self.library_code = library
        self.functions = not cluster
        """False once the server said it has no functions (and always on a cluster)."""
        self._local = threading.local()

    def hold(self) -> None:
        """Keep one pooled connection for this thread's calls from its next call on, until
        it ends: a worker's job thread (it fetches) runs every call without a pool lock or
        a health poll, and waits for work in BLPOP on the same connection. Other threads
        borrow a connection per call, so a thread that only enqueues holds none."""
        self._local.holds = True

    def run(self, command: tuple[Any, ...]) -> Any:
        """Send one command and read its reply (the lean path where it applies); a reply is
        as Redis sent it (no redis-py response callback on the lean path)."""
        pool = self.pool
        if pool is None:
            return self.client.execute_command(*command)
        held = self._held()
        if held is None:
            connection = pool.get_connection()
        else:
            connection = held.connection
            held.blocking()
        try:
            if _pack is None:
                connection.send_command(*command)
            else:
                connection.send_packed_command([_pack(command)])
            return connection.read_response()
        except RedisConnectionError as exc:
            connection.disconnect()  # a reply may still be on its way; the next call reconnects
            if isinstance(exc.__context__, BlockingIOError):  # the kernel's timeout (_Held)
                raise RedisTimeoutError(f"Timeout on the socket: {exc}") from exc
            raise
        except RedisTimeoutError:
            connection.disconnect()
            raise
        finally:
            if held is None:
                pool.release(connection)

    def _held(self) -> _Held | None:
        """This thread's own connection, taken on its first call after `hold` (and again
        in a forked child); None for a thread that borrows one per call."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is not None and held.pid == os.getpid():
            return held
        if getattr(self._local, "holds", False):
            held = self._local.held = _Held(self.pool)
            return held
        return None

    def combines(self) -> bool:
        """Whether settles of several threads may go in one call (settle_many): the server
        has functions and calls take the lean path (see `_combine.py`)."""
        return self.functions and self.pool is not None

    def load_library(self) -> bool:
        """FUNCTION LOAD REPLACE the library; False (and scripts from now on) when the
        server has no functions."""
        try:
            self.client.function_load(self.library_code, replace=True)
        except ResponseError as exc:
            if not _unknown_command(exc):
                raise
            self.functions = False
            return False
        return True


class _Held:
    """The pooled connection one thread makes all its calls on, taken once (no pool lock
    and no health poll per call) and given back to the pool when the thread ends.

    Its socket blocks, with the connection's timeout kept by the kernel (SO_RCVTIMEO and
    SO_SNDTIMEO) instead of by Python: a socket with a Python timeout polls before every
    send and every receive, and each poll lets go of the GIL, which the worker's other
    threads then contend for. A kernel timeout ends a call with EAGAIN, which `run` reports
    as redis-py's TimeoutError. Applied to plain TCP and Unix sockets only (a TLS socket
    keeps its Python timeout), and again to each new socket after a reconnect.
    """

    __slots__ = ("__weakref__", "connection", "pid", "sock")

    def __init__(self, pool: Any) -> None:
        self.pid = os.getpid()
        self.connection = pool.get_connection()
        self.sock: Any = None  # the socket made blocking last
        weakref.finalize(self, _give_back, pool, self.connection, self.pid)

    def blocking(self) -> None:
        """Make the connection's socket blocking, with kernel timeouts (once per socket)."""
        connection = self.connection
        sock = getattr(connection, "_sock", None)
        if sock is None:
            if not hasattr(connection, "_sock"):
                return  # not a redis-py Connection we know: leave it as it is
            connection.connect()
            sock = connection._sock
        if sock is self.sock:
            return
        self.sock = sock
        if type(sock) is not socket.socket:  # TLS: keep Python's timeout
            return
        timeout = sock.gettimeout()
        sock.settimeout(None)
        if timeout:
            seconds = int(timeout)
            value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _give_back(pool: Any, connection: Any, pid: int) -> None:
    if os.getpid() == pid:
        connection.disconnect()  # its socket blocks: the next user gets a fresh one
        pool.release(connection)


class LuaScript:
    """One operation's script: an FCALL of its function in the library, or an EVALSHA of
    its own source (see `Caller`)."""

    __slots__ = ("_caller", "function", "function_only", "name", "sha", "source")

    def __init__(self, caller: Caller, name: str, source: str, *,
                 function_only: bool = False) -> None:
        self._caller = caller
        self.name = name
        self.function_only = function_only
        """Runs only as a function (FUNCTION_ONLY): never called by EVALSHA."""
        self.function = f"{caller.library_name}_{name}"
        """Its function's name on the server (FCALL)."""
        self.source = source
        """Its script (the prelude, `_lib.lua` and its own file), for EVALSHA."""
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        caller = self._caller
        if caller.functions:
            command = ("FCALL", self.function, len(keys), *keys, *args)
            try:
                return caller.run(command)
            except ResponseError as exc:
                if _unknown_command(exc):
                    caller.functions = False
                elif not str(exc).startswith("Function not found"):
                    raise
                elif caller.load_library():
                    return caller.run(command)
        if self.function_only:
            raise ResponseError(f"{self.name} needs Redis Functions (Redis 7 or later)")
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return caller.run(command)
        except NoScriptError:
            caller.client.script_load(self.source)
            return caller.run(command)


def _unknown_command(exc: ResponseError) -> bool:
    return str(exc).lower().startswith("unknown command")


def _packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    """hiredis's command packer (the `fast` extra), else None (redis-py's own packs)."""
    try:
        hiredis = importlib.import_module("hiredis")  # optional: typed or not, either way
    except ImportError:
        return None
    packer: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command
    return packer


_pack = _packer()


def _lean_pool(client: Any) -> Any:
    """The pool to run scripts on directly, or None when the client's own path must run."""
    if client.connection is not None:
        return None  # bound to a single connection
    retry = client.get_retry()
    if retry is not None and retry.get_retries() > 0:
        return None
    return client.connection_pool


def library(head: str, bodies: Mapping[str, str]) -> tuple[str, str]:
    """The Redis Functions library of every script: (its name, its code).

    Each script's body becomes the local function `body_<script>` (so one function may run
    another's body: settle_many runs body_settle), registered as "<library>_<script>"; the
    library's name carries a hash of its code, so two sideline versions on one server never
    replace each other's. A registered function hands its keys and arguments to the `KEYS`
    and `ARGV` the helpers read, and starts with `begin_call()` (the per-call state of
    `_lib.lua` empty, as a script's is).
    """
    parts = [f"-- ==== {name}.lua ====\nlocal function body_{name}()\n{body}\nend\n"
             f"redis.register_function('@_{name}', function(keys, args)\n"
             f"KEYS, ARGV = keys, args\nbegin_call()\nreturn body_{name}()\nend)"
             for name, body in bodies.items()]
    code = "\n".join(("local KEYS, ARGV", head, *parts))
    name = "sideline_" + hashlib.sha1(code.encode("utf-8")).hexdigest()[:16]
    return name, f"#!lua name={name}\n" + code.replace("'@_", f"'{name}_")


class Scripts:
    """Every operation's script for one client, by name (`scripts["settle"](keys, args)`).

    Each script is its own file; the generated `prelude` and the helpers of `_lib.lua`
    come before it, in its EVALSHA source and once at the head of the functions library.
    """

    def __init__(self, client: Any, *, cluster: bool) -> None:
        head = f"{prelude()}\n-- ==== _lib.lua ====\n{_source('_lib')}"
        bodies = {name: _source(name) for name in SCRIPT_NAMES}
        self.caller = Caller(client, library(head, bodies), cluster=cluster)
        self._scripts: dict[str, LuaScript] = {
            name: LuaScript(self.caller, name, f"{head}\n-- ==== {name}.lua ====\n{body}",
                            function_only=name in FUNCTION_ONLY)
            for name, body in bodies.items()
        }

    def __getitem__(self, name: str) -> LuaScript:
        return self._scripts[name]
