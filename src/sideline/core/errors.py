"""The error hierarchy: one root, a few categories, messages that say what to do."""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigurationError",
    "JobRejected",
    "PayloadError",
    "PoisonPill",
    "RunExpired",
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


class PayloadError(SidelineError):
    """A payload read from a queue is malformed and cannot be executed."""


class UnknownJob(PayloadError):
    """A payload names a job that was never declared in this process's registry."""


class PoisonPill(SidelineError):
    """A job was recovered from dead workers more times than allowed: it likely kills them."""


class JobRejected(SidelineError):
    """Client middleware refused to push a job."""


class WorkflowError(SidelineError):
    """A workflow definition or a run operation is invalid."""


class RunExpired(WorkflowError):
    """A run's state is missing: it expired or never existed. Never treated as success."""


class BackendError(SidelineError):
    """The storage backend failed (connection lost, script error, ...)."""
