"""Settles that arrive together travel together: one call to Redis for several threads.

A worker's job threads each settle their own job (settle.lua) and wait for the answer,
which carries their next job. When a thread's settle finds another one on its way to
Redis, it does not send its own: it queues it and waits. The thread whose call is in
flight (the leader) sends, once its answer is in, the queued settles as one call of
settle_many (one function run, one round trip, one pass of the network stack on both
sides), hands each thread its own answer, and passes the lead to a waiting thread if more
have queued meanwhile. A thread alone sends its settle as before, so an idle worker pays
nothing and a busy one pays one round trip for many jobs.

Only worker threads other than the main thread combine (`SettleOps.settle`): a waiting
thread must not be interrupted (a signal's KeyboardInterrupt reaches the main thread
only), or the settles queued behind it would wait for a lead it never takes.

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

__all__ = ["MAX_BATCH", "Combiner"]

MAX_BATCH = 64
"""The most settles one call carries (the rest wait for the next call)."""

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
    """Runs concurrent calls as batches: the first caller sends, later ones ride along.

    Args:
        send_one: sends one settle (the plain settle function) and returns its reply.
        send_many: sends several in one call (settle_many); None: each is sent alone.
    """

    def __init__(self, send_one: Callable[[list[Any], list[Any]], Any],
                 send_many: Send) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._lock = threading.Lock()
        self._queue: deque[_Ticket] = deque()
        self._leading = False

    def call(self, keys: list[Any], args: list[Any]) -> Any:
        """Settle (`keys`, `args`): sent now, or with the next batch; returns its reply."""
        with self._lock:
            if not self._leading:
                self._leading = True
                ticket = None
            else:
                ticket = _Ticket(keys, args)
                self._queue.append(ticket)
        if ticket is None:  # nobody else is sending: send it alone, then serve the queue
            try:
                return self._send_one(keys, args)
            finally:
                self._next()
        ticket.ready.acquire()  # answered, or handed the lead
        if ticket.lead:
            self._serve(ticket)
        return ticket.answer()

    def _serve(self, own: _Ticket) -> None:
        """As the leader: send the queued settles (own among them) in one call."""
        try:
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            assert batch[0] is own  # the lead goes to the first in the queue, and only it pops
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
            for ticket in batch:
                if ticket is not own:
                    ticket.ready.release()
        finally:
            self._next()

    def _next(self) -> None:
        """Hand the lead to the first waiting settle, or put it down."""
        with self._lock:
            if not self._queue:
                self._leading = False
                return
            first = self._queue[0]
        first.lead = True
        first.ready.release()
