"""Job progress and Stop on the Busy page, and a job's page (`/jobs/<jid>`): progress and
message of a job running on a real embedded worker, Stop behind CSRF and read-only, the
job's stored state and result, everything escaped; in Starlette's test client and once in
real Chromium."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from sideline import App
from sideline.core.results import JobFailed, JobState, info_fields
from sideline.runtime.control import job_target
from sideline.runtime.handles import JobHandle
from sideline.runtime.middleware import current_job
from sideline.web import create_app
from tests.web.conftest import Serve, csrf_of

HOSTILE = "<script>alert('x')</script>"


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets the `pages` job finish; set at the end of each test so no worker hangs."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def pages(web_app: App, release: threading.Event) -> Any:
    """A job that reports a quarter done, then waits to be released or stopped."""

    @web_app.job(name="pages", store_result=True, retry=0)
    def pages() -> str:
        current_job().progress(0.25, "page 1 of 4 <b>bold</b>", meta={"page": 1})
        while not release.is_set():
            if current_job().should_stop():
                return "noticed the stop"
            release.wait(0.02)
        return "all pages"

    return pages


def _running(web_app: App, handle: JobHandle) -> None:
    """Wait until the worker's heartbeat lists `handle` and its progress is stored."""
    _wait(lambda: any(job.jid == handle.jid for job in web_app.admin.busy())
          and web_app.admin.job(handle.jid).progress is not None, "the job to run")


def _fake_running(web_app: App, jid: str, name: str = "pages") -> None:
    """A live worker whose heartbeat says it runs `jid` (no real worker)."""
    now = time.time()
    work = json.dumps([{"jid": jid, "name": name, "queue": "default", "since": now}])
    web_app.backend.heartbeat("host:1#abc", {"instance": "host:1", "host": "host", "pid": "1",
                                             "concurrency": "1", "queues": "default",
                                             "work": work}, 60, now)


def test_busy_shows_progress_and_message_of_a_running_job(
        client: TestClient, web_app: App, pages: Any, release: threading.Event) -> None:
    handle = pages.enqueue()
    with web_app.worker(concurrency=1, heartbeat_interval_s=0.05):
        _running(web_app, handle)
        page = client.get("/busy")
        assert page.status_code == 200
        row = page.text[page.text.index(f'<tr data-jid="{handle.jid}"'):]
        row = row[:row.index("</tr>")]
        assert '<progress max="1" value="0.25">' in row
        assert '<span class="percent">25%</span>' in row
        assert "page 1 of 4 &lt;b&gt;bold&lt;/b&gt;" in row
        assert "<b>bold" not in row
        assert f'href="/jobs/{handle.jid}"' in row
        assert ">Stop</button>" in row
        release.set()
        assert handle.result(10) == "all pages"


def test_stop_needs_the_csrf_token_and_then_stops_the_job(
        client: TestClient, web_app: App, pages: Any) -> None:
    handle = pages.enqueue()
    with web_app.worker(concurrency=1, heartbeat_interval_s=0.05):
        _running(web_app, handle)
        assert client.post("/jobs/stop", data={"jid": handle.jid}).status_code == 403
        forged = client.post("/jobs/stop", data={"jid": handle.jid, "csrf": "forged"})
        assert forged.status_code == 403
        assert web_app.admin.job(handle.jid).state is JobState.RUNNING
        stopped = client.post("/jobs/stop", data={"jid": handle.jid, "back": "busy",
                                                  "csrf": csrf_of(client)},
                              follow_redirects=False)
        assert stopped.status_code == 303
        assert stopped.headers["location"] == "/busy?note=stop-requested"
        with pytest.raises(JobFailed) as caught:
            handle.result(10)
    assert caught.value.error_class == "JobStopped"
    [entry] = web_app.admin.dead().entries
    assert (entry.payload.jid, entry.payload.dead_reason) == (
        handle.jid, "stopped: stopped by request")
    flash = client.get("/busy?note=stop-requested")
    assert 'class="flash"' in flash.text
    assert "Stop requested" in flash.text
    assert "Stop requested" not in client.get("/busy?note=<b>x</b>").text


def test_stop_from_the_job_page_goes_back_to_it_and_an_ended_job_is_left_alone(
        client: TestClient, web_app: App) -> None:
    @web_app.job(name="quick", store_result=True)
    def quick() -> int:
        return 1

    handle = quick.enqueue()
    web_app.drain()
    moved = client.post("/jobs/stop", data={"jid": handle.jid, "back": "job",
                                            "csrf": csrf_of(client)}, follow_redirects=False)
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/jobs/{handle.jid}?note=already-ended"
    assert web_app.backend.stop_requests([job_target(handle.jid)]) == []
    assert "had already ended" in client.get(moved.headers["location"]).text
    assert client.post("/jobs/stop", data={"csrf": csrf_of(client)}).status_code == 400


