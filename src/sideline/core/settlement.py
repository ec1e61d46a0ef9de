"""What happens when a job ends: one pure decision, carried out by one atomic settle.

`decide` takes the outcome of a run (value, exception, timeout, stop), the payload, the
job's options, the time and a random draw, and returns a `Settlement`: ack, retry at a
time, or bury with a reason; the workflow event; the error record; the counters. An
adapter's `settle` applies a Settlement in one atomic step (one Lua script on Redis, one
locked method in memory); observers see it afterwards. A new concern adds a field here
and a function to the settle script, never a branch in the executor.
"""

from __future__ import annotations

import datetime
import enum
import functools
import traceback
from collections.abc import Sequence
from typing import Any

import attrs

from sideline.core.batch import BatchEvent
from sideline.core.errors import JobStopped, JobTimeout, RemoteJobError, SchemaError
from sideline.core.jobs import JobOptions
from sideline.core.payload import Payload
from sideline.core.results import JobState, ResultRecord
from sideline.core.retry import next_retry_delay_s

__all__ = [
    "BACKTRACE_LINES",
    "Action",
    "ErrorRecord",
    "NodeEvent",
    "Outcome",
    "Settlement",
    "bury",
    "check_acks",
    "decide",
    "is_plain_ack",
    "recording",
    "stat_buckets",
]

BACKTRACE_LINES = 20
"""How many lines of a backtrace an error record keeps (the innermost ones)."""


class Action(enum.StrEnum):
    """What happens to the job itself."""

    ACK = "ack"
    RETRY = "retry"
    BURY = "bury"


class NodeEvent(enum.StrEnum):
    """What a workflow step's ending means for its run."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The step is dead: the run fails, or goes on if the step may fail (the graph says)."""


