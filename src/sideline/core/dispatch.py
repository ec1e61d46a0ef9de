"""Turn a transition's releases and callback into the jobs an adapter must push."""

from __future__ import annotations

import attrs

from sideline.core.payload import Payload, decode
from sideline.core.run import RunPlan, Transition

__all__ = ["Outgoing", "outgoing"]


@attrs.frozen
class Outgoing:
    """A job to push now (`at` is None) or to schedule at `at` (seconds since the epoch)."""

    payload: Payload
    at: float | None


def outgoing(plan: RunPlan, transition: Transition, now: float) -> list[Outgoing]:
    """The jobs a transition pushes: released nodes (delayed ones scheduled) and the callback."""
    jobs: list[Outgoing] = []
    for release in transition.releases:
        payload = attrs.evolve(decode(plan.node_payloads[release.node_id]), enqueued_at=now)
        at = now + release.delay_ms / 1000.0 if release.delay_ms > 0 else None
        jobs.append(Outgoing(payload, at))
    callback = {"success": plan.on_success, "failure": plan.on_failure}.get(
        transition.callback or "")
    if callback is not None:
        jobs.append(Outgoing(attrs.evolve(decode(callback), enqueued_at=now), None))
    return jobs
