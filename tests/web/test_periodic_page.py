"""The Periodic page (`/periodic`): the stored periodic entries with their schedule, next
run and last fire, and Pause / Resume / Run now behind CSRF and read-only, everything
escaped. Starlette's test client on the memory backend; the entries are stored and one
tick fired by a worker's scheduler (`sideline.runtime.periodic.Scheduler`)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from sideline import App
from sideline.core.payload import decode
from sideline.runtime.periodic import PeriodicView, Scheduler
from sideline.web import create_app
from tests.conftest import FakeClock
from tests.web.conftest import csrf_of

HOSTILE = "<script>alert('x')</script>"
HOUR = 3600.0


def _when(epoch_s: float | None) -> str:
    """A time as the pages' titles show it."""
    assert epoch_s is not None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_s)) + " UTC"


@pytest.fixture
def periodic_app() -> App:
    """An app with three stored entries: `hourly` (every hour), stored two hours ago, so
    its latest missed tick was fired now; `daily-sales` (06:00 in Warsaw) and `hostile` (a
    job name and arguments holding markup), stored now, so they have not fired."""
    now = time.time()
    app = App(clock=FakeClock(now))

    @app.job(name="reports.daily")
    def daily_report(*args: Any) -> None:
        """Does nothing."""

    @app.job(name=f"job{HOSTILE}")
    def hostile(*args: Any) -> None:
        """Does nothing."""

    hourly = app.periodic("hourly", daily_report.s("check"), every_s=HOUR)
    app.periodic("daily-sales", daily_report.s("sales"), cron="0 6 * * *", tz="Europe/Warsaw")
    app.periodic("hostile", hostile.s(HOSTILE, {"html": "<img src=x onerror=alert(1)>"}),
                 cron="*/5 * * * *", missed="skip")
    app.backend.sync_periodic([hourly], [], now - 2 * HOUR)  # removes nothing: owns no job
    runtime = app.runtime
    scheduler = Scheduler(runtime.backend, runtime.client, runtime.periodic,
                          runtime.registry.names())
    scheduler.start(now)  # hourly is unchanged, so it keeps its last tick
    assert scheduler.run_due(now) == 1
    return app


@pytest.fixture
def client(periodic_app: App) -> Iterator[TestClient]:
    with TestClient(create_app(periodic_app)) as test_client:
        test_client.get("/")  # takes the CSRF cookie
        yield test_client


def _entry(app: App, name: str) -> PeriodicView:
    return next(entry for entry in app.admin.periodic() if entry.name == name)


def _row(html: str, name: str) -> str:
    start = html.index(f'<tr data-entry="{name}">')
    return html[start:html.index("</tr>", start)]


def _queued(app: App) -> list[tuple[str, str, list[Any]]]:
    return [(p.jid, p.name, p.args) for p in map(decode, app.backend.peek("default", 100))]


def _act(client: TestClient, action: str, name: str, **extra: str) -> Any:
    return client.post("/periodic/act", data={"action": action, "name": name,
                                              "csrf": csrf_of(client), **extra},
                       follow_redirects=False)


def test_lists_each_entry_with_its_schedule_next_run_and_last_fire(
        client: TestClient, periodic_app: App) -> None:
    home = client.get("/").text
    assert '<a href="/periodic">Periodic</a>' in home
    page = client.get("/periodic")
    assert page.status_code == 200
    assert '<a href="/periodic" aria-current="page">Periodic</a>' in page.text

    hourly = _entry(periodic_app, "hourly")
    tick = math.floor(periodic_app.clock.now() / HOUR) * HOUR
    assert hourly.last_jid == f"periodic:hourly:{int(tick * 1000)}"
    assert hourly.next_run == tick + HOUR
    row = _row(page.text, "hourly")
    for cell in ('<td class="name"><code>hourly</code></td>', "<td>reports.daily</td>",
                 "<code>[&#34;check&#34;]</code>", '<td class="schedule"><code>every 3600 s</code></td>',
                 "<td>UTC</td>", "<td>latest</td>", '<td class="status-succeeded">active</td>',
                 f'<td class="when" title="{_when(hourly.next_run)}">in ',
                 f'<td class="when" title="{_when(hourly.last_fired_at)}">'):
        assert cell in row, cell
    link = f"/jobs/periodic%3Ahourly%3A{int(tick * 1000)}"
    assert f'<a href="{link}"><code>{hourly.last_jid}</code></a>' in row
    job_page = client.get(link)
    assert job_page.status_code == 200
    assert hourly.last_jid in job_page.text

    sales = _entry(periodic_app, "daily-sales")
    assert sales.next_run is not None
    row = _row(page.text, "daily-sales")
    for cell in ('<td class="schedule"><code>0 6 * * *</code></td>', "<td>Europe/Warsaw</td>",
                 f'<td class="when" title="{_when(sales.next_run)}">in ', '<td class="jid">—</td>',
                 ">Pause</button>", ">Run now</button>"):
        assert cell in row, cell
    assert ">Resume</button>" not in row

    fragment = client.get("/periodic", headers={"x-sideline-fragment": "1"}).text
    assert fragment.lstrip().startswith("<h1>Periodic jobs</h1>")  # the live part alone
    assert f'<a href="{link}"><code>{hourly.last_jid}</code></a>' in _row(fragment, "hourly")
    assert "<html" not in fragment


