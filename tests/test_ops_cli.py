"""The operations CLI over the admin API: `sideline stats`, `queues`, `scheduled`,
`retries`, `dead`, `workers`, `runs` and `orphans`, their tables, their `--json` and their
actions, each checked against `app.admin` afterwards. On the memory backend through an
app module written per test (as tests/test_batch_admin_cli.py does), with a fake clock so
times print exactly; and once on the real Redis through `--namespace`."""

from __future__ import annotations

import datetime
import importlib
import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sideline import App, Chain, Workflow
from sideline import cli as cli_module
from sideline.adapters.redis import RedisBackend
from sideline.cli import main
from tests.support import real_redis_backend

NOON = datetime.datetime(2026, 11, 29, 12, 0, 30, tzinfo=datetime.UTC).timestamp()

APP_MODULE = textwrap.dedent(f"""
    from sideline import App
    from tests.conftest import FakeClock

    clock = FakeClock({NOON!r})
    app = App(testing="collect", clock=clock)

    @app.job(name="images.resize", retry=False)
    def resize(image_id, size="large"):
        raise OSError(f"disk full at {{image_id}}")

    @app.job(name="flaky", retry=3)
    def flaky(n):
        raise RuntimeError("again")

    @app.job(name="ok")
    def ok(n):
        pass
""")


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
        ) -> ModuleType:
    """A fresh app module (memory backend, fake clock at NOON) for this test."""
    name = f"opscliapp_{request.node.name.replace('[', '_').replace(']', '_')}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    return importlib.import_module(name)


