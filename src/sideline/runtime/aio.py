"""The worker's event loop: async jobs run here, on one thread, many at once.

A job thread that fetched an async job hands it over (`AsyncRunner.submit`) and goes
back to fetching; the coroutine runs on the loop, and its settle (a blocking backend
call) runs on a small pool of settle threads so the loop never blocks on it. At most
`concurrency` coroutines run at once: a job thread that fetched one more waits for a
free slot, holding that job (it is in its in-progress list, so a crash loses nothing).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sideline.core.errors import ConfigurationError

__all__ = ["DEFAULT_ASYNC_CONCURRENCY", "AsyncRunner", "run_blocking"]

log = logging.getLogger("sideline.worker")

T = TypeVar("T")

DEFAULT_ASYNC_CONCURRENCY = 100
"""How many async jobs one worker process runs at once by default."""


class AsyncRunner:
    """An event loop on its own thread running up to `concurrency` job coroutines.

    Args:
        concurrency: coroutines at once.
        settle_threads: threads that carry out the (blocking) settles of finished jobs.
    """

    def __init__(self, concurrency: int = DEFAULT_ASYNC_CONCURRENCY, *,
                 settle_threads: int = 2) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"async concurrency must be >= 1, got {concurrency}")
        self.concurrency = concurrency
        self.loop = asyncio.new_event_loop()
        self.settlers = concurrent.futures.ThreadPoolExecutor(
            settle_threads, thread_name_prefix="sideline-settle")
        self._slots = threading.BoundedSemaphore(concurrency)
        self._thread = threading.Thread(target=self._run, name="sideline-async", daemon=True)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.closing = False
        """True once stop() gave up waiting: cancelled jobs are then not settled (the
        worker pushes them back to their queues)."""

    def start(self) -> AsyncRunner:
        """Start the loop's thread; return self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def running(self) -> int:
        """How many job coroutines run now."""
        with self._lock:
            return len(self._tasks)

    def submit(self, make: Callable[[], Coroutine[Any, Any, None]],
               should_wait: Callable[[], bool] = lambda: True) -> bool:
        """Run the coroutine `make()` on the loop once a slot is free (blocking the caller
        until one is, while `should_wait()`); False if it was not started."""
        while not self._slots.acquire(timeout=0.1):
            if not should_wait():
                return False
        try:
            asyncio.run_coroutine_threadsafe(self._track(make), self.loop)
        except BaseException:
            self._slots.release()
            raise
        return True

    async def _track(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            self._tasks.add(task)
        try:
            await make()
        except asyncio.CancelledError:
            pass  # cancelled on shutdown: the worker pushes the job back
        except Exception:  # the job wrapper settles every failure; this is a last line
            log.exception("an async job's wrapper failed")
        finally:
            with self._lock:
                self._tasks.discard(task)
                self._idle.notify_all()
            self._slots.release()

    async def settle(self, call: Callable[[], T]) -> T:
        """Run a blocking settle on a settle thread without blocking the loop."""
        return await self.loop.run_in_executor(self.settlers, call)

    def stop(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for running coroutines, cancel the rest (not settled),
        then stop the loop and the settle threads."""
        with self._lock:
            self._idle.wait_for(lambda: not self._tasks, timeout=max(0.0, timeout_s))
            left = list(self._tasks)
        if left:
            self.closing = True
            for task in left:
                self.loop.call_soon_threadsafe(task.cancel)
            with self._lock:
                self._idle.wait_for(lambda: not self._tasks, timeout=5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        self.settlers.shutdown(wait=True)
        if not self._thread.is_alive():
            self.loop.close()


def run_blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end from synchronous code (drain(), a direct call): on a
    fresh loop here, or on a helper thread when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sideline-run") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()
