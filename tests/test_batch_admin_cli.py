"""Batches in the admin API (`admin.batches`, `admin.batch`, `admin.invalidate_batch`) and
the CLI (`sideline batches`, `sideline batch BID`): on the memory backend through an app
module, as tests/test_cli.py does, and on the real Redis through `--namespace`."""

from __future__ import annotations

import importlib
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sideline import App, Chain, RunStatus, Workflow, current_job
from sideline.adapters.redis import RedisBackend
from sideline.cli import main
from tests.conftest import FakeClock
from tests.support import real_redis_backend

APP_MODULE = textwrap.dedent("""
    from sideline import App, current_job

    app = App(testing="collect")
    skipped = []

    @app.job(name="upload")
    def upload(image_id):
        batch = current_job().batch
        if batch is not None and not batch.valid:
            skipped.append(image_id)

    @app.job(name="broken", retry=False)
    def broken(image_id):
        raise OSError(f"disk full at {image_id}")

    @app.job(name="mark_visible")
    def mark_visible(bid, album):
        pass

    @app.job(name="list_images")
    def list_images(album):
        batch = app.batch("Resize album")
        with batch.jobs():
            for image_id in range(2):
                upload.enqueue(image_id)
""")


@pytest.fixture
def cliapp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
           ) -> ModuleType:
    name = f"batchcliapp_{request.node.name.replace('[', '_').replace(']', '_')}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    return importlib.import_module(name)


def _upload_batch(module: ModuleType, images: int = 3, broken: int = 1) -> str:
    """A batch "Upload images" with a success callback, a child batch, one broken job."""
    batch = module.app.batch("Upload images")
    batch.on("success", module.mark_visible.s(7), {"album": 7})
    batch.on("death", module.mark_visible.s(0))
    with batch.jobs():
        for image_id in range(images):
            module.upload.enqueue(image_id)
        for image_id in range(broken):
            module.broken.enqueue(100 + image_id)
        thumbs = module.app.batch("Thumbnails")
        with thumbs.jobs():
            module.upload.enqueue(50)
    return batch.bid


