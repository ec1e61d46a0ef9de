"""Orphans: jobs held by workers that died, their recovery, and the recovery log.

Recovery is continuous (every live worker runs passes); this module is also the API
behind the orphan view: list what dead workers still hold, retry (recover) or delete
it one by one or in bulk, and read the log of what was recovered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import cattrs

from sideline.core.errors import BackendError, PayloadError
from sideline.core.payload import Payload, decode
from sideline.core.ports import Delivery

if TYPE_CHECKING:
    from sideline.core.ports import Backend
    from sideline.runtime.typed import RunAccess

__all__ = ["Orphan", "Recovery", "delete_orphans", "find_orphans", "forget_emptied",
           "recover_orphans", "recovery_log"]

log = logging.getLogger("sideline.recovery")

RECOVERY_LOG_SIZE = 1000
_converter = cattrs.Converter()


@attrs.frozen
class Orphan:
    """A job in the in-progress list of a worker whose heartbeat expired."""

    worker_id: str
    instance: str
    orphaned_at: float
    """When the worker's heartbeat expired (seconds since the epoch)."""
    delivery: Delivery
    payload: Payload | None
    error: str | None = None
    """Why the job's text cannot be read, if it cannot."""

    @property
    def jid(self) -> str | None:
        """The job id, when the text is a payload."""
        return self.payload.jid if self.payload is not None else None


@attrs.frozen
class Recovery:
    """One recovered job, as kept in the recovery log."""

    jid: str | None
    name: str | None
    queue: str
    args: list[Any]
    worker_id: str
    instance: str
    orphaned_at: float
    recovered_at: float
    recoveries: int
    """How many times the job has now been recovered (past max_recoveries it is a poison pill)."""
    error: str | None = None


def find_orphans(ports: RunAccess, worker_ids: Sequence[str] | None = None) -> list[Orphan]:
    """The jobs held by dead workers (all of them, or those in `worker_ids`)."""
    backend = ports.backend
    found: list[Orphan] = []
    for worker in backend.workers(ports.clock.now()):
        if worker.alive or (worker_ids is not None and worker.worker_id not in worker_ids):
            continue
        for delivery in backend.held(worker.worker_id):
            try:
                payload, error = decode(delivery.raw), None
            except PayloadError as exc:
                payload, error = None, str(exc)
            except Exception as exc:  # no entry may stop the recovery pass
                payload, error = None, f"{type(exc).__name__}: {exc}"
            found.append(Orphan(worker.worker_id, worker.info.get("instance", worker.worker_id),
                                worker.expires_at, delivery, payload, error))
    return found


def recover_orphans(ports: RunAccess, orphans: Sequence[Orphan]) -> int:
    """Move orphans back to the heads of their queues (each move atomic); log each one.

    Orphans are moved in reverse, each to its queue's head, so they keep their relative
    order (`held` lists started jobs ahead of prefetched ones, oldest first).
    """
    backend = ports.backend
    now = ports.clock.now()
    records: list[str] = []
    for orphan in reversed(orphans):
        try:
            moved = backend.recover_job(orphan.worker_id, orphan.delivery)
        except BackendError:
            raise  # the pass stops; the next one goes on where this one stopped
        except Exception:  # one entry must not stop the pass
            log.exception("could not recover a job of dead worker %s", orphan.worker_id)
            continue
        if not moved:
            continue  # another worker's pass moved it first
        payload = orphan.payload
        record = Recovery(
            jid=payload.jid if payload else None, name=payload.name if payload else None,
            queue=orphan.delivery.queue, args=payload.args if payload else [orphan.delivery.raw],
            worker_id=orphan.worker_id, instance=orphan.instance,
            orphaned_at=orphan.orphaned_at, recovered_at=now,
            recoveries=(payload.recoveries + (not orphan.delivery.prefetched)) if payload else 1,
            error=orphan.error)
        records.append(json.dumps(_converter.unstructure(record), separators=(",", ":")))
        log.warning("recovered %s jid=%s from dead worker %s (recovery %d)",
                    record.name, record.jid, orphan.worker_id, record.recoveries)
    backend.log_recoveries(records[::-1], RECOVERY_LOG_SIZE)
    forget_emptied(backend, {o.worker_id for o in orphans})
    return len(records)


def delete_orphans(backend: Backend, orphans: Sequence[Orphan]) -> int:
    """Drop orphans for good (they will not run); return how many were still held."""
    dropped = sum(backend.discard(o.worker_id, o.delivery) for o in orphans)
    forget_emptied(backend, {o.worker_id for o in orphans})
    return dropped


def recovery_log(backend: Backend, limit: int = 100) -> list[Recovery]:
    """The newest recovered jobs, newest first."""
    return [_converter.structure(json.loads(entry), Recovery)
            for entry in backend.recovery_log(limit)]


def forget_emptied(backend: Backend, worker_ids: set[str] | Sequence[str]) -> None:
    """A dead worker that holds nothing any more leaves the registry."""
    for worker_id in worker_ids:
        if not backend.held(worker_id):
            backend.forget_worker(worker_id)
