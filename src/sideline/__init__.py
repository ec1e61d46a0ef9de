"""sideline: background jobs and crash-safe job workflows on Redis."""

from sideline.adapters.memory import MemoryBackend
from sideline.core.errors import (
    BackendError,
    ConfigurationError,
    JobRejected,
    PayloadError,
    PoisonPill,
    RunExpired,
    SerializationError,
    SidelineError,
    UnknownJob,
    WorkflowError,
)
from sideline.core.jobs import Signature
from sideline.core.payload import Payload
from sideline.core.run import NodeStatus, RunStatus
from sideline.core.workflow import Chain, Dag, Group, WithDelay
from sideline.runtime.app import App
from sideline.runtime.jobs import Job
from sideline.runtime.middleware import JobContext
from sideline.runtime.worker import Worker
from sideline.runtime.workflows import NodeInfo, RunInfo, Workflow

__all__ = [
    "App",
    "BackendError",
    "Chain",
    "ConfigurationError",
    "Dag",
    "Group",
    "Job",
    "JobContext",
    "JobRejected",
    "MemoryBackend",
    "NodeInfo",
    "NodeStatus",
    "Payload",
    "PayloadError",
    "PoisonPill",
    "RunExpired",
    "RunInfo",
    "RunStatus",
    "SerializationError",
    "SidelineError",
    "Signature",
    "UnknownJob",
    "WithDelay",
    "Worker",
    "Workflow",
    "WorkflowError",
]
__version__ = "0.1.0"
