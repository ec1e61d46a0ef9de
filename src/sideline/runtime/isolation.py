"""Run blocking jobs in child processes that can be killed: timeouts and stops that really stop.

A thread cannot be killed, so a job stuck in C code or in a loop that never looks at its
stop flag keeps its worker thread forever. `ProcessPool` runs each job in a child process
instead; the parent thread waits for the reply and, on a timeout or a stop, kills the child
with SIGKILL and starts a fresh one on the next demand.

What crosses the process boundary:

* the job as the pair (module, qualname), never as a pickle of the function: the child
  imports the module and walks the qualname. A `@app.job` wrapper found there (anything
  with `.spec.func`) is unwrapped to the declared function or class; a class is run as
  `cls().perform(*args, **kwargs)`. The module must be importable: not `__main__`, and
  not a function defined inside another one.
* arguments and results as JSON text (`allow_nan=False`): tuples come back as lists, and a
  result JSON cannot carry (a set, an object, NaN) is a `SerializationError`.
* an exception as its class name, message and formatted traceback: `IsolatedJobError`.

Children use the multiprocessing "spawn" context: a fresh interpreter, safe to start from
a threaded worker (fork would copy locks held by other threads). The price is a start
cost paid once per child, on the first job it runs: an interpreter start plus importing
sideline and the job's module (typically 0.2-0.5 s). A child then serves job after job
until it is killed (timeout, stop) or dies, so the cost is not paid per job; the time
limit of a job starts when it is sent to a started child, so the start cost never counts
against it.
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import json
import multiprocessing
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from sideline.core.errors import (
    ConfigurationError,
    JobStopped,
    JobTimeout,
    RemoteJobError,
    SerializationError,
)

__all__ = ["IsolatedJobError", "ProcessPool"]

_POLL_S = 0.1
"""How often a waiting parent looks at its stop event (seconds)."""

_READY = "ready"
_OK = "ok"
_ERROR = "error"
_UNSERIALIZABLE = "unserializable"


class IsolatedJobError(RemoteJobError):
    """A job run in a child process raised, or its process died under it.

    The exception itself stays in the child; this carries its class name, message and the
    child's formatted traceback. A child that exited on its own (os._exit, a crash, a
    kill from outside) is reported as class "ProcessDied" with an empty backtrace.
    """


class _Child:
    """One child process and the parent's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.ready = False
        """True once the child said it started and waits for requests."""


