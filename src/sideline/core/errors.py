"""The error hierarchy: one root, a few categories, messages that say what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BackendError",
    "ConfigurationError",
    "JobRejected",
    "JobStopped",
    "JobTimeout",
    "PayloadError",
    "PoisonPill",
    "RemoteJobError",
    "RunExpired",
    "SchemaError",
    "SerializationError",
    "SidelineError",
    "UnknownJob",
    "WorkflowError",
]


class SidelineError(Exception):
    """Root of every error sideline raises on purpose."""


class ConfigurationError(SidelineError):
    """A setting or declaration is invalid (bad option, duplicate job name, ...)."""


class SerializationError(SidelineError):
    """A value cannot be carried in a JSON payload."""


class SchemaError(SidelineError):
    """Data does not fit a typed job's Input or Output schema, or a template's params.

    The message names what was checked, then each problem with its field path and the
    expected type: "job 'enrich' input: field 'doc_id' expected int, got str 'abc'".
    A job failing with it goes to the dead set at once (retrying cannot fix the data)
    unless the job was declared with retry_schema_errors=True.
    """

    def __init__(self, subject: str, problems: Sequence[str]) -> None:
        self.subject = subject
        self.problems = tuple(problems)
        super().__init__(f"{subject}: {'; '.join(self.problems)}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.subject, self.problems))


class PayloadError(SidelineError):
    """A payload read from a queue is malformed and cannot be executed."""


class UnknownJob(PayloadError):
    """A payload names a job that was never declared in this process's registry."""


class PoisonPill(SidelineError):
    """A job was recovered from dead workers more times than allowed: it likely kills them."""


class JobRejected(SidelineError):
    """Client middleware refused to push a job."""


class JobTimeout(SidelineError):
    """A job ran past its timeout; a failure under the retry policy."""


class JobStopped(SidelineError):
    """A running job was stopped (its run cancelled, or stopped by hand)."""


class RemoteJobError(SidelineError):
    """A job that ran elsewhere (a child process) raised there: its class name, message
    and formatted traceback, recorded as the job's own error (its class is the remote
    one in the dead set and in `JobFailed`)."""

    def __init__(self, error_class: str, message: str, backtrace: str) -> None:
        self.error_class = error_class
        self.message = message
        self.backtrace = backtrace
        """The remote formatted traceback text ("" when there is none)."""
        super().__init__(f"{error_class}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error_class, self.message, self.backtrace))


class WorkflowError(SidelineError):
    """A workflow definition or a run operation is invalid."""


class RunExpired(WorkflowError):
    """A run's state is missing: it expired or never existed. Never treated as success."""

    @classmethod
    def of(cls, run_id: str) -> RunExpired:
        """The error every backend operation raises for run `run_id` without state."""
        return cls(f"run {run_id!r} has no state: it expired or never existed "
                   "(its jobs are not treated as succeeded)")


class BackendError(SidelineError):
    """The storage backend failed (connection lost, script error, ...)."""