@attrs.frozen
class Outcome:
    """How one run of a job ended: a value, or an exception (a timeout or a stop is one)."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    stopped: bool = False
    run_cancelled: bool = False
    """It was stopped because its workflow run was cancelled (acked, not kept dead)."""
    opened_batches: tuple[str, ...] = ()
    """Batches the run opened that hold its workflow step (dynamic fan-out)."""

    @property
    def succeeded(self) -> bool:
        """True when the job returned without an error, in time and not stopped."""
        return self.error is None and not self.timed_out and not self.stopped


@attrs.frozen
class ErrorRecord:
    """An error as stored with retry and dead entries: class, message, trimmed backtrace."""

    error_class: str
    message: str
    backtrace: tuple[str, ...] = ()

    @classmethod
    def of(cls, error: BaseException, lines: int = BACKTRACE_LINES) -> ErrorRecord:
        """The record of `error`, keeping the innermost `lines` lines of its backtrace."""
        if isinstance(error, RemoteJobError):  # the remote error is the job's own
            remote = error.backtrace.rstrip("\n").split("\n") if error.backtrace else []
            return cls(error.error_class, error.message, tuple(remote[-lines:]))
        formatted = traceback.format_exception(type(error), error, error.__traceback__)
        text = "".join(formatted).rstrip("\n").split("\n")
        return cls(type(error).__name__, str(error), tuple(text[-lines:]))


@attrs.frozen
class Settlement:
    """The decision about one delivery; `settle` applies all of it atomically.

    Attributes:
        action: ack, retry (at `retry_at`) or bury (with `reason`).
        payload: what is stored: for a retry the payload with the error fields and the
            retry count raised, for a burial with `dead_reason` too; for an ack the
            payload as it ran.
        retry_at: when a retried job is due (seconds since the epoch).
        reason: why a job is buried.
        keep_dead: a buried job goes to the dead set (False: it is dropped).
        node: the event of a workflow step (None for a plain job or a step that must
            not touch its run, like a forged one).
        error: the error record of a failure.
        exhausted: retries were exhausted (the retries-exhausted hook and death
            handlers run, after the settle).
        processed, failed: what the stats counters add (1/0, or 1/1).
        release_unique: the uniqueness lock the job holds is released.
        await_batches: batches a workflow step's job opened (`Outcome.opened_batches`);
            the step completes when they succeed.
        tracked: the job stores its result (`store_result`): a retry records the state
            "retrying" in its info record, an ack or a burial stores `result`.
        result: the result record to store (JSON text, core.results.ResultRecord).
        result_ttl_s: how long the result and the info record are kept.
    """

    action: Action
    payload: Payload
    retry_at: float | None = None
    reason: str | None = None
    keep_dead: bool = True
    node: NodeEvent | None = None
    error: ErrorRecord | None = None
    exhausted: bool = False
    processed: int = 1
    failed: int = 0
    release_unique: bool = False
    await_batches: tuple[str, ...] = ()
    tracked: bool = False
    result: str | None = None
    result_ttl_s: int = 0

    @property
    def batch(self) -> BatchEvent | None:
        """What the ending means for the job's batch (None: not a member, or not run): a
        success when acked without a failure, a death when buried (or acked as failed),
        else a failure that will be retried."""
        if self.payload.batch_id is None or self.processed == 0:
            return None
        if self.action is Action.RETRY:
            return BatchEvent.FAILED
        if self.action is Action.BURY or self.failed:
            return BatchEvent.DIED
        return BatchEvent.SUCCEEDED


def decide(outcome: Outcome, payload: Payload, options: JobOptions, now: float,
           draw: float) -> Settlement:
    """Decide what happens to a job that ran: the pure heart of the runtime.

    Args:
        outcome: how the run ended.
        payload: the payload it ran with.
        options: the job's declared options (retry_in, retry_schema_errors).
        now: the time of the decision (seconds since the epoch).
        draw: a uniform float in [0, 1) for the backoff's jitter.
    """
    return recording(_decide(outcome, payload, options, now, draw), options, now, outcome)


def _decide(outcome: Outcome, payload: Payload, options: JobOptions, now: float,
            draw: float) -> Settlement:
    step = payload.run_id is not None and payload.node_id is not None
    if outcome.succeeded:
        return Settlement(Action.ACK, payload, node=NodeEvent.SUCCEEDED if step else None,
                          release_unique=payload.unique_key is not None,
                          await_batches=outcome.opened_batches if step else ())
    error = outcome.error if outcome.error is not None else _stand_in(outcome)
    if outcome.stopped and outcome.run_cancelled:
        # its run was cancelled: nothing to keep or retry, and the run is over already
        return Settlement(Action.ACK, payload, release_unique=payload.unique_key is not None)
    record = ErrorRecord.of(error)
    failed = attrs.evolve(payload, error_class=record.error_class,
                          error_message=record.message, error_backtrace=list(record.backtrace),
                          failed_at=now)
    if isinstance(error, SchemaError) and not options.retry_schema_errors:
        return _bury(failed, record, str(error), step, exhausted=True)
    if outcome.stopped:  # stopped by hand: kept in the dead set, never retried on its own
        return _bury(failed, record, f"stopped: {record.message}", step, exhausted=False)
    delay_s = next_retry_delay_s(payload.retry_count, payload.retry, error, draw,
                                 options.retry_in)
    if delay_s is not None:
        retried = attrs.evolve(failed, retry_count=payload.retry_count + 1)
        return Settlement(Action.RETRY, retried, retry_at=now + delay_s, error=record,
                          failed=1)
    if payload.retry == 0:
        reason = f"failed (retry disabled) with {record.error_class}: {record.message}"
    else:
        reason = (f"retries exhausted ({payload.retry}) after {record.error_class}: "
                  f"{record.message}")
    return _bury(failed, record, reason, step, exhausted=True)


def recording(settlement: Settlement, options: JobOptions | None, now: float,
              outcome: Outcome | None = None) -> Settlement:
    """`settlement` with the result a `store_result` job leaves (options None: unknown job,
    nothing stored): an ack stores its value (or the stop of a cancelled run's step), a
    burial its error, a retry only its state."""
    if options is None or not options.store_result:
        return settlement
    result: ResultRecord | None = None
    if settlement.action is Action.ACK:
        error = None if outcome is None or outcome.succeeded else (
            outcome.error if outcome.error is not None else _stand_in(outcome))
        result = (ResultRecord(JobState.SUCCEEDED, None if outcome is None else outcome.value,
                               finished_at=now) if error is None
                  else ResultRecord(JobState.FAILED, None, type(error).__name__, str(error), now))
    elif settlement.action is Action.BURY:
        record = settlement.error
        result = ResultRecord(JobState.FAILED, None,
                              record.error_class if record else "Error",
                              record.message if record else settlement.reason, now)
    return attrs.evolve(settlement, tracked=True, result_ttl_s=options.result_ttl_s,
                        result=None if result is None else result.encode())


def bury(payload: Payload, error: BaseException, reason: str, now: float, *,
         workflow: bool = True) -> Settlement:
    """Send a job to the dead set without running it (an unknown job, a poison pill, a
    forged step...). With `workflow` False the job's run, if any, is not touched."""
    record = ErrorRecord.of(error)
    dead = attrs.evolve(payload, error_class=payload.error_class or record.error_class,
                        error_message=payload.error_message or record.message,
                        error_backtrace=payload.error_backtrace or list(record.backtrace),
                        failed_at=payload.failed_at or now)
    step = workflow and payload.run_id is not None and payload.node_id is not None
    return _bury(dead, record, reason, step, exhausted=False)


def _bury(payload: Payload, record: ErrorRecord, reason: str, step: bool, *,
          exhausted: bool) -> Settlement:
    return Settlement(Action.BURY, attrs.evolve(payload, dead_reason=reason), reason=reason,
                      keep_dead=payload.dead, node=NodeEvent.FAILED if step else None,
                      error=record, exhausted=exhausted, failed=1)


def _stand_in(outcome: Outcome) -> BaseException:
    return JobTimeout("the job ran past its timeout") if outcome.timed_out else JobStopped(
        "the job was stopped")


def is_plain_ack(settlement: Settlement) -> bool:
    """Whether `settlement` only acks its job and counts it as processed: not a retry or a
    burial, not a failure, and no workflow step, batch, stored result, uniqueness lock or
    limit slot is involved. Nothing but the stats and the worker's in-progress list sees
    such an ack, so a worker may write several in one call (SettlePort.settle_acks), a
    little after their jobs ended."""
    payload = settlement.payload
    return (settlement.action is Action.ACK and settlement.node is None
            and settlement.failed == 0 and settlement.processed == 1
            and not settlement.tracked and not settlement.await_batches
            and not settlement.release_unique and payload.run_id is None
            and payload.batch_id is None and payload.unique_key is None
            and payload.limit_key is None)


def check_acks(acks: Sequence[tuple[Any, Settlement]], fetch: int) -> None:
    """Raise ValueError unless every settlement of `acks` is a plain ack and `fetch` is
    between 0 and their number (settle_acks takes at most one job per ack)."""
    if not 0 <= fetch <= len(acks):
        raise ValueError(f"settle_acks fetches 0 to {len(acks)} jobs (one per ack), "
                         f"got fetch={fetch}")
    for _, settlement in acks:
        if not is_plain_ack(settlement):
            raise ValueError(f"settle_acks writes plain acks only; {settlement.payload.jid} "
                             f"is settled with {settlement.action.value} and more: use settle")


def stat_buckets(now: float) -> tuple[str, str]:
    """The per-minute and per-day bucket names of `now` (UTC): "YYYY-MM-DDTHH:MM", "YYYY-MM-DD"."""
    return _minute_buckets(int(now // 60))


@functools.lru_cache(maxsize=8)
def _minute_buckets(minute: int) -> tuple[str, str]:
    # Every settle asks; formatting a date costs more than the rest of a no-op's settle.
    moment = datetime.datetime.fromtimestamp(minute * 60, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M"), moment.strftime("%Y-%m-%d")
