"""The dashboard in Chromium against real Redis and real `sideline worker` processes.

Each test serves `create_app(App(redis_ns))` (the test's fresh Redis namespace) with
uvicorn, starts `sideline worker --app tests.redis.apps.web_app:app` subprocesses on the
same namespace where it needs jobs run, and drives the pages in Debian's Chromium:

- every page renders with live data (a value only this test's data can show on each);
  with SIDELINE_SCREENSHOTS=<dir> it saves a full-page screenshot of each as
  <dir>/<route name>.png (1280 px wide): `python scripts/screenshots.py` makes
  docs/images/ this way;
- retrying a dead job by a click makes the worker run it (and succeed), and a bulk delete
  of two ticked entries removes them;
- a run's graph follows the run while the worker advances it, without a reload;
- a counter of the dashboard changes without a reload;
- a POST without the CSRF token (or with a wrong one) gets 403 and changes nothing;
- `<script>` and `<img onerror>` in job arguments are shown as text, never run.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sideline import App, Chain, Group, Signature, Workflow
from sideline.adapters.redis import RedisBackend
from sideline.core.admin import StatsView
from tests.redis.apps.web_app import UNSERVED_QUEUE, declare, done_key
from tests.redis.conftest import redis_ns, spawn  # noqa: F401 (fixtures used by name)
from tests.redis.helpers import Spawn, WorkerProcess, wait_until
from tests.web.conftest import Serve

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKER_APP = "tests.redis.apps.web_app:app"
SCRIPT = "<script>window.__pwned=1</script>"
IMG = "<img src=x onerror=window.__pwned=1>"
SETTLE_S = 20.0
"""The longest a test waits for the worker to get somewhere."""


def _app(backend: RedisBackend) -> App:
    """The dashboard's app: the test's namespace, the worker app's jobs declared."""
    return declare(App(backend))


def _worker(start: Spawn, instance: str = "web-1", threads: int = 4) -> WorkerProcess:
    return start(instance, ["-c", str(threads), "-q", "default"], app=WORKER_APP)


def _counter(page: Any, name: str) -> str:
    text: str = page.locator(f'[data-counter="{name}"] strong').inner_text()
    return text


def _mark_loaded(page: Any) -> None:
    """Tag the document: the tag survives in-place refreshes, not a reload."""
    page.evaluate("window.__sidelineTestMark = 'same document'")


def _not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("window.__sidelineTestMark === 'same document'"))


# -- every page ---------------------------------------------------------------------------


@dataclass
class Filled:
    """What `_fill` put in the namespace (jids, ids) and the counters once it settled."""

    worker: WorkerProcess
    queued: list[str]
    scheduled: str
    charge: str
    dead: str
    run_id: str
    bid: str
    napping: str
    stats: StatsView


def _fill(app: App, start: Spawn) -> Filled:
    """Queued jobs (never served), one scheduled, one waiting for its retry, dead jobs, a
    failed run with a dead step, a batch with a dead job, processed jobs; then a long job
    the worker is still running. Returns once the worker has done all but that one."""
    admin = app.admin
    worker = _worker(start)
    queued = [app.enqueue("resize", [f"photos/{n}.jpg", 640]) for n in range(12)]
    scheduled = app.enqueue("hello", ["weekly report"], at=app.clock.now() + 3_600)
    charge = app.enqueue("charge", [1041])
    dead = app.enqueue("flaky", ["invoice-7", 99])
    run_id = Workflow(Chain(Group(Signature("thumbnail", ("a.jpg", 320)),
                                  Signature("flaky", ("wf-step", 99))),
                            Signature("hello", ("album published",))), app=app).run()
    batch = app.batch("Upload album 12").on("success", Signature("hello", ("album ready",)))
    with batch.jobs():
        for n in range(4):
            app.enqueue("thumbnail", [f"album/{n}.jpg", 1024])
        app.enqueue("flaky", ["album/broken.jpg", 99])
    for n in range(20):
        app.enqueue("hello", [n])
    napping = app.enqueue("nap", [120])

    def settled() -> bool:
        stats = admin.stats()
        status = admin.batch(batch.bid)
        return (stats.dead == 3 and stats.retries == 1 and stats.busy == 1
                and admin.run(run_id).finished and status is not None and status.complete
                and any(job.jid == napping for job in admin.busy()))

    wait_until(settled, SETTLE_S, "the worker to run everything but the nap", 0.05)
    jids = [*queued, scheduled, charge, dead, napping]
    assert all(jids)
    return Filled(worker, [str(jid) for jid in queued], str(scheduled), str(charge), str(dead),
                  run_id, batch.bid, str(napping), admin.stats())


