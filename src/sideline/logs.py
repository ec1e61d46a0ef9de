"""Structured logs: every record as one JSON object per line (`SIDELINE_LOG_FORMAT=json`).

`JsonFormatter` writes the time (ISO 8601, UTC), level, logger and message, then the job
fields a record carries (the worker passes them with `extra=`): jid, run_id, job, queue,
duration_ms and outcome (ack, retry or bury). An exception's traceback goes in "exc".
Only the stdlib is used, so any handler (stderr, a file, a log shipper) can take it.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from sideline.core.errors import ConfigurationError

__all__ = ["FIELDS", "FORMATS", "TEXT_FORMAT", "JsonFormatter", "formatter"]

FIELDS = ("jid", "run_id", "job", "queue", "duration_ms", "outcome")
"""The job fields a record may carry (through `extra=`), in the order they are written."""

FORMATS = ("text", "json")
"""The log formats `formatter` accepts (`--log-format`, SIDELINE_LOG_FORMAT)."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"
"""The format of the plain text lines (the default)."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, message, the job
    fields it carries (None ones left out) and "exc" for an exception."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of `log_format`: "json" (one object a line) or "text".

    Raises:
        ConfigurationError: `log_format` is neither; the message lists the choices.
    """
    name = log_format.strip().lower()
    if name == "json":
        return JsonFormatter()
    if name == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ConfigurationError(f"unknown log format {log_format!r}; use one of {', '.join(FORMATS)}")