def test_read_only_hides_and_refuses_stop(web_app: App) -> None:
    _fake_running(web_app, "j-1")
    web_app.backend.set_job_info("j-1", info_fields(state=JobState.RUNNING, progress=0.5,
                                                    message="half"), 60)
    with TestClient(create_app(web_app, read_only=True)) as client:
        busy = client.get("/busy")
        assert '<progress max="1" value="0.5">' in busy.text
        assert ">Stop</button>" not in busy.text
        job = client.get("/jobs/j-1")
        assert "half" in job.text
        assert ">Stop</button>" not in job.text
        refused = client.post("/jobs/stop", data={"jid": "j-1", "csrf": csrf_of(client)})
        assert refused.status_code == 403
    assert web_app.backend.stop_requests([job_target("j-1")]) == []
    with TestClient(create_app(web_app)) as client:
        client.get("/")
        assert ">Stop</button>" in client.get("/jobs/j-1").text


def test_the_job_page_shows_state_progress_meta_and_an_escaped_result(
        client: TestClient, web_app: App) -> None:
    @web_app.job(name="hostile", store_result=True)
    def hostile(text: str) -> dict[str, str]:
        current_job().progress(1.0, f"done {text}", meta={"note": text})
        return {"html": text}

    handle = hostile.enqueue(HOSTILE)
    web_app.drain()
    page = client.get(f"/jobs/{handle.jid}")
    assert page.status_code == 200
    text = page.text
    assert HOSTILE not in text
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in text
    assert 'class="status-succeeded" data-field="state">succeeded<' in text
    assert '<progress max="1" value="1.0">' in text
    assert "100%" in text
    assert 'data-field="value"><pre class="value">{\n  &#34;html&#34;' in text
    assert 'data-field="meta"><pre class="meta">' in text
    assert 'data-field="worker">—' not in text  # drain() records who ran it
    assert 'data-field="retry-count">0<' in text


def test_a_long_result_is_folded_and_a_failure_shows_its_error(
        client: TestClient, web_app: App) -> None:
    @web_app.job(name="long", store_result=True)
    def long() -> list[str]:
        return [f"item {n}" for n in range(50)]

    @web_app.job(name="broken", store_result=True, retry=0)
    def broken() -> None:
        raise ValueError(HOSTILE)

    folded, failed = long.enqueue(), broken.enqueue()
    web_app.drain()
    text = client.get(f"/jobs/{folded.jid}").text
    assert '<details class="value"><summary>' in text
    assert "item 49" in text
    text = client.get(f"/jobs/{failed.jid}").text
    assert 'class="status-failed" data-field="state">failed<' in text
    assert 'data-field="error-class"><strong>ValueError</strong>' in text
    assert "&lt;script&gt;" in text
    assert "<script>alert" not in text


def test_an_unknown_job_reads_as_pending_and_odd_jids_are_escaped(client: TestClient) -> None:
    page = client.get("/jobs/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert page.status_code == 200
    assert "Nothing is stored for this job" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<img src=x" not in page.text
    assert ">Stop</button>" not in page.text


def test_stop_from_the_busy_page_in_chromium(serve: Serve, page: Any, web_app: App,
                                             pages: Any) -> None:
    handle = pages.enqueue()
    with web_app.worker(concurrency=1, heartbeat_interval_s=0.05):
        _running(web_app, handle)
        base = serve(web_app, refresh_s=0.3)
        page.goto(base + "/busy")
        row = page.locator(f'tr[data-jid="{handle.jid}"]')
        assert row.locator("progress").get_attribute("value") == "0.25"
        assert "page 1 of 4 <b>bold</b>" in row.locator(".message").inner_text()
        page.on("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name="Stop").click()
        page.wait_for_url("**/busy?note=stop-requested")
        assert "Stop requested" in page.locator(".flash").inner_text()
        with pytest.raises(JobFailed, match="JobStopped"):
            handle.result(10)
        page.wait_for_function(
            f"!document.querySelector('tr[data-jid=\"{handle.jid}\"]')", timeout=5_000)


def test_a_running_job_that_stores_no_state_reads_as_running_from_the_heartbeat(
        client: TestClient, web_app: App) -> None:
    _fake_running(web_app, "j-2", name="plain")
    web_app.backend.set_job_info("j-2", info_fields(progress=0.1, message="started"), 60)
    text = client.get("/jobs/j-2").text
    assert 'class="status-running" data-field="state">running<' in text
    assert "lists this job as running, but the job stores no" in text
    assert "<dt>Stored state</dt><dd>pending</dd>" in text
    assert ">Stop</button>" in text