def _home(page: Any, filled: Filled) -> None:
    assert _counter(page, "processed") == f"{filled.stats.processed:,}"
    assert _counter(page, "dead") == "3"
    assert _counter(page, "workers") == "1"
    assert _counter(page, "busy") == "1"
    assert page.locator(f'a[href$="/queues/{UNSERVED_QUEUE}"]').count() == 1


def _busy(page: Any, filled: Filled) -> None:
    workers = page.locator("tr.alive")
    assert workers.count() == 1
    assert "web-1" in workers.inner_text()
    assert str(filled.worker.pid) in workers.inner_text()
    assert filled.napping in page.locator("section", has_text="Running now").inner_text()


def _queues(page: Any, filled: Filled) -> None:
    row = page.locator(f'tr[data-queue="{UNSERVED_QUEUE}"]')
    assert row.locator("td.num").first.inner_text() == "12"


def _queue(page: Any, filled: Filled) -> None:
    assert page.locator("tr[data-jid]").count() == 12
    assert "photos/0.jpg" in page.locator(f'tr[data-jid="{filled.queued[0]}"]').inner_text()


def _scheduled(page: Any, filled: Filled) -> None:
    assert page.locator("h1").inner_text() == "Scheduled (1)"
    assert "weekly report" in page.locator(f'tr[data-key="{filled.scheduled}"]').inner_text()


def _retries(page: Any, filled: Filled) -> None:
    assert page.locator("h1").inner_text() == "Retries (1)"
    row = page.locator(f'tr[data-key="{filled.charge}"]').inner_text()
    assert "card declined for order 1041" in row


def _dead(page: Any, filled: Filled) -> None:
    assert page.locator("h1").inner_text() == "Dead (3)"
    row = page.locator(f'tr[data-key="{filled.dead}"]').inner_text()
    assert "flaky invoice-7 failed on run 1" in row


def _entry(page: Any, filled: Filled) -> None:
    assert "invoice-7" in page.locator("pre.args").inner_text()
    backtrace = page.locator("pre.backtrace").inner_text()
    assert "ValueError: flaky invoice-7 failed on run 1" in backtrace
    assert "web_app.py" in backtrace  # the worker's own frame


def _workflows(page: Any, filled: Filled) -> None:
    assert page.locator(f'tr[data-run="{filled.run_id}"] td').nth(1).inner_text() == "failed"


def _workflow(page: Any, filled: Filled) -> None:
    assert _node_states(page) == {0: "succeeded", 1: "dead", 2: "skipped"}
    assert page.locator("[data-run-status]").inner_text() == "failed"
    assert "flaky wf-step failed on run 1" in page.locator("table.nodes").inner_text()


def _batches(page: Any, filled: Filled) -> None:
    assert "Upload album 12" in page.locator(f'tr[data-bid="{filled.bid}"]').inner_text()


def _batch(page: Any, filled: Filled) -> None:
    assert page.locator('[data-field="total"]').inner_text() == "5"
    assert page.locator('[data-field="dead"]').inner_text() == "1"
    assert page.locator('[data-field="complete"]').inner_text() == "yes"


def _orphans(page: Any, filled: Filled) -> None:
    row = page.locator("table.orphans tbody tr")
    assert row.count() == 1
    assert filled.napping in row.inner_text()
    assert "web-1" in row.inner_text()
    assert page.locator(f'tr.dead[data-worker="{filled.worker.worker_id}"]').count() == 1


PAGES: list[tuple[str, str, Callable[[Any, Filled], None]]] = [
    ("home", "/", _home),
    ("busy", "/busy", _busy),
    ("queues", "/queues", _queues),
    ("queue", f"/queues/{UNSERVED_QUEUE}", _queue),
    ("scheduled", "/scheduled", _scheduled),
    ("retries", "/retries", _retries),
    ("dead", "/dead", _dead),
    ("entry", "/dead/entry/{dead}", _entry),
    ("workflows", "/workflows", _workflows),
    ("workflow", "/workflows/{run_id}", _workflow),
    ("batches", "/batches", _batches),
    ("batch", "/batches/{bid}", _batch),
    ("orphans", "/orphans", _orphans),
]
"""Each page: its route name (the screenshot's name), its path, what it must show."""


