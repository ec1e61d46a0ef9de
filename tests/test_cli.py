"""`sideline status`: a compacted run prints its status, times, node counts and dead nodes."""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from sideline import Chain, Workflow
from sideline.cli import main

APP_MODULE = textwrap.dedent("""
    from sideline import App

    app = App(testing="inline")

    @app.job(name="ok")
    def ok(x):
        pass

    @app.job(name="bad", retry=False)
    def bad(x):
        raise KeyError("customer_id")
""")


@pytest.fixture
def cliapp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
           ) -> ModuleType:
    name = f"cliapp_{request.node.name}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def _status(module: ModuleType, run_id: str, capsys: pytest.CaptureFixture[str],
            *extra: str) -> str:
    assert main(["status", run_id, "--app", f"{module.__name__}:app", *extra]) == 0
    return capsys.readouterr().out


def test_status_of_a_compacted_run_prints_counts_times_and_failed_nodes(
        cliapp: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = Workflow(Chain(cliapp.ok.s(1), cliapp.bad.s(2).set(allow_failure=True),
                            cliapp.ok.s(3)), app=cliapp.app).run()
    assert cliapp.app.status(run_id).compacted
    lines = _status(cliapp, run_id, capsys).splitlines()
    assert lines[0] == f"run {run_id}: succeeded  {{'dead': 1, 'succeeded': 2}}"
    assert lines[1].startswith("  created ")
    assert " finished " in lines[1]
    assert "compacted" in lines[1]
    assert lines[2:] == ["  failed node   1  bad  KeyError: 'customer_id'"]

    data = json.loads(_status(cliapp, run_id, capsys, "--json"))
    assert data == {"run_id": run_id, "status": "succeeded", "nodes": {}, "compacted": True,
                    "counts": {"dead": 1, "succeeded": 2},
                    "failed": [{"node_id": 1, "job": "bad", "error_class": "KeyError",
                                "error_message": "'customer_id'"}]}


def test_status_of_a_failed_run_still_lists_every_node(
        cliapp: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = Workflow(Chain(cliapp.ok.s(1), cliapp.bad.s(2), cliapp.ok.s(3)),
                      app=cliapp.app).run()
    lines = _status(cliapp, run_id, capsys).splitlines()
    assert lines[0] == f"run {run_id}: failed  {{'succeeded': 1, 'dead': 1, 'skipped': 1}}"
    assert [line.split()[:3] for line in lines[1:4]] == [
        ["node", "0", "succeeded"], ["node", "1", "dead"], ["node", "2", "skipped"]]
    assert lines[4:] == ["  failed node   1  bad  KeyError: 'customer_id'"]
    data = json.loads(_status(cliapp, run_id, capsys, "--json"))
    assert data["nodes"] == {"0": "succeeded", "1": "dead", "2": "skipped"}
    assert data["compacted"] is False
