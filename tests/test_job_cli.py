"""`sideline job JID [--json]` and `sideline stop-job JID`: one job's stored state, progress
and result, and stopping it. On the memory backend through an app module written per test
(as tests/test_ops_cli.py does): with a fake clock for exact times, and with a real
embedded worker for a running job that reports progress and is stopped."""

from __future__ import annotations

import datetime
import importlib
import json
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sideline.cli import main
from sideline.core.results import JobFailed, JobState
from sideline.runtime.control import job_target

NOON = datetime.datetime(2026, 11, 29, 12, 0, 30, tzinfo=datetime.UTC).timestamp()

FIXED_CLOCK = textwrap.dedent(f"""
    from sideline import App
    from tests.conftest import FakeClock

    clock = FakeClock({NOON!r})
    app = App(testing="collect", clock=clock)

    @app.job(name="add", store_result=True)
    def add(a, b):
        return {{"sum": a + b, "html": "<b>"}}

    @app.job(name="broken", store_result=True, retry=0)
    def broken():
        raise KeyError("missing\\nline")
""")

LIVE = textwrap.dedent("""
    import threading

    from sideline import App
    from sideline.runtime.middleware import current_job

    app = App()
    release = threading.Event()

    @app.job(name="pages", store_result=True, retry=0)
    def pages():
        current_job().progress(0.25, "page 1 of 4", meta={"page": 1})
        while not release.is_set():
            if current_job().should_stop():
                return "noticed the stop"
            release.wait(0.02)
        return "all pages"
""")


def _module(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> ModuleType:
    name = f"jobcliapp_{request.node.name.replace('[', '_').replace(']', '_')}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    return importlib.import_module(name)


@pytest.fixture
def fixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          request: pytest.FixtureRequest) -> ModuleType:
    """An app module on the memory backend with a fake clock at NOON."""
    return _module(FIXED_CLOCK, tmp_path, monkeypatch, request)


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """An app module on the memory backend with the real clock and a job that waits
    (released afterwards, so no worker thread is left waiting)."""
    module = _module(LIVE, tmp_path, monkeypatch, request)
    yield module
    module.release.set()


def _run(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str,
         code: int = 0) -> tuple[str, str]:
    """Run `sideline ARGV --app <module>:app`; check its exit code; (stdout, stderr)."""
    assert main([*argv, "--app", f"{module.__name__}:app"]) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_job_prints_a_succeeded_job_and_its_value(
        fixed: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    handle = fixed.add.enqueue(2, 3)
    fixed.app.drain()
    out, err = _run(fixed, capsys, "job", handle.jid)
    assert out.splitlines() == [
        f"jid          {handle.jid}",
        "state        succeeded",
        "progress     -",
        "message      -",
        "meta         -",
        "worker       drain",
        "started      2026-11-29 12:00:30",
        "retry count  0",
        "result       succeeded",
        "finished     2026-11-29 12:00:30",
        'value        {"sum": 5, "html": "<b>"}',
    ]
    assert err == ""


def test_job_json_has_every_field_and_the_result(
        fixed: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    handle = fixed.add.enqueue(2, 3)
    fixed.app.drain()
    data = json.loads(_run(fixed, capsys, "job", handle.jid, "--json")[0])
    assert data == {"jid": handle.jid, "state": "succeeded", "progress": None, "message": None,
                    "meta": {}, "worker": "drain", "started_at": NOON, "retry_count": 0,
                    "result": {"state": "succeeded", "finished_at": NOON,
                               "value": {"sum": 5, "html": "<b>"}}}


def test_job_prints_the_error_of_a_dead_job_on_one_line(
        fixed: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    handle = fixed.broken.enqueue()
    fixed.app.drain()
    lines = _run(fixed, capsys, "job", handle.jid)[0].splitlines()
    assert lines[1] == "state        failed"
    assert lines[-2:] == ["finished     2026-11-29 12:00:30",
                          "error        KeyError: 'missing\\nline'"]
    data = json.loads(_run(fixed, capsys, "job", handle.jid, "--json")[0])
    assert data["result"] == {"state": "failed", "finished_at": NOON, "error_class": "KeyError",
                              "error_message": "'missing\\nline'"}


def test_job_of_an_unknown_jid_reads_as_pending_and_says_why(
        fixed: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    out, _err = _run(fixed, capsys, "job", "no-such-job")
    lines = out.splitlines()
    assert lines[:2] == ["jid          no-such-job", "state        pending"]
    assert lines[-2] == "result       -"
    assert lines[-1].startswith("(nothing is stored for this job: ")
    data = json.loads(_run(fixed, capsys, "job", "no-such-job", "--json")[0])
    assert (data["state"], data["result"]) == ("pending", None)


def test_job_shows_progress_and_stop_job_stops_it(
        live: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    app = live.app
    handle = live.pages.enqueue()
    with app.worker(concurrency=1):
        _wait(lambda: app.admin.job(handle.jid).progress is not None, "the job to report")
        lines = _run(live, capsys, "job", handle.jid)[0].splitlines()
        assert lines[1:5] == ["state        running", "progress     25% (0.25)",
                              "message      page 1 of 4", 'meta         {"page": 1}']
        assert lines[-1] == "result       -"
        data = json.loads(_run(live, capsys, "job", handle.jid, "--json")[0])
        assert (data["state"], data["progress"], data["message"], data["meta"]) == (
            "running", 0.25, "page 1 of 4", {"page": 1})
        assert data["worker"] is not None
        assert data["started_at"] is not None

        out, err = _run(live, capsys, "stop-job", handle.jid)
        assert out.startswith(f"stop requested for job {handle.jid} (running): ")
        assert err == ""
        with pytest.raises(JobFailed) as caught:
            handle.result(10)
    assert caught.value.error_class == "JobStopped"
    [entry] = app.admin.dead().entries
    assert entry.payload.dead_reason == "stopped: stopped by request"
    assert app.admin.job(handle.jid).state is JobState.FAILED


def test_stop_job_leaves_an_ended_job_alone(
        fixed: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    handle = fixed.add.enqueue(1, 1)
    fixed.app.drain()
    out, err = _run(fixed, capsys, "stop-job", handle.jid, code=1)
    assert out == ""
    assert err == (f"sideline: error: job {handle.jid} has already ended (succeeded): "
                   "nothing to stop\n")
    assert fixed.app.backend.stop_requests([job_target(handle.jid)]) == []
    data = json.loads(_run(fixed, capsys, "stop-job", handle.jid, "--json", code=1)[0])
    assert data == {"jid": handle.jid, "state": "succeeded", "stop_requested": False}


def test_stop_job_of_a_job_not_started_is_kept_for_when_it_starts(
        fixed: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(_run(fixed, capsys, "stop-job", "later-job", "--json")[0])
    assert data == {"jid": "later-job", "state": "pending", "stop_requested": True}
    assert fixed.app.backend.stop_requests([job_target("later-job")]) == [
        job_target("later-job")]
