"""`sideline periodic [--json]` and its actions `--pause`, `--resume`, `--run NAME`: the
stored periodic entries as a table or JSON, and acting on one, each checked against
`app.admin` afterwards. On the memory backend through an app module written per test (as
tests/test_ops_cli.py does), with a fake clock so times print exactly."""

from __future__ import annotations

import datetime
import importlib
import json
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from sideline.cli import main
from sideline.core.payload import decode
from sideline.runtime.periodic import Scheduler

NOON = datetime.datetime(2026, 11, 29, 12, 0, 30, tzinfo=datetime.UTC).timestamp()
TICK_MS = int((NOON + 30) * 1000)
"""The tick the every-30-s entry fires when the clock moves on 30 s from NOON."""

APP_MODULE = textwrap.dedent(f"""
    from sideline import App
    from tests.conftest import FakeClock

    clock = FakeClock({NOON!r})
    app = App(clock=clock)

    @app.job(name="reports.daily")
    def daily_report(kind):
        pass

    app.periodic("daily-sales", daily_report.s("sales"), cron="0 6 * * *", tz="Europe/Warsaw")
    app.periodic("check", daily_report.s("<script>alert(1)</script>"), every_s=30,
                 missed="all")
""")


@pytest.fixture
def periodic_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 request: pytest.FixtureRequest) -> ModuleType:
    """A fresh app module (memory backend, fake clock at NOON) whose entries a worker's
    scheduler stored at NOON; then the clock moved on 30 s and `check` fired once."""
    name = f"periodiccliapp_{request.node.name.replace('[', '_').replace(']', '_')}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    module = importlib.import_module(name)
    runtime = module.app.runtime
    scheduler = Scheduler(runtime.backend, runtime.client, runtime.periodic,
                          runtime.registry.names())
    scheduler.start(module.clock.now())
    module.clock.advance(30)
    assert scheduler.run_due(module.clock.now()) == 1
    return module


def _run(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str,
         code: int = 0) -> tuple[str, str]:
    """Run `sideline periodic ARGV --app <module>:app`; check its exit code; (stdout, stderr)."""
    assert main(["periodic", *argv, "--app", f"{module.__name__}:app"]) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def _queued(module: ModuleType) -> list[tuple[str, list[object]]]:
    return [(p.jid, p.args) for p in map(decode, module.app.backend.peek("default", 100))]


