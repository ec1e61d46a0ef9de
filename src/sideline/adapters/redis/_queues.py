"""QueuePort, ScheduleStore and InstanceRegistry on Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import attrs

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.core.payload import (
    Payload,
    bump_recoveries,
    decode,
    decode_stored,
    encode,
    raw_bytes,
)
from sideline.core.ports import Delivery, SortedEntry, WorkerInfo

__all__ = ["QueueOps"]

_SETS = {"scheduled": "schedule", "retry": "retry", "dead": "dead"}


def _stored(jid: str, entry: str) -> Payload:
    """The payload of a set entry "queue|payload" (never raises; see decode_stored)."""
    queue, _, raw = entry.partition("|")
    return decode_stored(raw, jid, queue)


def _set_key(kind: str) -> str:
    try:
        return _SETS[kind]
    except KeyError:
        raise ValueError(
            f"set kind must be one of scheduled, retry, dead; got {kind!r}") from None


class QueueOps(RedisBase):
    """Queues with reliable fetch, the sorted sets, heartbeats and locks."""

    # -- QueuePort -------------------------------------------------------------------------

    def push(self, payloads: Sequence[Payload]) -> None:
        """Append jobs to the tail of their queues, in one script call."""
        if not payloads:
            return
        args: list[str] = [self.prefix]
        for payload in payloads:
            args += [payload.queue, encode(payload)]
        with translate("push"):
            self.scripts["push"](keys=[self.keys("queues")], args=args)

    def push_once(self, payloads: Sequence[Payload], ttl_s: float, now: float) -> int:
        """Push each job unless its jid's `pushed:<jid>` marker exists (push_once.lua);
        the markers expire after `ttl_s` by Redis's clock, so `now` is not needed here."""
        if not payloads:
            return 0
        args: list[str | int] = [self.prefix, max(1, round(ttl_s * 1000))]
        for payload in payloads:
            args += [payload.jid, payload.queue, encode(payload)]
        with translate("push_once"):
            return int(self.scripts["push_once"](keys=[self.keys("queues")], args=args))

    def push_raw(self, queue: str, raw: str) -> None:
        """Append arbitrary text to a queue (tests of malformed payloads use this)."""
        with translate("push"):
            self.scripts["push"](keys=[self.keys("queues")], args=[self.prefix, queue, raw])

    def fetch_many(self, worker_id: str, queues: Sequence[str], limit: int,
                   prefetch: int = 0,
                   begin_at: Callable[[], float] | None = None) -> list[Delivery]:
        """Move up to `limit` jobs into the worker's in-progress lists (then up to `prefetch`
        more into its prefetch lists) without waiting; begin started workflow steps when
        `begin_at` is given (see QueuePort.fetch)."""
        return self._fetch(worker_id, queues, limit, prefetch, begin_at, credit=0)

    def _fetch(self, worker_id: str, queues: Sequence[str], limit: int, prefetch: int,
               begin_at: Callable[[], float] | None, *, credit: int) -> list[Delivery]:
        """fetch.lua; `credit` is the number (1-based) of the queue whose wake token this
        caller's BLPOP took, 0 for none."""
        keys: list[str] = []
        for queue in queues:
            keys += [self.keys.queue(queue), self.keys.in_progress(worker_id, queue),
                     self.keys.prefetch(worker_id, queue)]
        now = num(time.time() if begin_at is None else begin_at())  # limits' clock
        begin = "" if begin_at is None else now
        with translate("fetch"):
            found = self.scripts["fetch"](
                keys=keys, args=[self.prefix, limit, prefetch, begin, credit, now, worker_id])
        return [Delivery(found[i + 1], queues[int(found[i]) - 1], i // 3 >= limit,
                         found[i + 2] or None)
                for i in range(0, len(found), 3)]

    def claim(self, worker_id: str, delivery: Delivery) -> Delivery | None:
        """Start a prefetched job: move it to the in-progress list, atomically."""
        if not delivery.prefetched:
            return delivery
        with translate("claim"):
            moved = self.scripts["claim"](
                keys=[self.keys.prefetch(worker_id, delivery.queue),
                      self.keys.in_progress(worker_id, delivery.queue)],
                args=[self.prefix, raw_bytes(delivery.raw)])
        return Delivery(delivery.raw, delivery.queue) if moved else None

    def fetch(self, worker_id: str, queues: Sequence[str], timeout_s: float,
              begin_at: Callable[[], float] | None = None) -> Delivery | None:
        """Fetch one job; when none is there, block on the queues' wake lists (BLPOP).

        Waits at most `timeout_s`, and never longer than `block_limit_s`: a BLPOP longer
        than the socket timeout would end as a TimeoutError, not as "no job". Returning
        early is harmless; the worker checks for stop and fetches again. A wake token is
        pushed per job and used up by whoever takes the job (fetch.lua), so a BLPOP
        returns for a job nobody took yet, not for every job pushed.
        """
        self.scripts.caller.hold()  # a job thread: its fetches and settles on one connection
        found = self._fetch(worker_id, queues, 1, 0, begin_at, credit=0)
        if found:
            return found[0]
        deadline = time.monotonic() + min(timeout_s, self.block_limit_s)
        wake_keys = [self.keys("wake", queue) for queue in queues]
        while (left := deadline - time.monotonic()) > 0:
            with translate("fetch (blocking)"):
                # on the thread's own connection, the one its scripts use (Caller)
                woken = self.scripts.caller.run(("BLPOP", *wake_keys, max(left, 0.01)))
            credit = 0 if woken is None else wake_keys.index(woken[0]) + 1
            found = self._fetch(worker_id, queues, 1, 0, begin_at, credit=credit)
            if found:
                return found[0]
            if woken is not None:
                return None  # woken with nothing to take (another thread got it, or stop())
        return None

    def wake(self, queues: Sequence[str]) -> None:
        """Push a wake token per queue so fetches blocked in BLPOP return."""
        with translate("wake"):
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:  # enough tokens for every thread blocked on the queue
                pipe.rpush(self.keys("wake", queue), *["1"] * 16)
                pipe.ltrim(self.keys("wake", queue), -16, -1)
            pipe.execute()

    def ack(self, worker_id: str, delivery: Delivery) -> None:
        """Remove a finished job from the worker's in-progress list (freeing its limit slot)."""
        self._drop_held(worker_id, delivery, "ack")

    def _drop_held(self, worker_id: str, delivery: Delivery, operation: str) -> bool:
        """drop_held.lua: take a job out of the worker's hands, freeing its limit slot."""
        with translate(operation):
            return bool(self.scripts["drop_held"](
                keys=[self.keys.held(worker_id, delivery)],
                args=[self.prefix, raw_bytes(delivery.raw), worker_id]))

    def requeue(self, worker_id: str, delivery: Delivery) -> bool:
        """Put an unfinished job back at the head of its queue; False if it is not held."""
        with translate("requeue"):
            return bool(self.scripts["requeue"](
                keys=[self.keys.held(worker_id, delivery)],
                args=[self.prefix, delivery.queue, raw_bytes(delivery.raw), worker_id]))

    def in_progress(self, worker_id: str) -> list[str]:
        """The raw jobs in a worker's in-progress lists."""
        return [delivery.raw for delivery in self.held(worker_id)]

    def queue_sizes(self) -> dict[str, int]:
        """The length of every known queue."""
        queues = self._queues()
        with translate("queue_sizes"):
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                pipe.llen(self.keys.queue(queue))
            return dict(zip(queues, pipe.execute(), strict=True))

    def peek(self, queue: str, limit: int = 100) -> list[str]:
        """Up to `limit` raw jobs from the head of `queue`."""
        with translate("peek"):
            return list(self.client.lrange(self.keys.queue(queue), 0, limit - 1))

    # -- ScheduleStore ---------------------------------------------------------------------

    def schedule(self, payload: Payload, at: float) -> None:
        """Add a job to the scheduled set."""
        with translate("schedule"):
            self.scripts["schedule"](keys=[self.keys("schedule")], args=[self.prefix, payload.jid, num(at),
                                                    payload.queue, encode(payload)])

    def retry_later(self, worker_id: str, delivery: Delivery, payload: Payload, at: float) -> None:
        """Ack and add the updated payload to the retry set, atomically."""
        with translate("retry_later"):
            self.scripts["retry_later"](
                keys=[self.keys.held(worker_id, delivery)],
                args=[self.prefix, raw_bytes(delivery.raw), payload.jid, num(at), payload.queue,
                      encode(payload), worker_id])

    def kill(self, worker_id: str, delivery: Delivery, payload: Payload, now: float) -> None:
        """Ack and keep the payload in the dead set, atomically."""
        with translate("kill"):
            self.scripts["kill"](
                keys=[self.keys.held(worker_id, delivery)],
                args=[self.prefix, raw_bytes(delivery.raw), payload.jid, payload.queue,
                      encode(payload),
                      num(now), int(payload.dead), self.max_dead, num(self.dead_ttl_s),
                      worker_id])

    def move_due(self, now: float, limit: int = 1000) -> int:
        """Move due scheduled and retry jobs to their queues."""
        with translate("move_due"):
            moved: int = self.scripts["move_due"](keys=[self.keys("schedule")],
                                                  args=[self.prefix, num(now), limit])
            return moved

    def next_due(self) -> float | None:
        """The earliest due time in the scheduled and retry sets."""
        with translate("next_due"):
            pipe = self.client.pipeline(transaction=False)
            pipe.zrange(self.keys("schedule"), 0, 0, withscores=True)
            pipe.zrange(self.keys("retry"), 0, 0, withscores=True)
            firsts = [float(items[0][1]) for items in pipe.execute() if items]
        return min(firsts, default=None)

    def entries(self, kind: str, limit: int = 100) -> list[SortedEntry]:
        """Jobs of a set, earliest first."""
        return self.set_page(kind, 0, limit)

    def set_page(self, kind: str, start: int, count: int) -> list[SortedEntry]:
        """Up to `count` entries of set `kind` from rank `start`, earliest first."""
        if count <= 0 or start < 0:
            return []
        name = _set_key(kind)
        with translate("set_page"):
            items = self.client.zrange(self.keys(name), start, start + count - 1, withscores=True)
            if not items:
                return []
            stored = self.client.hmget(self.keys(name, "jobs"), [key for key, _ in items])
        return [SortedEntry(float(score), _stored(key, entry), key)
                for (key, score), entry in zip(items, stored, strict=True) if entry]

    def delete(self, kind: str, jid: str) -> bool:
        """Remove a job from a set."""
        name = _set_key(kind)
        with translate("delete"):
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.keys(name), jid)
            pipe.hdel(self.keys(name, "jobs"), jid)
            removed, _ = pipe.execute()
        return bool(removed)

    def retry_dead(self, jid: str, now: float) -> bool:
        """Move a dead job back to its queue, reviving its workflow node in the same step."""
        with translate("retry_dead"):
            entry = self.client.hget(self.keys("dead", "jobs"), jid)
            if entry is None:
                return False
            payload = decode(entry.split("|", 1)[1])
            revived = attrs.evolve(payload, enqueued_at=now, retried_at=now, dead_reason=None,
                                   recoveries=0)
            run_keys = self.keys.run(payload.run_id or "-")
            node = "" if payload.node_id is None else str(payload.node_id)
            moved = self.scripts["retry_dead"](
                keys=run_keys, args=[self.prefix, jid, num(now), entry, node, encode(revived)])
        return bool(moved)

    # -- InstanceRegistry ------------------------------------------------------------------

    def heartbeat(self, worker_id: str, info: Mapping[str, str], ttl_s: float, now: float) -> None:
        """Register the worker as alive until now + ttl_s (with the outage rule of the port)."""
        fields = [part for item in info.items() for part in item]
        with translate("heartbeat"):
            self.scripts["heartbeat"](
                keys=[self.keys("workers"), self.keys("worker", worker_id), self.keys("beat")],
                args=[self.prefix, worker_id, num(now), num(ttl_s),
                      max(3600, int(ttl_s * 10)), *fields])

    def workers(self, now: float) -> list[WorkerInfo]:
        """Every registered worker, alive or not."""
        with translate("workers"):
            listed = self.client.zrange(self.keys("workers"), 0, -1, withscores=True)
            pipe = self.client.pipeline(transaction=False)
            for worker_id, _ in listed:
                pipe.hgetall(self.keys("worker", worker_id))
            infos = pipe.execute()
        return sorted((WorkerInfo(w, float(exp) > now, float(exp), dict(info))
                       for (w, exp), info in zip(listed, infos, strict=True)),
                      key=lambda worker: worker.worker_id)

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker from the registry, freeing any limit slot still recorded for it."""
        with translate("forget_worker"):
            self.scripts["forget_worker"](
                keys=[self.keys("workers"), self.keys("worker", worker_id)],
                args=[self.prefix, worker_id])

    def recover(self, worker_id: str) -> int:
        """Move a dead worker's held jobs back to their queues, one atomic move each, keeping
        their order (started ones ahead of prefetched ones)."""
        moved = 0
        for delivery in reversed(self.held(worker_id)):
            moved += self.recover_job(worker_id, delivery)
        return moved

    def held(self, worker_id: str) -> list[Delivery]:
        """The jobs a worker holds: per queue, the started ones, then the prefetched ones."""
        queues = self._queues()
        with translate("held"):
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                pipe.lrange(self.keys.in_progress(worker_id, queue), 0, -1)
                pipe.lrange(self.keys.prefetch(worker_id, queue), 0, -1)
            lists = pipe.execute()
        held: list[Delivery] = []
        for index, queue in enumerate(queues):
            held += [Delivery(raw, queue) for raw in lists[2 * index]]
            held += [Delivery(raw, queue, True) for raw in lists[2 * index + 1]]
        return held

    def recover_job(self, worker_id: str, delivery: Delivery) -> bool:
        """Move one held job back to its queue head, atomically (recoveries + 1 if started)."""
        pushed = raw_bytes(delivery.raw if delivery.prefetched else bump_recoveries(delivery.raw))
        with translate("recover_job"):
            return bool(self.scripts["recover_job"](
                keys=[self.keys.held(worker_id, delivery)],
                args=[self.prefix, delivery.queue, raw_bytes(delivery.raw), pushed, worker_id]))

    def discard(self, worker_id: str, delivery: Delivery) -> bool:
        """Drop one held job (freeing its limit slot)."""
        return self._drop_held(worker_id, delivery, "discard")

    def log_recoveries(self, entries: Sequence[str], keep: int) -> None:
        """Prepend recovery records, keeping the newest `keep`."""
        if not entries:
            return
        with translate("log_recoveries"):
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(self.keys("recovered"), *entries)
            pipe.ltrim(self.keys("recovered"), 0, keep - 1)
            pipe.execute()

    def recovery_log(self, limit: int) -> list[str]:
        """The newest recovery records."""
        with translate("recovery_log"):
            return list(self.client.lrange(self.keys("recovered"), 0, limit - 1))

    def acquire_lock(self, name: str, ttl_s: float, now: float) -> str | None:
        """Take lock `name` (SET NX PX); None if someone holds it."""
        token = uuid.uuid4().hex
        with translate("acquire_lock"):
            taken = self.client.set(self.keys("lock", name), token, nx=True,
                                    px=max(1, int(ttl_s * 1000)))
        return token if taken else None

    def release_lock(self, name: str, token: str) -> bool:
        """Release lock `name` only if `token` holds it (compare-and-delete)."""
        with translate("release_lock"):
            return bool(self.scripts["release_lock"](keys=[self.keys("lock", name)], args=[token]))