def _run(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str,
         code: int = 0) -> tuple[str, str]:
    """Run `sideline ARGV --app <module>:app`; check its exit code; (stdout, stderr)."""
    assert main([*argv, "--app", f"{module.__name__}:app"]) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def _out(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    return _run(module, capsys, *argv)[0]


def _json(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    return json.loads(_out(module, capsys, *argv, "--json"))


def _usage_error(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--app", f"{module.__name__}:app"])
    assert exit_.value.code == 2
    return capsys.readouterr().err


def _aligned(lines: list[str], column: str, values: list[str]) -> None:
    """Each value starts where the header's `column` title starts (left-aligned)."""
    start = lines[0].index(column)
    for line, value in zip(lines[1:], values, strict=False):
        assert line.index(value) == start, (line, value)


def _dead(module: ModuleType, count: int, *, size: str = "large") -> list[str]:
    """`count` dead images.resize jobs, in the order they died (one second apart)."""
    jids = []
    for image_id in range(count):
        jids.append(module.resize.enqueue(image_id, size))
        module.app.drain(run_scheduled=False)
        module.clock.advance(1)
    return jids


# -- stats and queues ------------------------------------------------------------------


def test_stats_prints_every_count_and_the_history_by_day(
        ops: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    app, clock = ops.app, ops.clock
    for n in range(3):
        ops.ok.enqueue(n)
    _dead(ops, 1)
    ops.flaky.enqueue(1)
    app.drain(run_scheduled=False)  # flaky waits in the retry set
    ops.ok.enqueue(9)
    app.enqueue("ok", [10], at=clock.now() + 60)
    app.backend.heartbeat("w1", {"busy": "2"}, 30.0, clock.now())

    lines = _out(ops, capsys, "stats").splitlines()
    assert lines == ["processed        5",
                     "failed           2",
                     "processed today  5",
                     "failed today     2",
                     "enqueued         1",
                     "scheduled        1",
                     "retries          1",
                     "dead             1",
                     "busy             2",
                     "workers          1",
                     "queues           1"]
    data = _json(ops, capsys, "stats")
    assert data == {"processed": 5, "failed": 2, "processed_today": 5, "failed_today": 2,
                    "enqueued": 1, "scheduled": 1, "retries": 1, "dead": 1, "busy": 2,
                    "workers": 1, "queues": 1}

    clock.advance(24 * 3600)
    ops.ok.enqueue(11)
    app.drain(run_scheduled=False)  # 9, 11, the scheduled 10 and flaky's retry (failed)
    lines = _out(ops, capsys, "stats", "--days", "3").splitlines()
    assert lines[2:4] == ["processed today  4", "failed today     1"]
    assert lines[11:] == ["",
                          "day         processed  failed",
                          "2026-11-30          4       1",
                          "2026-11-29          5       2",
                          "2026-11-28          0       0"]
    data = _json(ops, capsys, "stats", "--days", "2")
    assert isinstance(data, dict)
    assert data["history"] == [{"day": "2026-11-30", "processed": 4, "failed": 1},
                               {"day": "2026-11-29", "processed": 5, "failed": 2}]
    assert _usage_error(ops, capsys, "stats", "--days", "0").count("must be a whole number")


def test_queues_prints_size_and_latency(ops: ModuleType,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _out(ops, capsys, "queues") == "(no queues)\n"
    assert _json(ops, capsys, "queues") == []
    for n in range(12):
        ops.ok.enqueue(n)
    ops.app.enqueue("ok", [1], queue="a-rather-long-queue-name")
    ops.clock.advance(75)
    lines = _out(ops, capsys, "queues").splitlines()
    assert lines == ["queue                     size  latency",
                     "a-rather-long-queue-name     1   1m 15s",
                     "default                     12   1m 15s"]
    assert _json(ops, capsys, "queues") == [
        {"name": "a-rather-long-queue-name", "size": 1, "latency_s": 75.0},
        {"name": "default", "size": 12, "latency_s": 75.0}]


# -- the dead, retry and scheduled sets ---------------------------------------------------


def test_dead_lists_a_page_as_a_table(ops: ModuleType,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    jids = _dead(ops, 3, size="x" * 60)
    lines = _out(ops, capsys, "dead").splitlines()
    assert lines[0].split() == ["died", "job", "jid", "queue", "retries", "args", "error"]
    assert lines[1].split() == ["2026-11-29", "12:00:30", "images.resize", jids[0], "default",
                                "0", '[0,', '"' + "x" * 32 + "...", "OSError:", "disk",
                                "full", "at", "0"]
    assert lines[3].startswith("2026-11-29 12:00:32  images.resize  ")
    _aligned(lines[:4], "jid", jids)
    _aligned(lines[:4], "error", ["OSError: disk full at 0", "OSError: disk full at 1",
                                  "OSError: disk full at 2"])
    assert lines[4:] == ["(page 1 of 1, 3 in the dead set)"]

    second = _out(ops, capsys, "dead", "--page", "2", "--per-page", "2").splitlines()
    assert [line.split()[3] for line in second[1:-1]] == [jids[2]]
    assert second[-1] == "(page 2 of 2, 3 in the dead set)"
    found = _out(ops, capsys, "dead", "--search", jids[1]).splitlines()
    assert [line.split()[3] for line in found[1:-1]] == [jids[1]]
    assert found[-1] == f"(page 1 of 1, 3 in the dead set; 1 on this page match '{jids[1]}')"
    assert _out(ops, capsys, "dead", "--page", "9") == "(page 9 of 1, 3 in the dead set)\n"


def test_dead_cuts_a_long_error_and_puts_it_on_one_line(
        ops: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    @ops.app.job(name="wordy", retry=False)
    def wordy() -> None:
        raise ValueError("first line\nsecond line " + "y" * 80)

    wordy.enqueue()
    ops.app.drain()
    [row] = _out(ops, capsys, "dead").splitlines()[1:-1]
    error = row[row.index("ValueError"):]
    assert error == ("ValueError: first line second line " + "y" * 80)[:57] + "..."


def test_dead_json_has_the_page_and_every_payload_field(
        ops: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    jids = _dead(ops, 3)
    data = _json(ops, capsys, "dead", "--per-page", "2")
    assert isinstance(data, dict)
    assert {key: data[key] for key in ("kind", "total", "page", "per_page", "search")} == {
        "kind": "dead", "total": 3, "page": 1, "per_page": 2, "search": None}
    first = data["entries"][0]
    assert (first["key"], first["jid"], first["at"], first["name"], first["queue"]) == (
        jids[0], jids[0], NOON, "images.resize", "default")
    assert (first["args"], first["error_class"], first["error_message"]) == (
        [0, "large"], "OSError", "disk full at 0")
    assert [entry["key"] for entry in data["entries"]] == jids[:2]
    searched = _json(ops, capsys, "dead", "--search", jids[2])
    assert isinstance(searched, dict)
    assert [entry["key"] for entry in searched["entries"]] == [jids[2]]
    assert searched["search"] == jids[2]


def test_dead_retry_and_delete_by_jid(ops: ModuleType,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    admin = ops.app.admin
    jids = _dead(ops, 4)
    out, err = _run(ops, capsys, "dead", "--retry", jids[0], "--retry", jids[1],
                    "--retry", jids[0])
    assert (out, err) == ("retried 2\n", "")
    assert [e.key for e in admin.dead().entries] == jids[2:]
    assert admin.queues()[0].size == 2

    out, err = _run(ops, capsys, "dead", "--delete", jids[2])
    assert (out, err) == ("deleted 1\n", "")
    assert [e.key for e in admin.dead().entries] == [jids[3]]
    assert admin.queues()[0].size == 2

    out, err = _run(ops, capsys, "dead", "--retry", jids[0], "--retry", jids[3], code=1)
    assert out == "retried 1\n"
    assert err == f"sideline: error: not found in the dead set: {jids[0]}\n"
    assert admin.dead().total == 0
    assert admin.queues()[0].size == 3

    out, err = _run(ops, capsys, "dead", "--delete", "nope", "--json", code=1)
    assert json.loads(out) == {"action": "delete", "count": 0, "keys": [],
                               "not_found": ["nope"]}
    assert err == "sideline: error: not found in the dead set: nope\n"


def test_dead_retry_all_pages_through_the_whole_set(
        ops: ModuleType, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_KEY_WINDOW", 2)  # 7 entries: 4 windows
    admin = ops.app.admin
    jids = _dead(ops, 5)
    ops.app.enqueue("flaky", [1])
    ops.app.enqueue("flaky", [2])
    ops.app.drain(run_scheduled=False)
    flaky = [e.key for e in admin.retries(per_page=10).entries]
    assert admin.kill(flaky) == 2
    assert admin.dead().total == 7

    out, err = _run(ops, capsys, "dead", "--retry-all", "--search", "flaky")
    assert (out, err) == ("retried 2\n", "")
    assert [e.key for e in admin.dead(per_page=10).entries] == jids
    assert admin.queues()[0].size == 2

    data = json.loads(_out(ops, capsys, "dead", "--retry-all", "--json"))
    assert data == {"action": "retry", "count": 5, "keys": jids, "not_found": []}
    assert admin.dead().total == 0
    assert admin.queues()[0].size == 7

    assert _out(ops, capsys, "dead", "--retry-all") == "retried 0\n"  # nothing named: fine
    out, err = _run(ops, capsys, "dead", "--retry-all", "--search", "nothing", code=1)
    assert out == "retried 0\n"
    assert err == "sideline: error: no entry of the dead set matches 'nothing'\n"


def test_retries_list_kill_retry_and_delete(ops: ModuleType,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    admin = ops.app.admin
    jids = [ops.flaky.enqueue(n) for n in range(4)]
    ops.app.drain(run_scheduled=False)
    lines = _out(ops, capsys, "retries").splitlines()
    assert lines[0].split() == ["retry", "at", "job", "jid", "queue", "retries", "args",
                                "error"]
    rows = {line.split()[3]: line.split() for line in lines[1:-1]}
    assert set(rows) == set(jids)
    assert rows[jids[0]][4:] == ["default", "1", "[0]", "RuntimeError:", "again"]
    assert lines[-1] == "(page 1 of 1, 4 in the retry set)"
    data = _json(ops, capsys, "retries")
    assert isinstance(data, dict)
    assert (data["kind"], data["total"]) == ("retry", 4)
    assert {entry["retry_count"] for entry in data["entries"]} == {1}

    out, err = _run(ops, capsys, "retries", "--kill", jids[0], "--kill", "nope", code=1)
    assert out == "killed 1\n"
    assert err == "sideline: error: not found in the retry set: nope\n"
    [dead] = admin.dead().entries
    assert (dead.key, dead.payload.dead_reason) == (jids[0], "killed")

    assert _out(ops, capsys, "retries", "--retry", jids[1]) == "retried 1\n"
    assert _out(ops, capsys, "retries", "--delete", jids[2]) == "deleted 1\n"
    assert [e.key for e in admin.retries().entries] == [jids[3]]
    assert admin.queues()[0].size == 1
    assert admin.find("retry", jids[2]) is None
    assert _out(ops, capsys, "retries", "--retry-all") == "retried 1\n"
    assert (admin.retries().total, admin.queues()[0].size) == (0, 2)


def test_scheduled_list_enqueue_now_and_delete(ops: ModuleType,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    admin = ops.app.admin
    later = ops.app.enqueue("ok", [1], at=NOON + 3600)
    soon = ops.app.enqueue("ok", [2], kwargs=None, at=NOON + 60)
    lines = _out(ops, capsys, "scheduled").splitlines()
    assert lines == [
        "due                  job  jid                       queue    retries  args  error",
        f"2026-11-29 12:01:30  ok   {soon}  default        0  [2]   -",
        f"2026-11-29 13:00:30  ok   {later}  default        0  [1]   -",
        "(page 1 of 1, 2 in the scheduled set)"]
    data = _json(ops, capsys, "scheduled")
    assert isinstance(data, dict)
    assert [(e["key"], e["at"]) for e in data["entries"]] == [(soon, NOON + 60),
                                                               (later, NOON + 3600)]

    assert _out(ops, capsys, "scheduled", "--retry", soon) == "retried 1\n"
    assert [job.jid for job in admin.queue_jobs("default").jobs] == [soon]
    assert _out(ops, capsys, "scheduled", "--delete", later) == "deleted 1\n"
    assert admin.scheduled().total == 0
    assert _out(ops, capsys, "scheduled") == "(page 1 of 1, 0 in the scheduled set)\n"
    assert "--kill" in _usage_error(ops, capsys, "scheduled", "--kill", soon)


def test_set_actions_are_one_at_a_time(ops: ModuleType,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(ops, capsys, "dead", "--retry", "a", "--delete", "b")
    assert "not allowed with argument" in err
    assert "not allowed with argument" in _usage_error(ops, capsys, "dead", "--retry-all",
                                                       "--retry", "a")
    assert "must be a whole number >= 1" in _usage_error(ops, capsys, "retries",
                                                         "--per-page", "0")


# -- workers and runs ---------------------------------------------------------------------


def test_workers_lists_alive_and_dead_with_their_signal(
        ops: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    admin, clock = ops.app.admin, ops.clock
    assert _out(ops, capsys, "workers") == "(no worker is registered)\n"
    assert _json(ops, capsys, "workers") == []
    info = {"instance": "host:1", "incarnation": "abc", "host": "host", "pid": "4242",
            "concurrency": "10", "busy": "3", "queues": "critical,default",
            "started_at": str(NOON - 3600), "jobs_per_call": "8"}
    ops.app.backend.heartbeat("host:1#abc", info, 30.0, clock.now())
    ops.app.backend.heartbeat("gone#1", {"instance": "gone"}, -1.0, clock.now())
    assert admin.quiet("host:1#abc")
    lines = _out(ops, capsys, "workers").splitlines()
    assert lines == [
        "worker      state  host   pid  started              threads  per call  queues"
        "            busy  signal",
        "gone#1      dead   -        -  -                          0         1  -"
        "                    0  -",
        "host:1#abc  alive  host  4242  2026-11-29 11:00:30       10         8  critical,default"
        "     3  quiet"]
    data = _json(ops, capsys, "workers")
    assert isinstance(data, list)
    assert data[1] == {"worker_id": "host:1#abc", "alive": True, "expires_at": NOON + 30,
                       "instance": "host:1", "incarnation": "abc", "host": "host",
                       "pid": 4242, "started_at": NOON - 3600, "concurrency": 10,
                       "queues": ["critical", "default"], "busy": 3, "signal": "quiet",
                       "jobs_per_call": 8}
    assert (data[0]["worker_id"], data[0]["alive"]) == ("gone#1", False)


def test_runs_lists_the_newest_first_by_status(ops: ModuleType,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    app = ops.app
    assert _out(ops, capsys, "runs") == "(no runs on page 1)\n"
    good = Workflow(Chain(ops.ok.s(1), ops.ok.s(2)), app=app).run()
    ops.clock.advance(1)
    bad = Workflow(Chain(ops.ok.s(1), ops.resize.s(7), ops.ok.s(3)), app=app).run()
    ops.clock.advance(1)
    waiting = Workflow(Chain(ops.ok.s(1), ops.ok.s(2)), app=app).run()
    app.drain()
    assert app.admin.run(waiting).status == "succeeded"
    ops.clock.advance(1)
    running = Workflow(Chain(ops.ok.s(1), ops.ok.s(2)), app=app).run()

    lines = _out(ops, capsys, "runs").splitlines()
    assert lines[0].split() == ["run", "status", "created", "finished", "nodes"]
    assert lines[1:] == [
        f"{running}  running    2026-11-29 12:00:33  -                    queued=1 pending=1",
        f"{waiting}  succeeded  2026-11-29 12:00:32  2026-11-29 12:00:32  succeeded=2",
        f"{bad}  failed     2026-11-29 12:00:31  2026-11-29 12:00:32  "
        "succeeded=1 dead=1 skipped=1",
        f"{good}  succeeded  2026-11-29 12:00:30  2026-11-29 12:00:32  succeeded=2"]
    failed = _out(ops, capsys, "runs", "--status", "failed").splitlines()
    assert [line.split()[0] for line in failed[1:]] == [bad]
    assert _out(ops, capsys, "runs", "--status", "cancelled") == (
        "(no cancelled runs on page 1)\n")
    paged = _out(ops, capsys, "runs", "--page", "2", "--per-page", "3").splitlines()
    assert [line.split()[0] for line in paged[1:]] == [good]

    data = _json(ops, capsys, "runs", "--status", "failed")
    assert data == [{"run_id": bad, "status": "failed", "created_at": NOON + 1,
                     "updated_at": NOON + 2, "finished_at": NOON + 2, "compacted": False,
                     "counts": {"succeeded": 1, "dead": 1, "skipped": 1},
                     "failed": [{"node_id": 1, "job": "images.resize",
                                 "error_class": "OSError",
                                 "error_message": "disk full at 7"}]}]
    every = _json(ops, capsys, "runs")
    assert isinstance(every, list)
    assert [(item["run_id"], item["compacted"]) for item in every] == [
        (running, False), (waiting, True), (bad, False), (good, True)]
    assert "invalid choice: 'done'" in _usage_error(ops, capsys, "runs", "--status", "done")


# -- orphans ------------------------------------------------------------------------------


def _orphaned(module: ModuleType, *jids_args: int) -> list[str]:
    """Jobs fetched by worker "gone#1" (instance "gone"), whose heartbeat then expired."""
    app, clock = module.app, module.clock
    jids = [module.ok.enqueue(n) for n in jids_args]
    app.backend.heartbeat("gone#1", {"instance": "gone"}, 5.0, clock.now())
    for _ in jids:
        assert app.backend.fetch("gone#1", ["default"], 0) is not None
    clock.advance(65)
    return jids


def test_orphans_lists_jobs_held_by_dead_workers(ops: ModuleType,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert _out(ops, capsys, "orphans") == "(no job is held by a dead worker)\n"
    assert _json(ops, capsys, "orphans") == []
    jids = _orphaned(ops, 1, 2)
    lines = _out(ops, capsys, "orphans").splitlines()
    assert lines[0].split() == ["jid", "job", "queue", "instance", "orphaned", "since", "for",
                                "args", "error"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(jids)
    row = next(line for line in lines[1:] if line.startswith(jids[0]))
    assert row == f"{jids[0]}  ok   default  gone      2026-11-29 12:00:35  1m 00s  [1]   -"
    data = _json(ops, capsys, "orphans")
    assert isinstance(data, list)
    first = next(item for item in data if item["jid"] == jids[0])
    assert first == {"jid": jids[0], "name": "ok", "queue": "default", "worker_id": "gone#1",
                     "instance": "gone", "orphaned_at": NOON + 5, "orphaned_for_s": 60.0,
                     "prefetched": False, "args": [1], "kwargs": {}, "error_class": None,
                     "error_message": None, "unreadable": None, "raw": None}


def test_orphans_delete_and_retry_all(ops: ModuleType,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    admin = ops.app.admin
    jids = _orphaned(ops, 1, 2, 3)
    out, err = _run(ops, capsys, "orphans", "--delete", jids[0], "--delete", "nope", code=1)
    assert out == "deleted 1\n"
    assert err == "sideline: error: not found in the jobs held by dead workers: nope\n"
    assert sorted(o.jid for o in admin.orphans()) == sorted(jids[1:])
    assert admin.queues()[0].size == 0

    assert _out(ops, capsys, "orphans", "--retry", jids[1]) == "retried 1\n"
    assert [o.jid for o in admin.orphans()] == [jids[2]]
    assert [job.jid for job in admin.queue_jobs("default").jobs] == [jids[1]]

    data = json.loads(_out(ops, capsys, "orphans", "--retry-all", "--json"))
    assert data == {"action": "retry", "count": 1, "keys": [jids[2]], "not_found": []}
    assert admin.orphans() == []
    assert [job.jid for job in admin.queue_jobs("default").jobs] == [jids[2], jids[1]]
    assert [r.jid for r in admin.recovery_log()] == [jids[2], jids[1]]
    assert "gone#1" not in {w.worker_id for w in admin.workers()}  # emptied: forgotten
    assert _out(ops, capsys, "orphans", "--retry-all") == "retried 0\n"
    assert "not allowed with argument" in _usage_error(ops, capsys, "orphans", "--retry-all",
                                                       "--delete", jids[0])


def test_a_bad_app_is_a_configuration_error(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    for command in ("stats", "queues", "dead", "retries", "scheduled", "workers", "runs",
                    "orphans"):
        assert main([command, "--app", "no_such_module_here:app"]) == 2
        assert "cannot import 'no_such_module_here'" in capsys.readouterr().err


# -- the real Redis -----------------------------------------------------------------------


@pytest.fixture
def redis_backend() -> Iterator[RedisBackend]:
    yield from real_redis_backend()


def _populate(app: App) -> tuple[list[str], str, str, str, str]:
    """Three dead jobs, one retry, a failed run, one scheduled job, and one job held by
    worker "ghost#1" (instance "ghost"), whose heartbeat expired: (dead jids, retry jid,
    run id, scheduled jid, held jid)."""

    @app.job(name="rjob", retry=False)
    def rjob(n: int) -> None:
        if n < 0:
            raise ValueError(f"negative {n}")

    @app.job(name="rflaky", retry=5)
    def rflaky() -> None:
        raise RuntimeError("later")

    dead = [rjob.enqueue(-n) for n in (1, 2, 3)]
    flaky = rflaky.enqueue()
    run_id = Workflow(Chain(rjob.s(1), rjob.s(-4)), app=app).run()
    app.drain(run_scheduled=False)
    scheduled = app.enqueue("rjob", [5], at=time.time() + 3600)
    held = rjob.enqueue(6)
    app.backend.heartbeat("ghost#1", {"instance": "ghost", "host": "h", "pid": "7"}, 0.5,
                          time.time())
    assert app.backend.fetch("ghost#1", ["default"], 0) is not None
    time.sleep(0.6)  # the ghost's heartbeat expires
    assert None not in (*dead, flaky, scheduled, held)
    return dead, flaky, run_id, scheduled, held


@pytest.mark.redis
def test_ops_commands_on_redis(redis_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    app = App(redis_backend)
    admin = app.admin
    dead, flaky, run_id, scheduled, held = _populate(app)
    namespace = ["--namespace", redis_backend.keys.namespace]

    def cli(*argv: str) -> str:
        assert main([*argv, *namespace]) == 0
        return capsys.readouterr().out

    stats = json.loads(cli("stats", "--json", "--days", "2"))
    assert (stats["dead"], stats["retries"], stats["scheduled"], stats["enqueued"]) == (
        4, 1, 1, 0)
    assert stats["history"][0]["failed"] == 5
    assert cli("stats").splitlines()[7] == "dead             4"
    assert json.loads(cli("queues", "--json")) == [
        {"name": "default", "size": 0, "latency_s": 0.0}]

    lines = cli("dead").splitlines()
    assert lines[-1] == "(page 1 of 1, 4 in the dead set)"
    assert {line.split()[3] for line in lines[1:-1]} == {*dead, f"{run_id}.1"}
    assert "ValueError: negative -1" in cli("dead", "--search", dead[0])
    assert cli("dead", "--retry", dead[0]) == "retried 1\n"
    assert admin.find("dead", dead[0]) is None
    assert [job.jid for job in admin.queue_jobs("default").jobs] == [dead[0]]
    assert cli("dead", "--delete", dead[1]) == "deleted 1\n"
    assert main(["dead", "--retry", dead[1], *namespace]) == 1
    assert capsys.readouterr() == ("retried 0\n",
                                   f"sideline: error: not found in the dead set: {dead[1]}\n")
    assert json.loads(cli("dead", "--retry-all", "--json"))["count"] == 2
    assert admin.dead().total == 0
    assert app.status(run_id).status == "running"  # the dead step revived its run

    assert json.loads(cli("retries", "--json"))["entries"][0]["jid"] == flaky
    assert cli("retries", "--kill", flaky) == "killed 1\n"
    assert admin.dead().entries[0].payload.dead_reason == "killed"
    assert json.loads(cli("scheduled", "--json"))["entries"][0]["key"] == scheduled
    assert cli("scheduled", "--delete", scheduled) == "deleted 1\n"
    assert admin.scheduled().total == 0

    workers = json.loads(cli("workers", "--json"))
    assert [(w["worker_id"], w["alive"], w["pid"]) for w in workers] == [("ghost#1", False, 7)]
    assert cli("workers").splitlines()[1].split()[:4] == ["ghost#1", "dead", "h", "7"]
    [run] = json.loads(cli("runs", "--json"))
    assert (run["run_id"], run["status"]) == (run_id, "running")
    assert cli("runs", "--status", "failed") == "(no failed runs on page 1)\n"

    [orphan] = json.loads(cli("orphans", "--json"))
    assert (orphan["jid"], orphan["instance"]) == (held, "ghost")
    assert cli("orphans").splitlines()[1].startswith(f"{held}  rjob  default  ghost  ")
    assert cli("orphans", "--retry-all") == "retried 1\n"
    assert admin.orphans() == []
    assert held in {job.jid for job in admin.queue_jobs("default").jobs}
