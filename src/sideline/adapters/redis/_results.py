"""ResultStore on Redis: results and run signals as one-element lists, waited on by
BRPOPLPUSH; job info as a hash; stop requests in a sorted set.

A stored result ("result:<jid>", written by settle.lua) and a run's finished signal
("run:<id>:done", written by _lib.lua settle) are lists of exactly one element. A waiter
blocks with BRPOPLPUSH key key: it moves the element from the tail to the head of the
same list, which leaves a one-element list as it was, so nothing is consumed and every
waiter blocked on the key is served when it is written (Redis serves the blocked clients
of a key while the list is not empty). Waiting never polls: each blocking call lasts as
long as the caller's timeout allows, cut in slices that end before the client's socket
timeout (`block_limit_s`, as QueueOps.fetch).

BRPOPLPUSH rather than BLMOVE key key RIGHT LEFT (the same move): fakeredis answers a
BLMOVE on a missing key at once, so a waiter on it would spin; both servers block on
BRPOPLPUSH, which Redis keeps (deprecated, not removed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from sideline.adapters.redis._base import RedisBase, num, translate

__all__ = ["STOP_REQUEST_TTL_S", "ResultOps"]

STOP_REQUEST_TTL_S = 24 * 3600
"""How long a stop request is kept (ResultStore.request_stop: a day)."""

_SHORTEST_BLOCK_S = 0.01
"""The shortest blocking call: Redis reads a timeout of 0 as "forever"."""


class ResultOps(RedisBase):
    """Job results, job info, run-finished signals and stop requests."""

    def get_results(self, jids: Sequence[str]) -> list[str | None]:
        """The stored result records of `jids`, None where none is (one round trip)."""
        if not jids:
            return []
        with translate("get_results"):
            pipe = self.client.pipeline(transaction=False)
            for jid in jids:
                pipe.lindex(self.keys("result", jid), 0)
            found: list[str | None] = pipe.execute()
        return found

    def wait_result(self, jid: str, timeout_s: float) -> str | None:
        """Block until the result of `jid` is stored (at most `timeout_s`); None on timeout."""
        key = self.keys("result", jid)
        with translate("wait_result"):
            found: str | None = self.client.lindex(key, 0)
        if found is not None:
            return found
        return self._wait_list(key, timeout_s, "wait_result")

    def set_job_info(self, jid: str, fields: Mapping[str, str], ttl_s: int) -> None:
        """Merge `fields` into the job's info hash, which expires `ttl_s` from now."""
        key = self.keys("jobinfo", jid)
        with translate("set_job_info"):
            pipe = self.client.pipeline(transaction=True)
            if fields:
                pipe.hset(key, mapping=dict(fields))
            pipe.expire(key, int(ttl_s))
            pipe.execute()

    def job_info(self, jid: str) -> dict[str, str]:
        """The job's info hash (empty if none is stored)."""
        with translate("job_info"):
            found: dict[str, str] = self.client.hgetall(self.keys("jobinfo", jid))
        return found

    def wait_run(self, run_id: str, timeout_s: float) -> bool:
        """Block until run `run_id` has finished (at most `timeout_s`); False on timeout."""
        key = self.keys("run", run_id, "done")
        with translate("wait_run"):
            if self.client.exists(key):
                return True
        return self._wait_list(key, timeout_s, "wait_run") is not None

    def request_stop(self, targets: Sequence[str], now: float) -> None:
        """Record stop requests for `targets` at `now`; drop those older than a day."""
        if not targets:
            return
        key = self.keys("stops")
        with translate("request_stop"):
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(key, dict.fromkeys(targets, now))
            pipe.zremrangebyscore(key, "-inf", f"({num(now - STOP_REQUEST_TTL_S)}")
            pipe.execute()

    def stop_requests(self, targets: Sequence[str]) -> list[str]:
        """Those of `targets` that have a stop request (one ZMSCORE)."""
        if not targets:
            return []
        with translate("stop_requests"):
            scores = self.client.zmscore(self.keys("stops"), list(targets))
        return [target for target, score in zip(targets, scores, strict=True)
                if score is not None]

    def _wait_list(self, key: str, timeout_s: float, operation: str) -> str | None:
        """Block until the one-element list `key` exists (at most `timeout_s`); its element,
        or None. Each BRPOPLPUSH ends before the socket timeout; on its "nil" (that slice
        timed out) the next slice begins, until the deadline."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while (left := deadline - time.monotonic()) > 0:
            wait = max(min(left, self.block_limit_s), _SHORTEST_BLOCK_S)
            with translate(operation):
                found: str | None = self.client.brpoplpush(key, key, timeout=wait)
            if found is not None:
                return found
        return None