def test_every_page_renders_with_live_data(redis_ns: RedisBackend,  # noqa: F811
                                           spawn: Spawn, serve: Serve,  # noqa: F811
                                           page: Any) -> None:
    app = _app(redis_ns)
    filled = _fill(app, spawn)
    base = serve(app)
    shots = os.environ.get("SIDELINE_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
    for route, path, check in PAGES:
        if route == "orphans":
            # the worker dies holding the nap: once its heartbeat expires (2 s), the job
            # is orphaned (no live worker is left to recover it)
            filled.worker.signal(signal.SIGKILL)
            filled.worker.wait(10)
            wait_until(app.admin.orphans, 10, "the nap to be orphaned", 0.05)
        response = page.goto(base + path.format(dead=filled.dead, run_id=filled.run_id,
                                                bid=filled.bid))
        assert response is not None, route
        assert response.status == 200, route
        check(page, filled)
        if route == "home":
            assert f"Redis ({redis_ns.keys.namespace})" in page.locator("dl.facts").inner_text()
        if shots:
            page.screenshot(path=str(Path(shots) / f"{route}.png"), full_page=True)


# -- actions by click ---------------------------------------------------------------------


def test_a_dead_job_retried_by_a_click_runs_and_two_ticked_are_deleted(
        redis_ns: RedisBackend, spawn: Spawn, serve: Serve, page: Any) -> None:  # noqa: F811
    app = _app(redis_ns)
    _worker(spawn)
    again = app.enqueue("flaky", ["again"])  # dies on its first run only
    gone = [app.enqueue("flaky", [f"gone-{n}", 99]) for n in range(2)]
    wait_until(lambda: app.admin.stats().dead == 3, SETTLE_S, "three dead jobs", 0.05)
    processed = app.admin.stats().processed
    base = serve(app, refresh_s=0.3)

    page.goto(base + "/dead")
    assert page.locator("h1").inner_text() == "Dead (3)"
    page.locator(f'tr[data-key="{again}"] td.actions button', has_text="Retry now").click()
    page.wait_for_url(re.compile(r"/dead\?done=1\+retried$"))
    assert page.locator("h1").inner_text() == "Dead (2)"
    assert page.locator(f'tr[data-key="{again}"]').count() == 0
    # the worker runs it again: its second run succeeds; the dashboard counts it live
    page.goto(base + "/")
    page.wait_for_function(
        f"document.querySelector('[data-counter=processed] strong').textContent === "
        f"'{processed + 1}'", timeout=SETTLE_S * 1000)
    assert redis_ns.client.get(done_key(redis_ns, "again")) == "2"
    assert _counter(page, "dead") == "2"

    page.goto(base + "/dead")
    for jid in gone:
        page.check(f'input[name=key][value="{jid}"]')
    page.click("#bulk button[value=delete]")
    page.wait_for_url(re.compile(r"/dead\?done=2\+deleted$"))
    assert page.locator("h1").inner_text() == "Dead (0)"
    assert page.locator(".flash").inner_text() == "2 deleted"
    assert "The dead set is empty." in page.locator("main").inner_text()
    assert app.admin.stats().dead == 0
    assert redis_ns.client.get(done_key(redis_ns, "gone-0")) is None  # deleted, not run


# -- live updates -------------------------------------------------------------------------


def _node_states(page: Any) -> dict[int, str]:
    states: dict[int, str] = page.evaluate(
        """Object.fromEntries([...document.querySelectorAll('svg.graph g.node')].map(
             (node) => [node.dataset.node,
                        [...node.classList].find((c) => c.startsWith('status-')).slice(7)]))""")
    return {int(node): state for node, state in states.items()}


def test_a_run_graph_follows_the_worker_without_a_reload(
        redis_ns: RedisBackend, spawn: Spawn, serve: Serve, page: Any) -> None:  # noqa: F811
    app = _app(redis_ns)
    _worker(spawn)
    base = serve(app, refresh_s=0.2)
    run_id = Workflow(Chain(*(Signature("nap", (1.0,)) for _ in range(3))),
                      app=app).run()
    page.goto(f"{base}/workflows/{run_id}")
    _mark_loaded(page)
    seen: list[dict[int, str]] = []

    def until(condition: Callable[[dict[int, str]], bool], what: str) -> None:
        def check() -> bool:
            states = _node_states(page)
            if not seen or seen[-1] != states:
                seen.append(states)
            return bool(states) and condition(states)

        try:
            wait_until(check, SETTLE_S, what, 0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the graph went {seen}") from None

    until(lambda s: s[0] == "succeeded" and s[1] != "succeeded", "step 0 done, step 1 not yet")
    until(lambda s: s[1] == "succeeded" and s[2] != "succeeded", "step 1 done, step 2 not yet")
    assert seen[0][0] != "succeeded", seen  # the page opened on a step still to finish
    # A run that succeeds is compacted in the same step (its graph is dropped, its counts
    # kept): the page turns into the run's summary, still without a reload.
    page.wait_for_function(
        "document.querySelector('[data-run-status]').textContent === 'succeeded'",
        timeout=SETTLE_S * 1000)
    assert _not_reloaded(page)
    assert "3 succeeded" in page.locator("dl.facts").inner_text()
    assert "was compacted" in page.locator("main").inner_text()
    assert _node_states(page) == {}  # the graph gave way to the summary


def test_the_dashboard_counts_the_workers_jobs_without_a_reload(
        redis_ns: RedisBackend, spawn: Spawn, serve: Serve, page: Any) -> None:  # noqa: F811
    app = _app(redis_ns)
    _worker(spawn)
    base = serve(app, refresh_s=0.3)
    page.goto(base + "/")
    _mark_loaded(page)
    assert _counter(page, "processed") == "0"
    page.wait_for_function(  # the worker's heartbeat shows up by itself
        "document.querySelector('[data-counter=workers] strong').textContent === '1'",
        timeout=SETTLE_S * 1000)
    for n in range(7):
        app.enqueue("hello", [n])
    page.wait_for_function(
        "document.querySelector('[data-counter=processed] strong').textContent === '7'",
        timeout=SETTLE_S * 1000)
    assert _not_reloaded(page)


# -- security -----------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(redis_ns: RedisBackend,  # noqa: F811
                                                  serve: Serve, page: Any) -> None:
    app = _app(redis_ns)
    jid = app.enqueue("resize", ["keep.jpg", 640])
    base = serve(app)
    url = f"{base}/queues/{UNSERVED_QUEUE}"
    page.goto(url)  # the browser now holds the CSRF cookie
    assert page.context.cookies()[0]["name"] == "sideline_csrf"
    refused = page.request.post(url + "/delete", form={"jid": jid})
    assert refused.status == 403
    assert "CSRF" in refused.text()
    forged = page.request.post(url + "/delete", form={"jid": jid, "csrf": "forged"})
    assert forged.status == 403
    # a plain form in the page, as another site's page would send it (no token)
    with page.expect_navigation() as navigation:
        page.evaluate("""([action, jid]) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            const field = document.createElement('input');
            field.name = 'jid';
            field.value = jid;
            form.append(field);
            document.body.append(form);
            form.submit();
        }""", [url + "/delete", jid])
    assert navigation.value.status == 403
    assert app.admin.queue_jobs(UNSERVED_QUEUE).total == 1
    # the page's own button (with the token) does it
    page.goto(url)
    page.locator(f'tr[data-jid="{jid}"] button', has_text="Delete").click()
    page.wait_for_url(re.compile(r"done=deleted"))
    assert app.admin.queue_jobs(UNSERVED_QUEUE).total == 0


def test_markup_in_arguments_is_shown_never_run(redis_ns: RedisBackend,  # noqa: F811
                                                spawn: Spawn, serve: Serve,  # noqa: F811
                                                page: Any) -> None:
    app = _app(redis_ns)
    _worker(spawn)
    dead = app.enqueue("flaky", ["xss", 99, SCRIPT, IMG])
    app.enqueue("resize", [SCRIPT, IMG])
    wait_until(lambda: app.admin.stats().dead == 1, SETTLE_S, "the job to die", 0.05)
    base = serve(app, refresh_s=0.3)
    for path, shown in ((f"/queues/{UNSERVED_QUEUE}", "code.args"), ("/dead", "code.args"),
                        (f"/dead/entry/{dead}", "pre.args")):
        page.goto(base + path)
        # wait for an in-place refresh too: it sets the fragment with innerHTML
        page.wait_for_function("document.getElementById('live').dataset.refreshed")
        page.wait_for_timeout(200)  # an onerror would have fired by now
        assert page.evaluate("typeof window.__pwned") == "undefined", path
        assert page.locator("main img").count() == 0, path
        text = page.locator(shown).first.inner_text()
        assert SCRIPT in text, path
        assert IMG in text, path
    # the error message and backtrace repeat the arguments: text as well
    assert SCRIPT in page.locator("pre.backtrace").inner_text()
