"""Job results and job state: what a finished job left for whoever waits on it.

A job declared with `store_result=True` leaves a `ResultRecord` when it ends for good
(succeeded, or dead), written by the same atomic `settle` that acks it, so a result is
never stored for a job that is still held, nor lost for one that was acked. While it runs
its state (running, retrying) and its progress live in a small `JobInfo` record. Both
expire `result_ttl_s` after they were last written.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

from sideline.core.errors import SerializationError, SidelineError

__all__ = [
    "DEFAULT_RESULT_TTL_S",
    "JobFailed",
    "JobInfo",
    "JobState",
    "ResultRecord",
    "info_fields",
]

DEFAULT_RESULT_TTL_S = 24 * 3600
"""How long a stored result (and a job's state and progress) is kept: one day."""


class JobState(enum.StrEnum):
    """Where a job is, as far as its stored state tells."""

    PENDING = "pending"
    """Nothing stored yet: queued, scheduled, not started, or unknown (expired, or the job
    does not store results and never reported progress)."""
    RUNNING = "running"
    RETRYING = "retrying"
    """It failed and waits in the retry set for its next attempt."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """It died: out of retries, stopped, or refused (it is in the dead set, if kept)."""


class JobFailed(SidelineError):
    """`JobHandle.result()` of a job that died: carries the error class and message."""

    def __init__(self, jid: str, error_class: str, message: str) -> None:
        self.jid = jid
        self.error_class = error_class
        self.error_message = message
        super().__init__(f"job {jid} failed with {error_class}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.jid, self.error_class, self.error_message))


@attrs.frozen
class ResultRecord:
    """The stored end of a job: its value, or the error it died of."""

    state: JobState
    value: Any = None
    error_class: str | None = None
    error_message: str | None = None
    finished_at: float = 0.0

    def encode(self) -> str:
        """The record as compact JSON text (the value must be JSON-native already)."""
        data: dict[str, Any] = {"state": str(self.state), "finished_at": self.finished_at}
        if self.state is JobState.SUCCEEDED:
            data["value"] = self.value
        else:
            data["error_class"] = self.error_class
            data["error_message"] = self.error_message
        try:
            return json.dumps(data, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:  # checked before; be clear if it slips
            raise SerializationError(f"a job's result is not JSON-native: {exc}") from exc

    @classmethod
    def decode(cls, text: str) -> ResultRecord:
        """The record stored as `text`; an unreadable one reads as a failure saying so."""
        try:
            data = json.loads(text)
            state = JobState(data["state"])
            return cls(state, data.get("value"), data.get("error_class"),
                       data.get("error_message"), float(data.get("finished_at") or 0.0))
        except (ValueError, KeyError, TypeError) as exc:
            return cls(JobState.FAILED, None, "ResultUnreadable",
                       f"the stored result could not be read: {exc}")

    def value_or_raise(self, jid: str) -> Any:
        """The value of a succeeded job; JobFailed for one that died."""
        if self.state is JobState.SUCCEEDED:
            return self.value
        raise JobFailed(jid, self.error_class or "Error", self.error_message or "")


@attrs.frozen
class JobInfo:
    """A job's stored state and progress (all optional: nothing may be stored yet)."""

    jid: str
    state: JobState = JobState.PENDING
    progress: float | None = None
    message: str | None = None
    meta: dict[str, Any] = attrs.field(factory=dict)
    worker: str | None = None
    started_at: float | None = None
    retry_count: int = 0
    result: ResultRecord | None = None

    @classmethod
    def of(cls, jid: str, fields: Mapping[str, str], result: str | None) -> JobInfo:
        """The info read back from the stored fields and result record (each may be absent)."""
        record = None if result is None else ResultRecord.decode(result)
        try:
            state = JobState(fields.get("state", JobState.PENDING))
        except ValueError:
            state = JobState.PENDING
        if record is not None:
            state = record.state
        try:
            meta = json.loads(fields["meta"]) if "meta" in fields else {}
        except ValueError:
            meta = {}
        return cls(jid, state, _number(fields.get("progress")), fields.get("message"),
                   meta if isinstance(meta, dict) else {}, fields.get("worker"),
                   _number(fields.get("started_at")), int(_number(fields.get("retry_count")) or 0),
                   record)


def info_fields(*, state: JobState | None = None, progress: float | None = None,
                message: str | None = None, meta: Mapping[str, Any] | None = None,
                **extra: str) -> dict[str, str]:
    """The stored fields of a JobInfo update (only those given)."""
    fields: dict[str, str] = dict(extra)
    if state is not None:
        fields["state"] = str(state)
    if progress is not None:
        fields["progress"] = repr(float(progress))
    if message is not None:
        fields["message"] = message
    if meta is not None:
        try:
            fields["meta"] = json.dumps(dict(meta), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"progress meta must be JSON-native: {exc}") from exc
    return fields


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
