"""AdminStore of the memory backend: the same windows and moves as the Redis scripts."""

from __future__ import annotations

import threading
from collections import deque
from contextlib import AbstractContextManager

import attrs

from sideline.core.admin import check_kind, check_signal, latency_s
from sideline.core.batch import BatchEvent
from sideline.core.errors import PayloadError
from sideline.core.payload import Payload, decode, decode_stored, encode
from sideline.core.ports import SortedEntry
from sideline.core.run import Transition

__all__ = ["AdminOps"]


class AdminOps:
    """A mixin of MemoryBackend: it uses the backend's lock, queues, sets and workers."""

    _lock: threading.RLock
    _queues: dict[str, deque[str]]
    _sets: dict[str, dict[str, tuple[float, str]]]
    _workers: dict[str, tuple[float, dict[str, str]]]

    def _op(self, name: str) -> AbstractContextManager[None]:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _push_raw(self, queue: str, raw: str, front: bool = False) -> None:  # pragma: no cover
        raise NotImplementedError

    def _batch_settled(self, payload: Payload, event: BatchEvent,
                       now: float) -> Transition:  # pragma: no cover (overridden)
        raise NotImplementedError

    def _add_dead(self, payload: Payload, now: float) -> None:  # pragma: no cover (overridden)
        raise NotImplementedError

    def queue_page(self, queue: str, start: int, count: int) -> list[str]:
        """Up to `count` raw jobs of `queue` from position `start` (0 is the head)."""
        if count <= 0 or start < 0:
            return []
        with self._lock:
            items = self._queues.get(queue, deque())
            return [items[i] for i in range(start, min(start + count, len(items)))]

    def queue_latency_s(self, queue: str, now: float) -> float:
        """The age of the job at the head of `queue`; 0 when empty or unreadable."""
        with self._lock:
            items = self._queues.get(queue)
            head = items[0] if items else None
        return latency_s(head, now)

    def delete_queued(self, queue: str, raw: str) -> bool:
        """Remove one job, by its exact text, from `queue`."""
        with self._lock:
            items = self._queues.get(queue)
            if not items or raw not in items:
                return False
            items.remove(raw)
            return True

    def clear_queue(self, queue: str) -> int:
        """Remove every job of `queue`; return how many there were."""
        with self._lock:
            items = self._queues.get(queue)
            if items is None:
                return 0
            size = len(items)
            items.clear()
            return size

    def set_size(self, kind: str) -> int:
        """The number of entries in set `kind`."""
        with self._lock:
            return len(self._sets[check_kind(kind)])

    def _ranked(self, kind: str) -> list[tuple[str, tuple[float, str]]]:
        # Redis orders equal scores by member: so do we
        return sorted(self._sets[check_kind(kind)].items(), key=lambda item: (item[1][0], item[0]))

    def set_page(self, kind: str, start: int, count: int) -> list[SortedEntry]:
        """Up to `count` entries of set `kind` from rank `start`, earliest first."""
        if count <= 0 or start < 0:
            return []
        with self._lock:
            window = self._ranked(kind)[start:start + count]
        return [SortedEntry(at, decode_stored(raw, key, "default"), key)
                for key, (at, raw) in window]

    def set_find(self, kind: str, key: str) -> SortedEntry | None:
        """The entry of set `kind` under `key`, if any."""
        with self._lock:
            found = self._sets[check_kind(kind)].get(key)
        if found is None:
            return None
        return SortedEntry(found[0], decode_stored(found[1], key, "default"), key)

    def set_retry_now(self, kind: str, key: str, now: float) -> bool:
        """Push a scheduled or retry entry to its queue now (enqueued_at = now)."""
        if kind not in ("scheduled", "retry"):
            raise ValueError(f"retry now takes a scheduled or retry entry; got kind {kind!r}")
        with self._op("set_retry_now"):
            found = self._sets[kind].pop(key, None)
            if found is None:
                return False
            payload = _payload(found[1])
            if payload is None:  # not a payload: the default queue's worker dead-letters it
                self._push_raw("default", found[1])
            else:
                self._push_raw(payload.queue, encode(attrs.evolve(payload, enqueued_at=now)))
            return True

    def set_kill(self, key: str, now: float) -> bool:
        """Move a retry entry to the dead set (trimmed by size and age)."""
        with self._op("set_kill"):
            found = self._sets["retry"].pop(key, None)
            if found is None:
                return False
            payload = decode_stored(found[1], key, "default")
            self._add_dead(attrs.evolve(payload, dead=True, dead_reason="killed"), now)
            if payload.batch_id is not None:  # a killed member job died, for its batch
                self._batch_settled(payload, BatchEvent.DIED, now)
            return True

    def server_info(self) -> dict[str, str]:
        """The embedded backend: nothing is shared with other processes."""
        with self._op("server_info"):
            return {"backend": "memory (embedded, this process only)",
                    "queues": str(len(self._queues)), "workers": str(len(self._workers))}

    def signal_worker(self, worker_id: str, signal: str) -> bool:
        """Store a signal in a registered worker's info; a "stop" is never downgraded."""
        check_signal(signal)
        with self._op("signal_worker"):
            found = self._workers.get(worker_id)
            if found is None:
                return False
            if not (signal == "quiet" and found[1].get("signal") == "stop"):
                found[1]["signal"] = signal
            return True

    def worker_signal(self, worker_id: str) -> str | None:
        """The signal stored for a worker, if any."""
        with self._lock:
            found = self._workers.get(worker_id)
            return None if found is None else found[1].get("signal") or None


def _payload(raw: str) -> Payload | None:
    try:
        return decode(raw)
    except (PayloadError, ValueError, TypeError):
        return None
