"""Worker settings from arguments, SIDELINE_* environment variables, and defaults.

Precedence: an explicit argument, then the environment variable, then the default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import attrs

from sideline.core.errors import ConfigurationError
from sideline.core.jobs import check_queue_name
from sideline.environment import env_number
from sideline.runtime.aio import DEFAULT_ASYNC_CONCURRENCY

__all__ = ["ENVIRONMENT", "WorkerSettings", "env_number", "parse_queues"]

ENVIRONMENT: dict[str, str] = {
    "app": "SIDELINE_APP",
    "concurrency": "SIDELINE_CONCURRENCY",
    "prefetch": "SIDELINE_PREFETCH",
    "jobs_per_call": "SIDELINE_JOBS_PER_CALL",
    "queues": "SIDELINE_QUEUES",
    "shutdown_timeout_s": "SIDELINE_TIMEOUT",
    "instance_id": "SIDELINE_INSTANCE_ID",
    "heartbeat_interval_s": "SIDELINE_HEARTBEAT_INTERVAL_S",
    "heartbeat_ttl_s": "SIDELINE_HEARTBEAT_TTL_S",
    "recovery_interval_s": "SIDELINE_RECOVERY_INTERVAL_S",
    "poll_interval_s": "SIDELINE_POLL_INTERVAL_S",
    "fetch_timeout_s": "SIDELINE_FETCH_TIMEOUT_S",
    "processes": "SIDELINE_PROCESSES",
    "max_jobs_per_child": "SIDELINE_MAX_JOBS_PER_CHILD",
    "async_concurrency": "SIDELINE_ASYNC_CONCURRENCY",
}
"""Setting name -> environment variable (SIDELINE_REDIS_URL is read by RedisBackend)."""


def parse_queues(text: str) -> list[str] | dict[str, int]:
    """'a,b' -> strict order [a, b]; 'a:3,b:1' -> weights {a: 3, b: 1}."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigurationError("queues must name at least one queue, e.g. 'critical,default'")
    if not any(":" in part for part in parts):
        return [check_queue_name(part) for part in parts]
    weights: dict[str, int] = {}
    for part in parts:
        match = re.fullmatch(r"(.+):(\d+)", part)
        if match is None:
            raise ConfigurationError(
                f"queue {part!r}: give every queue a weight ('name:weight') or none")
        weights[check_queue_name(match.group(1))] = int(match.group(2))
    return weights


def _float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"{ENVIRONMENT[name]}={text!r} is not a number") from None


@attrs.frozen
class WorkerSettings:
    """Everything `sideline worker` needs, resolved."""

    app: str | None = None
    concurrency: int = 10
    prefetch: int = 0
    jobs_per_call: int = 1
    """Jobs a job thread takes per backend call, writing their plain acks together."""
    queues: list[str] | dict[str, int] = attrs.field(factory=lambda: ["default"])
    shutdown_timeout_s: float = 25.0
    instance_id: str | None = None
    heartbeat_interval_s: float = 5.0
    heartbeat_ttl_s: float = 15.0
    recovery_interval_s: float = 5.0
    poll_interval_s: float = 0.1
    fetch_timeout_s: float = 1.0
    processes: int = 1
    """Worker processes under one supervisor (1: this process is the worker)."""
    max_jobs_per_child: int = 0
    """A worker process stops after this many jobs and its supervisor starts a fresh one
    (0: never); for jobs that leak memory."""
    async_concurrency: int = DEFAULT_ASYNC_CONCURRENCY
    """Async jobs one worker process runs at once on its event loop."""

    @classmethod
    def resolve(cls, arguments: Mapping[str, object], environ: Mapping[str, str] | None = None
                ) -> WorkerSettings:
        """Settings from explicit arguments (None = not given), then the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, variable in ENVIRONMENT.items():
            given = arguments.get(name)
            if given is not None:
                values[name] = given
            elif variable in env and env[variable] != "":
                values[name] = env[variable]
        if isinstance(values.get("queues"), str):
            values["queues"] = parse_queues(str(values["queues"]))
        for name in ("concurrency", "prefetch", "jobs_per_call", "processes",
                     "max_jobs_per_child", "async_concurrency"):
            if name in values:
                try:
                    values[name] = int(str(values[name]))
                except ValueError:
                    raise ConfigurationError(
                        f"{name} {values[name]!r} is not an integer") from None
        for name in ("shutdown_timeout_s", "heartbeat_interval_s", "heartbeat_ttl_s",
                     "recovery_interval_s", "poll_interval_s", "fetch_timeout_s"):
            if name in values:
                values[name] = _float(name, str(values[name]))
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.processes < 1:
            raise ConfigurationError(f"processes must be at least 1, got {settings.processes}")
        if settings.async_concurrency < 1:
            raise ConfigurationError(
                f"async_concurrency must be at least 1, got {settings.async_concurrency}")
        if settings.max_jobs_per_child < 0:
            raise ConfigurationError(
                f"max_jobs_per_child must be 0 (never) or more, got {settings.max_jobs_per_child}")
        return settings

    def queues_text(self) -> str:
        """The queues as `-q` takes them: 'a,b' (strict order) or 'a:3,b:1' (weights)."""
        if isinstance(self.queues, dict):
            return ",".join(f"{queue}:{weight}" for queue, weight in self.queues.items())
        return ",".join(self.queues)
