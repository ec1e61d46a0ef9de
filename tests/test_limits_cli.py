"""`sideline limits [--json]`: the fleet-wide limit keys in use (`app.admin.limits()`) as a
table or as JSON. On the memory backend through an app module written per test (as
tests/test_periodic_cli.py does), the state built by fetching as a worker would."""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from sideline.cli import main

APP_MODULE = textwrap.dedent("""
    from sideline import App, Concurrency, Rate
    from sideline.adapters.memory import MemoryBackend
    from tests.conftest import FakeClock

    clock = FakeClock(1_767_225_600.0)
    app = App(MemoryBackend(clock=clock), clock=clock)  # fetches read the same clock

    @app.job(name="crm.sync", limit=Concurrency(key="customer:{0}", max=2))
    def sync_customer(customer_id):
        pass

    @app.job(name="api.call", limit=Rate(key="api:{0}", limit=100, per_s=60))
    def call_api(account):
        pass

    @app.job(name="burst", limit=Rate(key="burst\\t{0}", limit=3, per_s=0.5))
    def burst(name):
        pass

    def fill():
        for _ in range(5):
            sync_customer.enqueue(42)
        sync_customer.enqueue(7)
        for _ in range(3):
            call_api.enqueue("acme")
        burst.enqueue("x")
        while app.backend.fetch("w1", ["default"], 0) is not None:
            pass
""")


@pytest.fixture
def limits_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               request: pytest.FixtureRequest) -> ModuleType:
    """A fresh app module (memory backend, fake clock), nothing enqueued yet."""
    name = f"limitscliapp_{request.node.name.replace('[', '_').replace(']', '_')}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    return importlib.import_module(name)


def _run(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `sideline limits ARGV --app <module>:app`; it exits 0 and writes no error."""
    assert main(["limits", *argv, "--app", f"{module.__name__}:app"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def test_lists_the_keys_in_use_as_a_table(limits_app: ModuleType,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    limits_app.fill()
    assert _run(limits_app, capsys).splitlines() == [
        "key          kind         limit         running  parked  started",
        "api:acme     rate         100 per 60 s        -       -        3",
        "burst x      rate         3 per 0.5 s         -       -        1",  # a tab flattened
        "customer:42  concurrency  2 at once           2       3        -",
        "customer:7   concurrency  2 at once           1       0        -",
    ]


def test_json_lists_every_field(limits_app: ModuleType,
                                capsys: pytest.CaptureFixture[str]) -> None:
    limits_app.fill()
    assert json.loads(_run(limits_app, capsys, "--json")) == [
        {"key": "api:acme", "kind": "rate", "max": 100, "per_s": 60.0, "running": 0,
         "parked": 0, "started": 3},
        {"key": "burst\tx", "kind": "rate", "max": 3, "per_s": 0.5, "running": 0,
         "parked": 0, "started": 1},
        {"key": "customer:42", "kind": "concurrency", "max": 2, "per_s": None, "running": 2,
         "parked": 3, "started": 0},
        {"key": "customer:7", "kind": "concurrency", "max": 2, "per_s": None, "running": 1,
         "parked": 0, "started": 0},
    ]


def test_a_rate_key_leaves_once_its_window_has_passed(limits_app: ModuleType,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    limits_app.fill()
    limits_app.clock.advance(1)  # past burst's 0.5 s window, inside api's 60 s
    keys = [view["key"] for view in json.loads(_run(limits_app, capsys, "--json"))]
    assert keys == ["api:acme", "customer:42", "customer:7"]


def test_no_key_in_use(limits_app: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(limits_app, capsys) == "(no limit key is in use)\n"
    assert json.loads(_run(limits_app, capsys, "--json")) == []


def test_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "limits" in capsys.readouterr().out