class ProcessPool:
    """Runs jobs in child processes (multiprocessing 'spawn' context: safe in a threaded
    worker), at most `size` at once; a child is reused for the next job unless it was killed.

    `run` may be called from several threads at once; a call waits for a free child when
    `size` are busy. Children start lazily, on demand, up to `size`; each pays the spawn
    start cost (an interpreter, sideline and the job's module) once, on its first job.
    Children ignore SIGINT (the parent handles Ctrl-C) and exit when the parent closes
    their pipe. They are not daemonic, so a job may start processes of its own;
    `close()` ends them all, and runs at interpreter exit for any pool still open.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ConfigurationError(f"a process pool needs a size of at least 1, got {size}")
        self.size = size
        self._context = multiprocessing.get_context("spawn")
        self._changed = threading.Condition()
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()
        self._starting = 0
        """Slots reserved by threads about to start a child (counted against `size`)."""
        self._closed = False
        self._numbers = itertools.count(1)
        _open_pools.add(self)

    def run(self, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], *,
            timeout_s: float | None, stop: threading.Event) -> Any:
        """Run `func(*args, **kwargs)` in a child process; block until it ends; return its result.

        `func` is a module-level function, a class with a `perform` method, or a
        `@app.job` wrapper of either. `timeout_s` counts from the moment the job is sent
        to a started child.

        Raises:
            ConfigurationError: `func` cannot be imported by name in a child (declared in
                `__main__` or inside a function), or the pool is closed.
            SerializationError: an argument or the result is not JSON-native.
            IsolatedJobError: the job raised (its class, message and traceback), or its
                process died ("ProcessDied"); a dead child is replaced on next demand.
            JobTimeout: the job ran past `timeout_s`; its process was killed.
            JobStopped: `stop` was set; the job's process was killed (or, if `stop` was
                set before the job was sent, nothing ran).
        """
        module, qualname = _address(func)
        name = f"{module}.{qualname}"
        try:
            request = json.dumps([args, kwargs], allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"the arguments of job {name!r} cannot cross to its process as JSON: {exc}") from exc
        child = self._acquire(stop)
        try:
            if not child.ready:
                self._await_ready(child, stop)
        except BaseException:
            self._discard(child)
            raise
        if stop.is_set():
            self._release(child)
            raise JobStopped("the job was stopped before it started")
        try:
            child.conn.send((module, qualname, request))
            reply = self._await_reply(child, timeout_s, stop)
        except BaseException:
            # A timeout, a stop, a dead child, the pool closing, or the calling thread
            # interrupted (KeyboardInterrupt): the child may still run the job; end it.
            self._discard(child)
            raise
        self._release(child)
        kind = reply[0]
        if kind == _OK:
            return json.loads(reply[1])
        if kind == _UNSERIALIZABLE:
            raise SerializationError(
                f"job {name!r} returned a value that cannot cross back as JSON: {reply[1]}")
        raise IsolatedJobError(reply[1], reply[2], reply[3])

    def close(self) -> None:
        """Kill every child and join it; a `run` waiting on one raises. Idempotent.

        After close, `run` raises ConfigurationError.
        """
        with self._changed:
            self._closed = True
            idle = self._idle[:]
            busy = [child for child in self._children if child not in idle]
            self._children.clear()
            self._idle.clear()
            self._changed.notify_all()
        for child in idle:
            _end(child)
        for child in busy:  # their `run` sees the exit, raises and closes the pipe
            child.process.kill()
            child.process.join()
        _open_pools.discard(self)

    def _acquire(self, stop: threading.Event) -> _Child:
        """An idle child, or a new one if fewer than `size` exist; waits (never on a job)."""
        with self._changed:
            while True:
                if self._closed:
                    raise ConfigurationError("the process pool is closed")
                if stop.is_set():
                    raise JobStopped("the job was stopped before it started")
                while self._idle:
                    child = self._idle.pop()
                    if child.process.is_alive():
                        return child
                    self._children.discard(child)  # died while idle (killed from outside)
                    _end(child)
                if len(self._children) + self._starting < self.size:
                    self._starting += 1
                    break
                self._changed.wait(_POLL_S)
        try:
            return self._start()
        finally:
            with self._changed:
                self._starting -= 1
                self._changed.notify_all()

    def _start(self) -> _Child:
        here, there = self._context.Pipe()
        process = self._context.Process(
            target=_child_main, args=(there,), name=f"sideline-isolated-{next(self._numbers)}")
        try:
            process.start()
        finally:
            there.close()  # the child holds its own copy; ours would hide the child's exit
        child = _Child(process, here)
        with self._changed:
            closed = self._closed
            if not closed:
                self._children.add(child)
        if closed:
            _end(child)
            raise ConfigurationError("the process pool is closed")
        return child

    def _await_ready(self, child: _Child, stop: threading.Event) -> None:
        """Wait for a new child's first message; stop and death are watched, time is not."""
        while True:
            self._check_stop(stop)
            if wait([child.conn, child.process.sentinel], timeout=_POLL_S):
                message = self._receive(child)
                if message[0] != _READY:
                    raise IsolatedJobError("ProtocolError", f"unexpected message {message[0]!r}", "")
                child.ready = True
                return

    def _await_reply(self, child: _Child, timeout_s: float | None,
                     stop: threading.Event) -> tuple[Any, ...]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self._check_stop(stop)
            slice_s = _POLL_S
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeout(f"the job ran past its timeout of {timeout_s:g} s "
                                     "and its process was killed")
                slice_s = min(slice_s, remaining)
            if wait([child.conn, child.process.sentinel], timeout=slice_s):
                return self._receive(child)

    def _check_stop(self, stop: threading.Event) -> None:
        if stop.is_set():
            raise JobStopped("the job was stopped and its process was killed")
        if self._closed:
            raise JobStopped("the process pool was closed while the job ran; "
                             "its process was killed")

    def _receive(self, child: _Child) -> tuple[Any, ...]:
        """The child's next message, or IsolatedJobError("ProcessDied") if it exited."""
        try:
            if child.conn.poll():
                message: tuple[Any, ...] = child.conn.recv()
                return message
        except (EOFError, OSError):
            pass
        child.process.join()
        if self._closed:
            raise JobStopped("the process pool was closed while the job ran; its process was killed")
        raise IsolatedJobError(
            "ProcessDied", f"the job's process exited with code {child.process.exitcode}", "")

    def _release(self, child: _Child) -> None:
        """Give a child that finished its job back to the idle list."""
        with self._changed:
            if child in self._children:
                self._idle.append(child)
                self._changed.notify_all()
                return
        _end(child)  # the pool closed meanwhile

    def _discard(self, child: _Child) -> None:
        """Kill a child and forget it; a fresh one starts on next demand."""
        with self._changed:
            self._children.discard(child)
            self._changed.notify_all()
        _end(child)


