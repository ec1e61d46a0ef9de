"""The dashboard and busy pages, the guard (auth, CSRF, read-only), live refresh, in
Starlette's test client and in real Chromium."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from sideline import App
from sideline.web import create_app
from tests.web.conftest import Serve, csrf_of


def test_the_dashboard_shows_counters_queues_and_the_store(client: TestClient,
                                                           web_app: App) -> None:
    web_app.enqueue("hello", [1])
    web_app.enqueue("hello", [2], queue="mail")
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-counter="enqueued"' in page.text
    assert ">mail<" in page.text or ">mail</a>" in page.text
    assert "memory (embedded" in page.text


def test_a_post_without_the_csrf_token_is_refused(client: TestClient) -> None:
    assert client.post("/busy/signal", data={"worker": "w", "action": "quiet"}).status_code == 403
    wrong = client.post("/busy/signal", data={"worker": "w", "csrf": "forged"})
    assert wrong.status_code == 403
    right = client.post("/busy/signal", data={"worker": "w", "csrf": csrf_of(client)},
                        follow_redirects=False)
    assert right.status_code == 303


def test_read_only_hides_and_refuses_actions(web_app: App) -> None:
    with TestClient(create_app(web_app, read_only=True)) as client:
        web_app.admin  # noqa: B018 (the admin API exists before any page asks)
        page = client.get("/busy")
        assert "read-only" in page.text
        refused = client.post("/busy/signal", data={"worker": "w", "csrf": csrf_of(client)})
        assert refused.status_code == 403


def test_auth_decides_who_sees_it(web_app: App) -> None:
    def staff(request: Any) -> bool:
        return bool(request.headers.get("x-staff") == "yes")

    with TestClient(create_app(web_app, auth=staff)) as client:
        assert client.get("/").status_code == 403
        assert client.get("/", headers={"x-staff": "yes"}).status_code == 200


def test_the_fragment_is_only_the_live_part(client: TestClient) -> None:
    fragment = client.get("/", headers={"X-Sideline-Fragment": "1"})
    assert "<html" not in fragment.text
    assert "<h1>Dashboard</h1>" in fragment.text


def test_the_dashboard_refreshes_itself_in_chromium(serve: Serve, page: Any,
                                                    web_app: App) -> None:
    base = serve(web_app, refresh_s=0.3)
    page.goto(base + "/")
    enqueued = page.locator('[data-counter="enqueued"] strong')
    assert enqueued.inner_text() == "0"
    web_app.enqueue("hello", [1])
    web_app.enqueue("hello", [2])
    page.wait_for_function(
        "document.querySelector('[data-counter=enqueued] strong').textContent === '2'",
        timeout=5_000)
    page.uncheck("#live-toggle")  # paused: nothing changes any more
    web_app.enqueue("hello", [3])
    page.wait_for_timeout(1_000)
    assert enqueued.inner_text() == "2"


def test_busy_lists_a_live_worker_with_its_buttons(client: TestClient, web_app: App) -> None:
    import time  # noqa: PLC0415

    web_app.backend.heartbeat("host:1#abc", {"instance": "host:1", "host": "host", "pid": "1",
                                             "concurrency": "4", "queues": "default",
                                             "jobs_per_call": "8"},
                              60, time.time())
    page = client.get("/busy")
    assert page.status_code == 200
    assert ">Quiet</button>" in page.text
    assert '<td class="num">4</td><td class="num">8</td>' in page.text  # threads, per call
    quieted = client.post("/busy/signal", data={"worker": "host:1#abc", "action": "quiet",
                                                "csrf": csrf_of(client)})
    assert quieted.status_code == 200  # followed the redirect back to /busy
    assert web_app.backend.worker_signal("host:1#abc") == "quiet"


def test_links_and_redirects_never_carry_the_host_header(client: TestClient) -> None:
    page = client.get("/", headers={"host": "evil.example"})
    assert "evil.example" not in page.text
    moved = client.post("/busy/signal", data={"worker": "w", "csrf": csrf_of(client)},
                        headers={"host": "evil.example"}, follow_redirects=False)
    assert moved.headers["location"] == "/busy"


def test_a_bad_days_parameter_is_ignored(client: TestClient) -> None:
    assert client.get("/?days=x").status_code == 200
    assert client.get("/?days=1e3").status_code == 200
