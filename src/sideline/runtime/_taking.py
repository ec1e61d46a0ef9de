"""Job threads that take several jobs per call (`Worker(jobs_per_call=N)`, N > 1).

A mixin of `Worker`, beside the one-job loop (`Worker._work`). Such a thread:

- takes up to N waiting jobs in one call (`fetch_many`) into the worker's in-progress
  list, and keeps the ones it has not started in its own `Hand`;
- runs them one after the other; a job whose settlement is a plain ack
  (core.settlement.is_plain_ack: no retry, burial, workflow step, batch, stored result,
  lock or limit) is not written at once but kept in the hand; any other settlement is
  written at once, as in the one-job loop;
- when it has started everything it took, writes the kept acks in one call
  (`settle_acks`) that also takes the next jobs, one per ack, up to N.

So a stream of short jobs costs one round trip per N jobs instead of one per job. A
thread that finds no waiting job runs one that another thread took and has not started
(`_steal`: they are all in the worker's in-progress list) before it blocks for new
ones, so a long job does not keep the jobs taken with it waiting while threads idle.
What it costs: a crash of the worker re-runs the jobs whose acks were kept (at most N
per thread; they are still in its in-progress list, so nothing is lost).
On quiet or stop a thread writes its kept acks and hands back what it has not started.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from sideline.core.errors import SidelineError
from sideline.core.ports import Delivery
from sideline.core.settlement import Settlement
from sideline.runtime.executor import Lanes, process
from sideline.runtime.observers import notify

if TYPE_CHECKING:
    from sideline.runtime.context import Runtime

__all__ = ["Hand", "Taking"]

log = logging.getLogger("sideline.worker")

T = TypeVar("T")


class Hand:
    """What one job thread holds besides the job it runs: jobs it took and has not
    started, and plain acks it has not written. Changed under the worker's lock (its
    reconcile and stop read it from other threads)."""

    __slots__ = ("acks", "lock", "taken")

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.taken: deque[Delivery] = deque()
        self.acks: list[tuple[Delivery, Settlement]] = []

    def defer(self, delivery: Delivery, settlement: Settlement) -> None:
        """Keep the plain ack of `delivery` to write with the others (executor.Defer)."""
        with self.lock:
            self.acks.append((delivery, settlement))

    def held(self) -> Iterator[Delivery]:
        """Every job this hand holds (call with the lock held)."""
        yield from self.taken
        for delivery, _ in self.acks:
            yield delivery


class Taking:
    """The loop of a job thread taking several jobs per call, for `Worker`."""

    runtime: Runtime
    worker_id: str
    jobs_per_call: int
    processed: int
    max_jobs: int
    _quiet: threading.Event
    _stop: threading.Event
    _busy_lock: threading.Lock
    _busy: dict[int, Delivery]
    _since: dict[int, float]
    _lanes: Lanes
    _hands: dict[int, Hand]

    def queue_order(self) -> list[str]:
        raise NotImplementedError

    def quiet(self) -> None:
        raise NotImplementedError

    def _persist(self, call: Callable[[], T]) -> T:
        raise NotImplementedError

    def _hand_back(self, delivery: Delivery) -> None:
        raise NotImplementedError

    def _wait_for_job(self, order: Sequence[str],
                      begin_at: Callable[[], float]) -> Delivery | None:
        raise NotImplementedError

    def _fetch_failed(self, exc: Exception, *, pause: bool = True) -> None:
        raise NotImplementedError

    def _work_taking(self) -> None:
        ident = threading.get_ident()
        hand = Hand(self._busy_lock)
        with self._busy_lock:
            self._hands[ident] = hand
        try:
            while not self._quiet.is_set():
                try:
                    self._take_turn(ident, hand)
                except BaseException:  # nothing raised here may end the thread
                    log.exception("worker thread failed unexpectedly; going on in 1 s")
                    self._stop.wait(1.0)
        finally:
            self._let_go(ident, hand)

    def _take_turn(self, ident: int, hand: Hand) -> None:
        """Run the next job this thread took (taking more first if it has none)."""
        with self._busy_lock:
            delivery = hand.taken.popleft() if hand.taken else None
            if delivery is not None:
                self._busy[ident] = delivery
                self._since[ident] = self.runtime.clock.now()
        if delivery is None:
            delivery = self._take_more(ident, hand)
            if delivery is None:
                return
        if self._quiet.is_set():  # taken while quieting: handed back with the rest
            with self._busy_lock:
                self._busy.pop(ident, None)
                hand.taken.appendleft(delivery)
            return
        # a settle written now takes the next job only when the hand is empty
        fetch_from = () if hand.taken else self.queue_order()
        try:
            following = process(self.runtime, self.worker_id, delivery, persist=self._persist,
                                fetch_from=fetch_from, lanes=self._lanes, defer=hand.defer)
        except SidelineError:
            # the backend failed while settling and the worker is stopping: stop() pushes
            # the job back (it stays in _busy)
            log.exception("could not settle job from %s while stopping", delivery.queue)
            return
        with self._busy_lock:
            self._busy.pop(ident, None)
            self.processed += 1
            spent = bool(self.max_jobs) and self.processed >= self.max_jobs
            if following is not None:
                hand.taken.append(following)
        if spent:
            self.quiet()
        if hand.acks and (not hand.taken or len(hand.acks) >= self.jobs_per_call):
            self._write_acks(hand, take=not self._quiet.is_set())

    def _take_more(self, ident: int, hand: Hand) -> Delivery | None:
        """Take up to `jobs_per_call` waiting jobs, else block for one; the first is
        returned (and marked running), the rest kept in the hand."""
        backend = self.runtime.backend
        order = self.queue_order()
        begin_at = self.runtime.clock.now  # a workflow step is begun by its fetch
        try:
            found = backend.fetch_many(self.worker_id, order, self.jobs_per_call, 0, begin_at)
            if not found and (stolen := self._steal(ident)) is not None:
                return stolen
            if not found:
                one = self._wait_for_job(order, begin_at)
                found = [one] if one is not None else []
        except Exception as exc:  # a fetch error: what Redis moved may be unaccounted for
            self._fetch_failed(exc)
            return None
        if not found:
            return None
        with self._busy_lock:
            self._busy[ident] = found[0]
            self._since[ident] = self.runtime.clock.now()
            hand.taken.extend(found[1:])
        return found[0]

    def _steal(self, ident: int) -> Delivery | None:
        """A job another thread of this worker took and has not started (the newest of
        the fullest hand), now marked running here; None when no thread waits on one."""
        with self._busy_lock:
            fullest = max(self._hands.values(), key=lambda hand: len(hand.taken), default=None)
            if fullest is None or not fullest.taken:
                return None
            delivery = fullest.taken.pop()
            self._busy[ident] = delivery
            self._since[ident] = self.runtime.clock.now()
        return delivery

    def _write_acks(self, hand: Hand, *, take: bool) -> None:
        """Write the hand's kept acks in one call; with `take`, the same call takes the
        next jobs (one per ack, up to `jobs_per_call` held), topped up by one more call
        when it found all it asked for."""
        backend, limit = self.runtime.backend, self.jobs_per_call
        with self._busy_lock:
            acks = list(hand.acks)
            room = max(limit - len(hand.taken), 0)
        count = min(len(acks), room) if take else 0
        order = self.queue_order()
        taken = self._send_acks(acks, order, count)
        with self._busy_lock:
            del hand.acks[:len(acks)]
            hand.taken.extend(taken)
            room = limit - len(hand.taken)
        if take and count and len(taken) == count and room > 0:  # more may wait: top up
            try:
                more = backend.fetch_many(self.worker_id, order, room, 0, self.runtime.clock.now)
            except SidelineError as exc:
                self._fetch_failed(exc, pause=False)
                return
            with self._busy_lock:
                hand.taken.extend(more)

    def _send_acks(self, acks: Sequence[tuple[Delivery, Settlement]],
                   order: Sequence[str] = (), count: int = 0) -> list[Delivery]:
        """Write `acks` (through `_persist`), taking `count` next jobs from `order`; then
        tell the observers (after_settle) of each. Returns the jobs taken."""
        now = self.runtime.clock.now()
        taken = self._persist(lambda: self.runtime.backend.settle_acks(
            self.worker_id, acks, now, order, count, begin_next=True))
        for _, settlement in acks:
            notify(self.runtime.observers, "after_settle", settlement.payload, settlement)
        return taken

    def _let_go(self, ident: int, hand: Hand) -> None:
        """A thread that ends writes its kept acks and hands back the jobs it has not
        started (each to the head of its queue, the oldest ending first)."""
        try:
            if hand.acks:
                self._write_acks(hand, take=False)
        except SidelineError:
            log.exception("could not write the acks of finished jobs on stop; they run "
                          "again once recovered")
        with self._busy_lock:
            unstarted = list(hand.taken)
            hand.taken.clear()
        for delivery in reversed(unstarted):
            self._hand_back(delivery)
        with self._busy_lock:
            if not hand.acks:
                self._hands.pop(ident, None)

    def _settle_left(self, hands: Sequence[Hand]) -> list[Delivery]:
        """On stop, after the deadline: write the acks of threads that did not end and
        return the jobs they had not started (taken off their hands)."""
        with self._busy_lock:
            acks = [ack for hand in hands for ack in hand.acks]
            unstarted = [delivery for hand in hands for delivery in hand.taken]
            for hand in hands:
                hand.acks.clear()
                hand.taken.clear()
        if acks:
            try:
                self._send_acks(acks)  # one try: the worker is stopping
            except SidelineError:
                log.exception("could not write the acks of finished jobs on stop; they "
                              "run again once recovered")
        return unstarted