def _cli(module: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--app", f"{module.__name__}:app"]) == 0
    return capsys.readouterr().out


# -- admin API --------------------------------------------------------------------------


@pytest.fixture
def app(clock: FakeClock) -> App:
    app = App(testing="collect", clock=clock)

    @app.job(name="work")
    def work(n: int) -> None:
        pass

    @app.job(name="doomed", retry=False)
    def doomed() -> None:
        raise ValueError("doomed")

    return app


def _batch(app: App, description: str, jobs: int = 1) -> str:
    batch = app.batch(description)
    with batch.jobs():
        for n in range(jobs):
            app.enqueue("work", [n])
    return batch.bid


def test_admin_batches_lists_newest_first_by_page(app: App, clock: FakeClock) -> None:
    bids = []
    for n in range(5):
        bids.append(_batch(app, f"batch {n}"))
        clock.advance(1)
    newest = list(reversed(bids))
    assert [b.bid for b in app.admin.batches()] == newest
    assert [b.bid for b in app.admin.batches(page=2, per_page=2)] == newest[2:4]
    assert [b.bid for b in app.admin.batches(page=3, per_page=2)] == newest[4:]
    assert app.admin.batches(page=4, per_page=2) == []
    first = app.admin.batches(per_page=1)[0]
    assert (first.description, first.total, first.pending, first.complete) == (
        "batch 4", 1, 1, False)
    with pytest.raises(ValueError, match="page"):
        app.admin.batches(page=0)


def test_admin_batch_reads_every_field_and_none_when_unknown(app: App) -> None:
    @app.job(name="done")
    def done(bid: str) -> None:
        pass

    batch = app.batch("Mixed")
    batch.on("success", done.s(), {"album": 7})
    with batch.jobs():
        app.enqueue("work", [1])
        app.enqueue("doomed")
    app.drain()
    status = app.admin.batch(batch.bid)
    assert status is not None
    assert status == batch.status()
    assert (status.total, status.pending, status.failures) == (2, 1, 1)
    [dead] = status.dead
    assert status.failed == {dead: ("ValueError", "doomed")}
    assert (status.complete, status.success) == (True, False)
    assert status.death_at is not None
    assert status.success_at is None
    assert status.callbacks == {"success": "done"}
    assert status.options == {"success": {"album": 7}}
    assert app.admin.batch("0123456789abcdef01234567") is None


def test_admin_invalidate_batch_marks_it_and_jobs_see_it(app: App) -> None:
    seen: list[bool] = []

    @app.job(name="check")
    def check() -> None:
        batch = current_job().batch
        assert batch is not None
        seen.append(batch.valid)

    batch = app.batch("Doomed import")
    with batch.jobs():
        check.enqueue()
    assert app.admin.invalidate_batch(batch.bid) is True
    app.drain()
    assert seen == [False]
    status = app.admin.batch(batch.bid)
    assert status is not None
    assert status.invalidated
    assert status.success
    assert app.admin.invalidate_batch("0123456789abcdef01234567") is False


def test_admin_forgets_a_batch_once_it_expired(app: App, clock: FakeClock) -> None:
    short = app.batch("short", linger_s=60)
    with short.jobs():
        app.enqueue("work", [1])
    pending = _batch(app, "pending")
    app.drain(run_scheduled=False)
    [shown] = [b for b in app.admin.batches() if b.bid == short.bid]
    assert shown.success
    assert shown.expires_at == pytest.approx(clock.now() + 60)
    clock.advance(61)
    assert app.admin.batch(short.bid) is None
    assert [b.bid for b in app.admin.batches()] == [pending]
    assert app.admin.invalidate_batch(short.bid) is False


# -- CLI on the memory backend ----------------------------------------------------------


def test_batches_prints_a_table_newest_first(cliapp: ModuleType,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bid = _upload_batch(cliapp)
    cliapp.app.drain()
    empty = cliapp.app.batch("Nothing to do")
    with empty.jobs():
        pass
    lines = _cli(cliapp, capsys, "batches").splitlines()
    assert lines[0].split() == ["bid", "description", "total", "pending", "failures", "dead",
                                "complete", "success", "created"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert next(iter(rows)) == empty.bid  # newest first
    assert rows[empty.bid].split()[1:] == ["Nothing", "to", "do", "0", "0", "0", "0", "yes",
                                           "yes", rows[empty.bid].split()[-1]]
    assert rows[bid].split()[1:10] == ["Upload", "images", "4", "1", "1", "1", "yes", "no",
                                       rows[bid].split()[-1]]
    assert len(rows) == 3  # the child batch "Thumbnails" too
    assert rows[bid].split()[-1].endswith("+00:00")

    data = json.loads(_cli(cliapp, capsys, "batches", "--json", "--per-page", "1"))
    assert [item["bid"] for item in data] == [empty.bid]
    later = json.loads(_cli(cliapp, capsys, "batches", "--json", "--page", "2",
                            "--per-page", "2"))
    assert len(later) == 1  # 3 batches; the parent and its child were created together
    every = json.loads(_cli(cliapp, capsys, "batches", "--json"))
    [upload] = [item for item in every if item["bid"] == bid]
    assert upload["failed"] == {upload["dead"][0]: {"error_class": "OSError",
                                                    "error_message": "disk full at 100"}}


def test_batches_with_none_says_so(cliapp: ModuleType,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    lines = _cli(cliapp, capsys, "batches").splitlines()
    assert lines[1:] == ["(no batches on page 1)"]
    assert json.loads(_cli(cliapp, capsys, "batches", "--json")) == []


def test_batch_prints_every_field(cliapp: ModuleType,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bid = _upload_batch(cliapp)
    cliapp.app.drain()
    status = cliapp.app.admin.batch(bid)
    [dead] = status.dead
    [child] = status.children
    lines = _cli(cliapp, capsys, "batch", bid).splitlines()
    assert lines[0] == f'batch {bid}: complete  "Upload images"'
    assert lines[1] == ("  total=4  pending=1  failures=1  dead=1  complete=yes  success=no  "
                        "invalidated=no")
    assert lines[2].startswith("  created=")
    assert "  complete_at=" in lines[2]
    assert "  death_at=" in lines[2]
    assert "  expires=" in lines[2]
    assert "success_at=" not in lines[2]
    assert lines[3] == f"  parent=-  children=['{child}']"
    assert lines[4:] == ['  callback success  mark_visible  options={"album": 7}',
                         "  callback death    mark_visible  options={}",
                         f"  dead job {dead}  OSError: disk full at 100"]

    data = json.loads(_cli(cliapp, capsys, "batch", bid, "--json"))
    assert data == {
        "bid": bid, "description": "Upload images", "parent": None, "children": [child],
        "total": 4, "pending": 1, "failures": 1,
        "failed": {dead: {"error_class": "OSError", "error_message": "disk full at 100"}},
        "dead": [dead], "complete": True, "success": False, "invalidated": False,
        "created_at": status.created_at, "complete_at": status.complete_at,
        "success_at": None, "death_at": status.death_at, "expires_at": status.expires_at,
        "callbacks": {"success": "mark_visible", "death": "mark_visible"},
        "options": {"success": {"album": 7}, "death": {}}, "run_id": None, "node_id": None}

    child_lines = _cli(cliapp, capsys, "batch", child).splitlines()
    assert child_lines[0] == f'batch {child}: success  "Thumbnails"'
    assert child_lines[3] == f"  parent={bid}  children=[]"


def test_batch_of_a_workflow_step_names_its_run(cliapp: ModuleType,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run_id = Workflow(Chain(cliapp.list_images.s(7), cliapp.upload.s(9)),
                      app=cliapp.app).run()
    cliapp.app.drain()
    assert cliapp.app.status(run_id).status is RunStatus.SUCCEEDED
    [batch] = cliapp.app.admin.batches()
    assert (batch.run_id, batch.node_id) == (run_id, 0)
    lines = _cli(cliapp, capsys, "batch", batch.bid).splitlines()
    assert f"  workflow step: run {run_id} node 0" in lines
    assert json.loads(_cli(cliapp, capsys, "batch", batch.bid, "--json"))["run_id"] == run_id


def test_batch_of_an_invalidated_batch(cliapp: ModuleType,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bid = _upload_batch(cliapp, images=2, broken=0)
    assert cliapp.app.admin.invalidate_batch(bid)
    cliapp.app.drain()
    assert sorted(cliapp.skipped) == [0, 1]  # the child's job belongs to the child batch
    lines = _cli(cliapp, capsys, "batch", bid).splitlines()
    assert lines[0] == f'batch {bid}: success  "Upload images"'
    assert lines[1].endswith("invalidated=yes")


def test_batch_unknown_exits_1_with_a_message(cliapp: ModuleType,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["batch", "0123456789abcdef01234567", "--app", f"{cliapp.__name__}:app"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err == ("sideline: error: batch '0123456789abcdef01234567' is unknown: it expired "
                   "or never existed\n")


def test_batches_refuses_a_page_below_1(cliapp: ModuleType,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["batches", "--page", "0", "--app", f"{cliapp.__name__}:app"])
    assert exit_.value.code == 2
    assert "must be a whole number >= 1, got '0'" in capsys.readouterr().err


def test_batches_cuts_a_long_description(cliapp: ModuleType,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    batch = cliapp.app.batch("Upload images for the summer album")
    with batch.jobs():
        cliapp.upload.enqueue(1)
    [row] = _cli(cliapp, capsys, "batches").splitlines()[1:]
    assert row.startswith(f"{batch.bid}  Upload images for the...      1       1        0     0  no ")
    [data] = json.loads(_cli(cliapp, capsys, "batches", "--json"))
    assert data["description"] == "Upload images for the summer album"


# -- the real Redis ----------------------------------------------------------------------


@pytest.fixture
def redis_backend() -> Iterator[RedisBackend]:
    yield from real_redis_backend()


@pytest.mark.redis
def test_admin_and_cli_on_redis(redis_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SIDELINE_APP", raising=False)
    app = App(redis_backend)

    @app.job(name="rjob")
    def rjob(n: int) -> None:
        if n < 0:
            raise ValueError(f"negative {n}")

    @app.job(name="rdone")
    def rdone(bid: str) -> None:
        pass

    ok = app.batch("Redis ok")
    ok.on("success", rdone.s(), {"k": [1, 2]})
    with ok.jobs():
        for n in range(3):
            rjob.enqueue(n)
    doomed = app.batch("Redis doomed")
    with doomed.jobs():
        rjob.enqueue(1)
        app.client.enqueue("rjob", [-1])
    app.drain(run_scheduled=False)  # the failed job waits in the retry set

    assert app.admin.batch(ok.bid) == ok.status()
    listed = app.admin.batches()
    assert [b.bid for b in listed] == [doomed.bid, ok.bid]
    assert (listed[0].pending, listed[0].failures, listed[0].complete) == (1, 1, True)
    assert listed[1].success
    assert listed[1].options == {"success": {"k": [1, 2]}}
    assert app.admin.batch("0123456789abcdef01234567") is None
    assert app.admin.invalidate_batch(doomed.bid)
    assert app.admin.invalidate_batch("0123456789abcdef01234567") is False

    namespace = redis_backend.keys.namespace
    assert main(["batches", "--namespace", namespace]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [doomed.bid, ok.bid]
    assert main(["batch", ok.bid, "--namespace", namespace, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["total"], data["success"], data["callbacks"]) == (3, True,
                                                                   {"success": "rdone"})
    assert main(["batch", doomed.bid, "--namespace", namespace]) == 0
    text = capsys.readouterr().out
    assert "invalidated=yes" in text
    assert "failed job " in text
    assert "ValueError: negative -1" in text
    assert main(["batch", "0123456789abcdef01234567", "--namespace", namespace]) == 1
    assert "is unknown" in capsys.readouterr().err

