"""AdminStore on Redis: windows over one list or sorted set each, never a keyspace scan."""

from __future__ import annotations

from redis.cluster import RedisCluster

from sideline.adapters.redis._base import RedisBase, num, translate
from sideline.adapters.redis._queues import _set_key, _stored
from sideline.core.admin import check_signal, latency_s
from sideline.core.payload import raw_bytes
from sideline.core.ports import SortedEntry

__all__ = ["AdminOps"]


class AdminOps(RedisBase):
    """The admin API's reads and writes: queue and set pages, bulk-able single moves,
    worker signals. Each multi-key write is one script."""

    def server_info(self) -> dict[str, str]:
        """Redis's version, mode, memory used (and its peak), clients and uptime."""
        with translate("server_info"):
            info = self.client.info()
        if isinstance(self.client, RedisCluster):  # {node: info}: show the first primary's
            info = next(iter(info.values())) if info and isinstance(
                next(iter(info.values())), dict) else info
        fields = (("redis_version", "Redis version"), ("redis_mode", "mode"),
                  ("used_memory_human", "memory used"), ("used_memory_peak_human", "memory peak"),
                  ("connected_clients", "clients"), ("uptime_in_days", "uptime (days)"))
        found = {label: str(info[key]) for key, label in fields if key in info}
        return {"backend": f"Redis ({self.keys.namespace})", **found}

    def queue_page(self, queue: str, start: int, count: int) -> list[str]:
        """Up to `count` raw jobs of `queue` from position `start` (LRANGE)."""
        if count <= 0 or start < 0:
            return []
        with translate("queue_page"):
            return list(self.client.lrange(self.keys.queue(queue), start, start + count - 1))

    def queue_latency_s(self, queue: str, now: float) -> float:
        """The age of the job at the head of `queue`; 0 when empty or unreadable."""
        with translate("queue_latency_s"):
            head = self.client.lindex(self.keys.queue(queue), 0)
        return latency_s(head, now)

    def delete_queued(self, queue: str, raw: str) -> bool:
        """Remove one job, by its exact text, from `queue`."""
        with translate("delete_queued"):
            return bool(self.client.lrem(self.keys.queue(queue), 1, raw_bytes(raw)))

    def clear_queue(self, queue: str) -> int:
        """Remove every job of `queue` (LLEN and DEL in one transaction)."""
        with translate("clear_queue"):
            pipe = self.client.pipeline(transaction=True)
            pipe.llen(self.keys.queue(queue))
            pipe.delete(self.keys.queue(queue))
            size, _ = pipe.execute()
        return int(size)

    def set_size(self, kind: str) -> int:
        """The number of entries in set `kind` (ZCARD)."""
        with translate("set_size"):
            return int(self.client.zcard(self.keys(_set_key(kind))))

    def set_find(self, kind: str, key: str) -> SortedEntry | None:
        """The entry of set `kind` under `key`, if any."""
        name = _set_key(kind)
        with translate("set_find"):
            pipe = self.client.pipeline(transaction=True)
            pipe.zscore(self.keys(name), key)
            pipe.hget(self.keys(name, "jobs"), key)
            score, entry = pipe.execute()
        if score is None or entry is None:
            return None
        return SortedEntry(float(score), _stored(key, entry), key)

    def set_retry_now(self, kind: str, key: str, now: float) -> bool:
        """Push a scheduled or retry entry to its queue now, atomically."""
        if kind not in ("scheduled", "retry"):
            raise ValueError(f"retry now takes a scheduled or retry entry; got kind {kind!r}")
        name = _set_key(kind)
        with translate("set_retry_now"):
            return bool(self.scripts["admin_retry_now"](
                keys=[self.keys(name)], args=[self.prefix, name, key, num(now)]))

    def set_kill(self, key: str, now: float) -> bool:
        """Move a retry entry to the dead set, atomically."""
        with translate("set_kill"):
            return bool(self.scripts["admin_kill"](
                keys=[self.keys("retry")],
                args=[self.prefix, key, num(now), self.max_dead, num(self.dead_ttl_s)]))

    def signal_worker(self, worker_id: str, signal: str) -> bool:
        """Store a signal in a registered worker's info hash."""
        check_signal(signal)
        with translate("signal_worker"):
            return bool(self.scripts["admin_signal"](
                keys=[self.keys("workers"), self.keys("worker", worker_id)],
                args=[self.prefix, worker_id, signal]))

    def worker_signal(self, worker_id: str) -> str | None:
        """The signal stored for a worker, if any."""
        with translate("worker_signal"):
            found: str | None = self.client.hget(self.keys("worker", worker_id), "signal")
        return found or None
