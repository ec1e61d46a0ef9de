"""Settles that arrive together travel together: one call to Redis for several threads.

A worker's job threads each settle their own job (settle.lua) and wait for the answer,
which carries their next job. Up to IN_FLIGHT settle calls of a worker go to Redis at
once, each sent by its own thread as before. A settle that finds that many on their way
does not send its own: it queues and waits. When a call's answer is in, its thread hands
the lead to the first queued settle, whose thread sends every queued settle (up to
MAX_BATCH) as one call of settle_many (one function run, one round trip, one pass of the
network stack on both sides) and hands each thread its own answer. So a worker with few
settles at a time pays nothing, and a busy one pays one round trip for many jobs and
spends less of Redis's time per job.

Measured with `benchmarks/peers/compare.py` on a 2-core machine (figures in
docs/performance.md): with two worker processes of 8 threads, combining raised the drain
rate by about 8% (Redis shares the cores with the workers, and spends less per job);
with one process it made no difference at IN_FLIGHT = 3, and cost 10-20% at 1 (threads
waited for a call in flight instead of sending their own).

The main thread never waits in the queue (it sends its settle alone, outside the turns):
a waiting thread must not be interrupted (a signal's KeyboardInterrupt reaches the main
thread only), or the settles queued behind it would wait for a lead it never takes.

Each settle in a batch is still its own atomic step with its own answer; an error in one
(settle.lua's error reply, or a failing command, caught in settle_many) is that settle's
alone. A call that fails as a whole (the connection) fails every settle in it; each
thread's `persist` retries its own settle, as after a lost reply.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["IN_FLIGHT", "MAX_BATCH", "Combiner"]

MAX_BATCH = 64
"""The most settles one call carries (the rest wait for the next call)."""
IN_FLIGHT = 3
"""How many settle calls of one worker may be on their way to Redis at once."""

_MAIN = threading.main_thread()

Send = Callable[[Sequence[tuple[list[Any], list[Any]]]], list[Any]]
"""Sends settles (each its keys and arguments) in one call; one reply per settle, an
exception instance for a settle that failed."""


class _Ticket:
    """One thread's settle: what to send, and its answer once there."""

    __slots__ = ("args", "error", "keys", "lead", "ready", "reply")

    def __init__(self, keys: list[Any], args: list[Any]) -> None:
        self.keys = keys
        self.args = args
        self.reply: Any = None
        self.error: BaseException | None = None
        self.lead = False  # handed the lead instead of an answer
        self.ready = threading.Lock()
        self.ready.acquire()  # released once answered or handed the lead

    def answer(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


class Combiner:
    """Runs concurrent calls as batches once `in_flight` calls are on their way.

    Args:
        send_one: sends one settle (the plain settle function) and returns its reply.
        send_many: sends several in one call (settle_many); one reply per settle.
        in_flight: how many calls may be on their way at once.
    """

    def __init__(self, send_one: Callable[[list[Any], list[Any]], Any],
                 send_many: Send, in_flight: int = IN_FLIGHT) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._lock = threading.Lock()
        self._queue: deque[_Ticket] = deque()
        self._limit = in_flight
        self._in_flight = 0

    def call(self, keys: list[Any], args: list[Any]) -> Any:
        """Settle (`keys`, `args`): sent now, or with the next batch; returns its reply."""
        if threading.current_thread() is _MAIN:
            return self._send_one(keys, args)
        with self._lock:
            if self._in_flight < self._limit:
                self._in_flight += 1
                ticket = None
            else:
                ticket = _Ticket(keys, args)
                self._queue.append(ticket)
        if ticket is None:  # a call is free: send it alone, then pass the lead on
            try:
                return self._send_one(keys, args)
            finally:
                self._next()
        ticket.ready.acquire()  # answered, or handed the lead
        if ticket.lead:
            self._serve(ticket)
        return ticket.answer()

    def _serve(self, own: _Ticket) -> None:
        """Handed the lead (and taken off the queue): send `own` with the settles queued
        behind it in one call."""
        try:
            with self._lock:
                count = min(MAX_BATCH - 1, len(self._queue))
                batch = [own, *(self._queue.popleft() for _ in range(count))]
            try:
                replies = self._send_many([(t.keys, t.args) for t in batch]) if len(batch) > 1 \
                    else [self._send_one(own.keys, own.args)]
            except BaseException as exc:
                for ticket in batch:
                    ticket.error = exc
            else:
                for ticket, reply in zip(batch, replies, strict=True):
                    if isinstance(reply, Exception):
                        ticket.error = reply
                    else:
                        ticket.reply = reply
            for ticket in batch[1:]:
                ticket.ready.release()
        finally:
            self._next()

    def _next(self) -> None:
        """Hand this call's turn to the first waiting settle (taking it off the queue), or
        give the turn back."""
        with self._lock:
            if not self._queue:
                self._in_flight -= 1
                return
            first = self._queue.popleft()
        first.lead = True
        first.ready.release()
