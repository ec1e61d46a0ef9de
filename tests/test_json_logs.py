"""JSON logs: the formatter, the worker's job fields, and the CLI's logging setup."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sideline import App, ConfigurationError, cli
from sideline.cli import configure_logging
from sideline.logs import FIELDS, JsonFormatter, formatter
from tests.support import wait_until


@pytest.fixture
def worker_lines() -> Iterator[io.StringIO]:
    """What logger "sideline.worker" writes at DEBUG, through a JsonFormatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sideline.worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_worker_lines_are_json_with_the_job_fields(worker_lines: io.StringIO) -> None:
    app = App()

    @app.job(name="ok", queue="fast")
    def ok() -> None: ...

    @app.job(name="flaky", retry=3)
    def flaky() -> None:
        raise RuntimeError("try again")

    @app.job(name="doomed", retry=0)
    def doomed() -> None:
        raise ValueError("never works")

    jids = {"ok": ok.enqueue(), "flaky": flaky.enqueue(), "doomed": doomed.enqueue()}
    with app.worker(concurrency=1, queues=["fast", "default"]) as worker:
        wait_until(lambda: worker.processed == 3)
    records = [json.loads(line) for line in worker_lines.getvalue().splitlines()]
    by_job = {record["job"]: record for record in records if "job" in record}
    assert {name: by_job[name]["outcome"] for name in jids} == {
        "ok": "ack", "flaky": "retry", "doomed": "bury"}
    assert {name: by_job[name]["level"] for name in jids} == {
        "ok": "DEBUG", "flaky": "WARNING", "doomed": "ERROR"}
    for name, jid in jids.items():
        record = by_job[name]
        assert record["jid"] == jid
        assert record["logger"] == "sideline.worker"
        assert record["queue"] == ("fast" if name == "ok" else "default")
        assert isinstance(record["duration_ms"], float)
        assert record["duration_ms"] >= 0
        assert record["time"].endswith("+00:00")
        assert jid in record["message"]
        assert "run_id" not in record  # None fields are left out


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("sideline.test", logging.INFO, __file__, 1, "hello %s",
                               ("world",), None)
    record.__dict__.update(extra)
    return record


def test_every_field_is_written_in_order() -> None:
    values = {"jid": "j1", "run_id": "r1", "job": "send", "queue": "q", "duration_ms": 1.5,
              "outcome": "ack"}
    line = json.loads(JsonFormatter().format(_record(**values)))
    assert list(line) == ["time", "level", "logger", "message", *FIELDS]
    assert line["message"] == "hello world"
    assert {field: line[field] for field in FIELDS} == values


def test_an_exception_goes_in_exc() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        record = _record(exc_info=sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "KeyError: 'missing'" in line["exc"]
    assert "Traceback" in line["exc"]


def test_unknown_format_is_a_configuration_error() -> None:
    assert isinstance(formatter("JSON"), JsonFormatter)
    with pytest.raises(ConfigurationError, match="use one of text, json"):
        formatter("xml")


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest's restored afterwards)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield root
    finally:
        root.handlers = handlers
        root.setLevel(level)


def test_cli_setup_installs_the_json_formatter() -> None:
    with bare_root() as root:
        configure_logging("warning", "json")
        [handler] = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert root.level == logging.WARNING


def test_cli_setup_defaults_to_text() -> None:
    with bare_root() as root:
        configure_logging("INFO")
        [handler] = root.handlers
        assert handler.formatter is not None
        assert not isinstance(handler.formatter, JsonFormatter)


def test_cli_takes_the_format_from_the_option_then_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def recording(level: str, log_format: str = "text") -> None:
        calls.append((level, log_format))
        raise ConfigurationError("stop here")  # main prints it and returns 2

    monkeypatch.setattr(cli, "configure_logging", recording)
    monkeypatch.setenv("SIDELINE_LOG_FORMAT", "json")
    assert cli.main(["status", "r1"]) == 2
    assert cli.main(["worker", "--log-format", "text"]) == 2
    monkeypatch.delenv("SIDELINE_LOG_FORMAT")
    assert cli.main(["status", "r1"]) == 2
    assert calls == [("INFO", "json"), ("INFO", "text"), ("INFO", "text")]


def test_worker_refuses_an_unknown_log_format() -> None:
    with pytest.raises(SystemExit):
        cli.main(["worker", "--log-format", "xml"])
