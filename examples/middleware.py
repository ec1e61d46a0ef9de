"""Client middleware (change, drop or reject a job before it is pushed) and server
middleware (wrap every execution, here to time it).

Client middleware is a callable `(payload) -> payload | None`: return the payload
(changed with `attrs.evolve`, since payloads are frozen) to push it, None to drop it
silently, or raise JobRejected to refuse it loudly. Server middleware is a callable
`(context, call_next) -> result` that must call `call_next()` to run the job.

Runs in collect mode and drains, so the output is deterministic.
Exits 0 when every check passed, 1 otherwise. Run it with `python examples/middleware.py`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

from sideline import App, JobContext, JobRejected, Payload

app = App(testing="collect")
timings_ms: dict[str, float] = {}
sent: list[str] = []


def add_audit_tag(payload: Payload) -> Payload:
    """Change: tag every job pushed by this process."""
    return attrs.evolve(payload, tags=[*payload.tags, "audited"])


def drop_test_addresses(payload: Payload) -> Payload | None:
    """Drop: never send mail to example.com (enqueue() then returns None)."""
    if payload.name == "mw.send" and str(payload.args[0]).endswith("@example.com"):
        return None
    return payload


def refuse_huge_batches(payload: Payload) -> Payload:
    """Reject: raise JobRejected so the caller knows the job was refused."""
    if payload.name == "mw.send" and len(payload.args[0]) > 100:
        raise JobRejected(f"{payload.name}: address longer than 100 characters")
    return payload


def time_jobs(context: JobContext, call_next: Callable[[], Any]) -> Any:
    """Server middleware: measure how long each job takes, in milliseconds."""
    started = time.perf_counter()
    try:
        return call_next()
    finally:
        timings_ms[context.payload.jid] = (time.perf_counter() - started) * 1000


app.client_middleware.extend([add_audit_tag, drop_test_addresses, refuse_huge_batches])
app.server_middleware.append(time_jobs)


@app.job(name="mw.send", tags=["mail"])
def send(address: str) -> None:
    """Pretend to send a mail (takes about 20 ms)."""
    time.sleep(0.02)
    sent.append(address)


def main() -> int:
    """Push three jobs through the client chain, drain, and check; return the exit code."""
    kept = send.enqueue("ada@sideline.dev")
    dropped = send.enqueue("bob@example.com")
    try:
        send.enqueue("x" * 200 + "@sideline.dev")
        rejected = None
    except JobRejected as exc:
        rejected = str(exc)
    queued = [job.raw for job in app.admin.queue_jobs("default").jobs]  # raw JSON, head first
    print(f"kept jid {kept}, dropped -> {dropped}, rejected -> {rejected!r}")
    print(f"queued payload: {queued[0] if queued else None}")

    app.drain()
    print(f"sent: {sent}")
    for jid, ms in timings_ms.items():
        print(f"job {jid} took {ms:.1f} ms")
    ok = (kept is not None and dropped is None and rejected is not None and len(queued) == 1
          and '"tags":["mail","audited"]' in queued[0] and sent == ["ada@sideline.dev"]
          and timings_ms.get(kept, 0) >= 20)
    print("middleware OK" if ok else "middleware FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