_open_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@atexit.register
def _close_open_pools() -> None:
    # Registered after multiprocessing's own exit hook (imported above), so it runs
    # before it: children are killed instead of joined while they wait for requests.
    for pool in list(_open_pools):
        pool.close()


def _end(child: _Child) -> None:
    """SIGKILL the child if it still runs, reap it and close our end of its pipe."""
    if child.process.is_alive():
        child.process.kill()
    child.process.join()
    child.conn.close()


def _address(func: Callable[..., Any]) -> tuple[str, str]:
    """(module, qualname) by which a child finds `func`; a `@app.job` wrapper is looked through."""
    target: Any = func
    spec = getattr(func, "spec", None)
    if spec is not None and getattr(spec, "func", None) is not None:
        target = spec.func
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigurationError(
            f"{func!r} has no module and qualified name: an isolated job must be a "
            "module-level function or class")
    if module == "__main__":
        raise ConfigurationError(
            f"job {qualname!r} is declared in __main__, which a child process cannot import "
            "by name: declare it in an importable module")
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ConfigurationError(
            f"job {module}.{qualname} is defined inside a function or is a lambda, which a "
            "child process cannot import by name: declare it at module level")
    return module, qualname


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    """In the child: import `module`, walk `qualname`, unwrap a job wrapper, bind a class."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    spec = getattr(target, "spec", None)
    func = getattr(spec, "func", None)
    if func is not None:
        target = func
    if isinstance(target, type):
        cls = target

        def perform(*args: Any, **kwargs: Any) -> Any:
            return cls().perform(*args, **kwargs)

        return perform
    if not callable(target):
        raise TypeError(f"{module}.{qualname} is not callable")
    resolved: Callable[..., Any] = target
    return resolved


def _child_main(conn: Connection) -> None:
    """The child's loop: receive a request, run it, send the reply; end when the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn.send((_READY,))
        while True:
            try:
                module, qualname, request = conn.recv()
            except EOFError:
                return  # the parent closed the pipe, or is gone
            conn.send(_perform(module, qualname, request))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent went away while the job ran


def _perform(module: str, qualname: str, request: str) -> tuple[str, ...]:
    """Run one job; the reply to send back."""
    try:
        args, kwargs = json.loads(request)
        result = _resolve(module, qualname)(*args, **kwargs)
    except Exception as exc:
        return (_ERROR, type(exc).__name__, str(exc), traceback.format_exc())
    try:
        return (_OK, json.dumps(result, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        return (_UNSERIALIZABLE, f"{type(result).__name__} value: {exc}")
