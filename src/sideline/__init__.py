"""sideline: background jobs and crash-safe job workflows on Redis."""

from sideline.adapters.memory import MemoryBackend
from sideline.core.batch import BatchError, BatchFinished
from sideline.core.errors import (
    BackendError,
    ConfigurationError,
    JobRejected,
    JobStopped,
    JobTimeout,
    PayloadError,
    PoisonPill,
    RunExpired,
    SchemaError,
    SerializationError,
    SidelineError,
    UnknownJob,
    WorkflowError,
)
from sideline.core.jobs import Signature
from sideline.core.limits import Concurrency, Rate
from sideline.core.payload import Payload
from sideline.core.results import JobFailed, JobInfo, JobState, ResultRecord
from sideline.core.run import NodeStatus, RunStatus
from sideline.core.workflow import Chain, Dag, Group, WithDelay
from sideline.runtime.admin import Admin
from sideline.runtime.app import App
from sideline.runtime.batches import Batch, BatchStatus
from sideline.runtime.handles import JobHandle
from sideline.runtime.jobs import Job
from sideline.runtime.middleware import JobContext, current_job
from sideline.runtime.observers import Observer
from sideline.runtime.templates import Template
from sideline.runtime.worker import Worker
from sideline.runtime.workflows import NodeInfo, RunInfo, Workflow

__all__ = [
    "Admin",
    "App",
    "BackendError",
    "Batch",
    "BatchError",
    "BatchFinished",
    "BatchStatus",
    "Chain",
    "Concurrency",
    "ConfigurationError",
    "Dag",
    "Group",
    "Job",
    "JobContext",
    "JobFailed",
    "JobHandle",
    "JobInfo",
    "JobRejected",
    "JobState",
    "JobStopped",
    "JobTimeout",
    "MemoryBackend",
    "NodeInfo",
    "NodeStatus",
    "Observer",
    "Payload",
    "PayloadError",
    "PoisonPill",
    "Rate",
    "ResultRecord",
    "RunExpired",
    "RunInfo",
    "RunStatus",
    "SchemaError",
    "SerializationError",
    "SidelineError",
    "Signature",
    "Template",
    "UnknownJob",
    "WithDelay",
    "Worker",
    "Workflow",
    "WorkflowError",
    "current_job",
]
__version__ = "0.1.0"