def test_pause_resume_and_run_now(client: TestClient, periodic_app: App) -> None:
    moved = _act(client, "pause", "daily-sales")
    assert moved.status_code == 303
    assert moved.headers["location"] == "/periodic?note=paused"
    assert _entry(periodic_app, "daily-sales").paused
    page = client.get(moved.headers["location"]).text
    assert "The entry is paused" in page
    row = _row(page, "daily-sales")
    assert '<td class="status-cancelled">paused</td>' in row
    assert ">Resume</button>" in row
    assert ">Pause</button>" not in row

    moved = _act(client, "resume", "daily-sales")
    assert moved.headers["location"] == "/periodic?note=resumed"
    assert not _entry(periodic_app, "daily-sales").paused
    assert "The entry is resumed" in client.get(moved.headers["location"]).text

    before = _queued(periodic_app)
    moved = _act(client, "run", "daily-sales")
    assert moved.headers["location"] == "/periodic?note=run"
    [(_jid, job, args)] = [item for item in _queued(periodic_app) if item not in before]
    assert (job, args) == ("reports.daily", ["sales"])
    assert _entry(periodic_app, "daily-sales").last_jid is None  # its ticks are unchanged
    assert "pushed to its queue" in client.get(moved.headers["location"]).text


def test_an_unknown_entry_or_action(client: TestClient, periodic_app: App) -> None:
    before = _queued(periodic_app)
    for action in ("pause", "resume", "run"):
        moved = _act(client, action, "nope")
        assert moved.headers["location"] == "/periodic?note=unknown"
    assert _queued(periodic_app) == before
    assert "No stored periodic entry has that name" in client.get(
        "/periodic?note=unknown").text
    assert _act(client, "delete", "hourly").status_code == 400
    assert _act(client, "pause", "").status_code == 400
    page = client.get(f"/periodic?note={HOSTILE}").text  # an unknown code shows nothing
    assert HOSTILE not in page
    assert 'class="flash"' not in page


def test_run_now_of_a_job_this_app_does_not_declare(periodic_app: App) -> None:
    """A dashboard whose app shares the store but not the job says the push failed."""
    other = App(periodic_app.backend)
    with TestClient(create_app(other)) as client:
        client.get("/")
        moved = _act(client, "run", "hourly")
        assert moved.headers["location"] == "/periodic?note=run-failed"
        assert "could not be pushed" in client.get(moved.headers["location"]).text
        page = client.get("/periodic").text
        assert '<tr data-entry="hourly">' in page  # listed from the store all the same


def test_a_post_without_the_csrf_token_is_refused(client: TestClient,
                                                  periodic_app: App) -> None:
    before = _queued(periodic_app)
    for action in ("pause", "run"):
        refused = client.post("/periodic/act", data={"action": action, "name": "hourly"})
        assert refused.status_code == 403
        forged = client.post("/periodic/act", data={"action": action, "name": "hourly",
                                                    "csrf": "forged"})
        assert forged.status_code == 403
    assert not _entry(periodic_app, "hourly").paused
    assert _queued(periodic_app) == before


def test_read_only_hides_and_refuses_the_actions(periodic_app: App) -> None:
    before = _queued(periodic_app)
    with TestClient(create_app(periodic_app, read_only=True)) as client:
        page = client.get("/periodic").text
        assert '<tr data-entry="hourly">' in page
        for label in (">Pause</button>", ">Resume</button>", ">Run now</button>",
                      'action="/periodic/act"'):
            assert label not in page
        for action in ("pause", "resume", "run"):
            assert _act(client, action, "hourly").status_code == 403
    assert not _entry(periodic_app, "hourly").paused
    assert _queued(periodic_app) == before


def test_every_field_is_escaped(client: TestClient) -> None:
    for page in (client.get("/periodic").text,
                 client.get("/periodic", headers={"x-sideline-fragment": "1"}).text):
        row = _row(page, "hostile")
        assert "<script>" not in row
        assert "<img" not in row
        assert "job&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in row
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in row
        assert "&lt;img src=x onerror=alert(1)&gt;" in row
        assert "<td>skip</td>" in row


def test_no_stored_entry_says_which_are_declared(web_app: App) -> None:
    @web_app.job(name="report")
    def report() -> None:
        """Does nothing."""

    web_app.periodic("nightly", report.s(), every_s=86_400)
    with TestClient(create_app(web_app)) as client:
        page = client.get("/periodic").text
    assert "No periodic entry is stored" in page
    assert "not stored yet (a worker stores them when it starts): <code>nightly</code>" in page
    assert "<table" not in page
