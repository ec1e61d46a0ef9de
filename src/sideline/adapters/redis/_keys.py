"""Key names: every key of a namespace carries the hash tag {namespace} (one Cluster slot)."""

from __future__ import annotations

import re

from sideline.core.errors import ConfigurationError
from sideline.core.ports import Delivery

__all__ = ["Keys"]

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Keys:
    """Builds the keys of one namespace.

    Layout (P = "{namespace}:"):
        P queues                       set of queue names
        P queue:<q>                    list, FIFO (RPUSH tail, LMOVE from the head)
        P wake:<q>                     list of wake tokens for blocked fetchers
        P inprogress:<worker>:<q>      list of jobs a worker fetched from <q> and started
        P prefetch:<worker>:<q>        list of jobs a worker fetched from <q>, not yet started
        P beat                         the time of the newest heartbeat (outage detection)
        P schedule | retry | dead      sorted sets of jids by time
        P <set>:jobs                   hash jid -> "queue|payload"
        P run:<id>[:nodes|:remaining|:graph|:payloads]   a workflow run's state
        P run:<id>:memory              hash key -> JSON value: the run's memory (own TTL)
        P run:<id>:done                list of one element, the run's status, while the run
                                       is finished (the wait_run signal; the run's TTL)
        P runs                         sorted set run id -> created_at: the newest runs
        P workers, P worker:<id>       heartbeats and worker info
        P lock:<name>                  named locks
        P result:<jid>                 list of one element: a finished job's result record
                                       (JSON; waiters rotate it, never consume it; own TTL)
        P jobinfo:<jid>                hash: a job's state, progress... (own TTL)
        P pushed:<jid>                 "1": push_once pushed this jid (own TTL)
        P stops                        sorted set "jid:<jid>" | "run:<id>" -> requested at
        P limits                       hash: limit key in use -> "concurrency|<max>" or
                                       "rate|<limit>|<per_s>" (the admin view's index)
        P limit:<key>:running          hash jid -> worker holding one of the key's slots
        P limit:<key>:parked           list of "queue|payload" parked until a slot frees
        P limit:<key>:starts           sorted set "<jid>@<time>" by start (rate; own TTL)
    """

    def __init__(self, namespace: str) -> None:
        if not _NAMESPACE.match(namespace):
            raise ConfigurationError(
                f"namespace {namespace!r} is invalid: use 1-64 letters, digits, '_', '.', ':', '-'")
        self.namespace = namespace
        self.prefix = f"{{{namespace}}}:"

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def queue(self, queue: str) -> str:
        return self("queue", queue)

    def in_progress(self, worker_id: str, queue: str) -> str:
        return self("inprogress", worker_id, queue)

    def prefetch(self, worker_id: str, queue: str) -> str:
        return self("prefetch", worker_id, queue)

    def held(self, worker_id: str, delivery: Delivery) -> str:
        """The list that holds `delivery` for `worker_id`: in-progress, or prefetch."""
        if delivery.prefetched:
            return self.prefetch(worker_id, delivery.queue)
        return self.in_progress(worker_id, delivery.queue)

    def memory(self, run_id: str) -> str:
        return self("run", run_id, "memory")

    def run(self, run_id: str) -> list[str]:
        base = self("run", run_id)
        return [base, f"{base}:nodes", f"{base}:remaining", f"{base}:graph", f"{base}:payloads"]