def test_lists_the_entries_as_a_table(periodic_app: ModuleType,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out, err = _run(periodic_app, capsys)
    assert err == ""
    assert out.splitlines() == [
        "name         job            schedule    tz             missed  state   next run"
        "             last fired           last jid                      args",
        "check        reports.daily  every 30 s  UTC            all     active  2026-11-29 12:01:30"
        f"  2026-11-29 12:01:00  periodic:check:{TICK_MS}  [\"<script>alert(1)</script>\"]",
        "daily-sales  reports.daily  0 6 * * *   Europe/Warsaw  latest  active  2026-11-30 05:00:00"
        "  -                    -                             [\"sales\"]",
    ]


def test_json_lists_every_field(periodic_app: ModuleType,
                                capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(_run(periodic_app, capsys, "--json")[0])
    assert data == [
        {"name": "check", "job": "reports.daily", "schedule": "every 30 s", "tz": "UTC",
         "missed": "all", "paused": False, "next_run": NOON + 60, "last_tick": NOON + 30,
         "last_fired_at": NOON + 30, "last_jid": f"periodic:check:{TICK_MS}",
         "args": ["<script>alert(1)</script>"]},
        {"name": "daily-sales", "job": "reports.daily", "schedule": "0 6 * * *",
         "tz": "Europe/Warsaw", "missed": "latest", "paused": False,
         "next_run": datetime.datetime(2026, 11, 30, 5, tzinfo=datetime.UTC).timestamp(),
         "last_tick": NOON, "last_fired_at": None, "last_jid": None, "args": ["sales"]},
    ]


def test_pause_resume_and_run_now(periodic_app: ModuleType,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    admin = periodic_app.app.admin
    assert _run(periodic_app, capsys, "--pause", "daily-sales") == (
        "paused periodic entry daily-sales\n", "")
    assert {e.name: e.paused for e in admin.periodic()} == {"check": False, "daily-sales": True}
    out = _run(periodic_app, capsys)[0]
    assert "daily-sales  reports.daily  0 6 * * *   Europe/Warsaw  latest  paused  -  " in out

    assert _run(periodic_app, capsys, "--resume", "daily-sales") == (
        "resumed periodic entry daily-sales\n", "")
    assert not any(e.paused for e in admin.periodic())

    before = _queued(periodic_app)
    out = _run(periodic_app, capsys, "--run", "daily-sales")[0]
    [(jid, args)] = [item for item in _queued(periodic_app) if item not in before]
    assert args == ["sales"]
    assert out == f"pushed the job of periodic entry daily-sales now: jid {jid}\n"
    sales = next(e for e in admin.periodic() if e.name == "daily-sales")
    assert sales.last_jid is None  # a run now leaves the entry's ticks alone

    data = json.loads(_run(periodic_app, capsys, "--pause", "check", "--json")[0])
    assert data == {"action": "pause", "name": "check", "done": True, "jid": None}
    data = json.loads(_run(periodic_app, capsys, "--run", "check", "--json")[0])
    assert {key: data[key] for key in ("action", "name", "done")} == {
        "action": "run", "name": "check", "done": True}
    assert (data["jid"], ["<script>alert(1)</script>"]) in _queued(periodic_app)


@pytest.mark.parametrize("action", ["--pause", "--resume", "--run"])
def test_an_unknown_entry_exits_1(periodic_app: ModuleType, capsys: pytest.CaptureFixture[str],
                                  action: str) -> None:
    before = _queued(periodic_app)
    out, err = _run(periodic_app, capsys, action, "nope", code=1)
    assert out == ""
    assert err == "sideline: error: no periodic entry named 'nope' is stored\n"
    data = json.loads(_run(periodic_app, capsys, action, "nope", "--json", code=1)[0])
    assert data == {"action": action[2:], "name": "nope", "done": False, "jid": None}
    assert _queued(periodic_app) == before
    assert not any(e.paused for e in periodic_app.app.admin.periodic())


def test_two_actions_at_once_is_a_usage_error(periodic_app: ModuleType,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["periodic", "--pause", "check", "--run", "check",
              "--app", f"{periodic_app.__name__}:app"])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_no_stored_entry_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Entries are stored when a worker starts: before that, the listing says which ones
    the app declares."""
    (tmp_path / "periodiccli_unstored.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    assert main(["periodic", "--app", "periodiccli_unstored:app"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "(no periodic entry is stored: a worker stores its app's entries when it starts)",
        "(declared by the app but not stored yet: check, daily-sales)"]
    assert main(["periodic", "--json", "--app", "periodiccli_unstored:app"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_run_needs_the_app_that_declares_the_job(
        periodic_app: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An app that shares the store but does not declare the job (as `--namespace` alone
    gives) lists and pauses the entries, but cannot push their job: exit 2, saying why."""
    name = f"{periodic_app.__name__}_bare"
    (tmp_path / f"{name}.py").write_text(
        f"from sideline import App\nfrom {periodic_app.__name__} import app as declared\n"
        "app = App(declared.backend)\n")
    before = _queued(periodic_app)
    assert main(["periodic", "--run", "check", "--app", f"{name}:app"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sideline: error: unknown job 'reports.daily'")
    assert "--run pushes the job through the app given with --app" in err
    assert _queued(periodic_app) == before
    assert main(["periodic", "--pause", "check", "--app", f"{name}:app"]) == 0
    assert capsys.readouterr().out == "paused periodic entry check\n"
    assert main(["periodic", "--app", f"{name}:app"]) == 0
    assert "check        reports.daily  every 30 s  UTC            all     paused" in (
        capsys.readouterr().out)
