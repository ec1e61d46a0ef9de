"""The Queues pages and the Scheduled / Retries / Dead pages: listing, paging, search,
actions on one entry and on many, CSRF, read-only, escaping, a 10,000-entry dead set,
and the bulk form and an entry's page in real Chromium."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from sideline import App
from sideline.core.payload import Payload, encode
from sideline.core.ports import Delivery
from sideline.web import create_app
from tests.web.conftest import Serve, csrf_of

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def _quiet_failures() -> Iterator[None]:
    """The failing jobs log a traceback each: not worth reading here."""
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _dead(app: App, count: int, *args: Any) -> list[str]:
    """`count` dead jobs of `fail` (retry=1: drain runs it twice); their keys, oldest first."""
    for i in range(count):
        app.enqueue("fail", [i, *args])
    app.drain()
    return [entry.key for entry in app.admin.dead(per_page=1000).entries]


def _retries(app: App, count: int) -> list[str]:
    """`count` jobs of `fail` in the retry set (failed once); their keys."""
    for i in range(count):
        app.enqueue("fail", [i])
    app.drain(run_scheduled=False)
    return [entry.key for entry in app.admin.retries(per_page=1000).entries]


def _scheduled(app: App, count: int) -> list[str]:
    for i in range(count):
        app.enqueue("hello", [i], at=time.time() + 3600 + i)
    return [entry.key for entry in app.admin.scheduled(per_page=1000).entries]


def _rows(html: str) -> list[str]:
    """The keys of the entry rows of a set page (or the jids of a queue page's rows)."""
    return re.findall(r'<tr data-(?:key|jid)="([^"]+)"', html)


def _post(client: TestClient, url: str, **fields: Any) -> Any:
    return client.post(url, data={"csrf": csrf_of(client), **fields}, follow_redirects=False)


# -- queues -------------------------------------------------------------------------------


def test_the_queues_page_lists_each_queue_with_size_and_latency(client: TestClient,
                                                                web_app: App) -> None:
    web_app.enqueue("hello", [1])
    web_app.enqueue("hello", [2], queue="mail")
    web_app.enqueue("hello", [3], queue="mail")
    page = client.get("/queues")
    assert page.status_code == 200
    assert 'href="/queues/mail">mail</a>' in page.text
    row = page.text.split('data-queue="mail"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num">2</td>' in row
    assert re.search(r'<td class="num">\d+\.\d{3} s</td>', row)
    assert "Clear" in row


def test_a_queue_is_paged_from_its_head(client: TestClient, web_app: App) -> None:
    jids = [web_app.enqueue("hello", [i]) for i in range(30)]
    first = client.get("/queues/default")
    assert _rows(first.text) == jids[:25]
    assert "page 1 of 2 (30 in all)" in first.text
    assert '<a href="/queues/default?page=2" rel="next">' in first.text
    second = client.get("/queues/default?page=2")
    assert _rows(second.text) == jids[25:]
    assert _rows(client.get("/queues/default?page=9").text) == jids[25:]  # past the end
    assert _rows(client.get("/queues/default?page=nope").text) == jids[:25]
    assert "This queue is empty." in client.get("/queues/nothing").text


def test_long_arguments_are_cut_with_the_whole_on_demand(client: TestClient,
                                                         web_app: App) -> None:
    web_app.enqueue("hello", ["x" * 300], kwargs={"k": 1})
    page = client.get("/queues/default").text
    assert '<code class="args">[&#34;' + "x" * 100 in page
    assert "x" * 300 not in page.split("<details", 1)[0]  # the preview is cut...
    details = page.split("<details", 1)[1].split("</details>", 1)[0]
    assert "x" * 300 in details
    assert "{&#34;k&#34;: 1}" in details  # ...the whole on demand


def test_delete_a_queued_job_and_clear_a_queue(client: TestClient, web_app: App) -> None:
    jids = [web_app.enqueue("hello", [i]) for i in range(30)]
    deleted = _post(client, "/queues/default/delete", jid=jids[26], page="2")
    assert deleted.status_code == 303
    assert deleted.headers["location"].startswith("/queues/default?page=2&done=")
    assert [job.jid for job in web_app.admin.queue_jobs("default", 2).jobs] == jids[25:26] + jids[27:]
    again = _post(client, "/queues/default/delete", jid=jids[26])
    assert "no+longer" in again.headers["location"]
    assert "no longer in the queue" in client.get(again.headers["location"]).text
    cleared = _post(client, "/queues/default/clear")
    assert cleared.status_code == 303
    assert cleared.headers["location"] == "/queues?done=cleared+29+jobs+from+default"
    assert web_app.admin.queue_jobs("default").total == 0
    assert "cleared 29 jobs from default" in client.get(cleared.headers["location"]).text


# -- scheduled, retries, dead: listing ----------------------------------------------------


def test_each_set_page_renders_its_entries(client: TestClient, web_app: App) -> None:
    dead = _dead(web_app, 1)  # first: drain runs what is scheduled or waits for a retry
    retries = _retries(web_app, 2)
    scheduled = _scheduled(web_app, 2)
    assert len(retries) == 2
    assert len(dead) == 1
    for url, keys, when in (("/scheduled", scheduled, "Due"), ("/retries", retries, "Next retry"),
                            ("/dead", dead, "Died")):
        page = client.get(url)
        assert page.status_code == 200, url
        assert _rows(page.text) == keys, url
        assert f"<th>{when}</th>" in page.text
        assert 'aria-current="page"' in page.text
    retry_row = client.get("/retries").text
    assert "<strong>ValueError</strong>: failed with (0,)" in retry_row
    assert 'value="kill"' in retry_row
    assert 'value="kill"' not in client.get("/dead").text
    assert "Enqueue now" in client.get("/scheduled").text
    assert "The dead set is empty." not in client.get("/dead").text
    web_app.admin.delete("dead", dead)
    assert "The dead set is empty." in client.get("/dead").text


def test_a_set_is_paged_25_at_a_time(client: TestClient, web_app: App) -> None:
    keys = _dead(web_app, 30)
    first = client.get("/dead")
    assert _rows(first.text) == keys[:25]
    assert "page 1 of 2 (30 in all)" in first.text
    second = client.get("/dead?page=2")
    assert _rows(second.text) == keys[25:]
    assert '<a href="/dead?page=1" rel="prev">' in second.text
    assert _rows(client.get("/dead?page=99").text) == keys[25:]  # past the end: the last page


def test_search_by_jid_or_job_name(client: TestClient, web_app: App) -> None:
    keys = _dead(web_app, 3)
    _scheduled(web_app, 2)
    by_jid = client.get("/dead", params={"q": keys[1][:12]})
    assert _rows(by_jid.text) == [keys[1]]
    assert f'value="{keys[1][:12]}"' in by_jid.text  # the search box keeps it
    assert _rows(client.get("/dead", params={"q": "FAIL"}).text) == keys
    nothing = client.get("/dead", params={"q": "hello"})
    assert _rows(nothing.text) == []
    assert "Nothing on this page matches" in nothing.text
    assert len(_rows(client.get("/scheduled", params={"q": "hello"}).text)) == 2


def test_an_entry_page_shows_everything(client: TestClient, web_app: App) -> None:
    web_app.enqueue("fail", [1, {"deep": ["x" * 200]}])
    web_app.drain()
    key = web_app.admin.dead().entries[0].key
    page = client.get(f"/dead/entry/{key}?page=1")
    assert page.status_code == 200
    text = page.text
    assert "x" * 200 in text  # the whole arguments
    assert "<dt>Error class</dt><dd><strong>ValueError</strong></dd>" in text
    assert "<dt>Dead reason</dt><dd>retries exhausted (1)" in text
    assert 'class="backtrace"' in text
    assert "raise ValueError" in text
    assert "<dt>Retries</dt><dd>1 of 1</dd>" in text
    assert 'href="/dead?page=1"' in text
    missing = client.get("/dead/entry/nope")
    assert missing.status_code == 404
    assert "no longer in the dead set" in missing.text
    assert client.get("/elsewhere/entry/nope").status_code == 404


# -- actions ------------------------------------------------------------------------------


def test_retry_delete_and_kill_one_entry(client: TestClient, web_app: App) -> None:
    dead = _dead(web_app, 2)
    retried = _post(client, "/dead/action", key=dead[0], action="retry", page="1", q="")
    assert retried.status_code == 303
    assert retried.headers["location"] == "/dead?done=1+retried"
    assert [entry.key for entry in web_app.admin.dead().entries] == dead[1:]
    assert web_app.admin.queue_jobs("default").jobs[0].jid == dead[0]
    deleted = _post(client, "/dead/action", key=dead[1], action="delete", page="2", q="fa")
    assert deleted.headers["location"] == "/dead?page=2&q=fa&done=1+deleted"
    assert web_app.admin.dead().total == 0
    gone = _post(client, "/dead/action", key=dead[1], action="delete")
    assert gone.headers["location"].endswith("done=0+deleted+%281+no+longer+there%29")

    web_app.admin.clear_queue("default")
    retries = _retries(web_app, 3)
    killed = _post(client, "/retries/action", key=retries[0], action="kill")
    assert killed.headers["location"] == "/retries?done=1+killed"
    assert [entry.key for entry in web_app.admin.retries().entries] == retries[1:]
    assert web_app.admin.find("dead", retries[0]).payload.dead_reason == "killed"  # type: ignore[union-attr]
    assert _post(client, "/retries/action", key=retries[1], action="retry").status_code == 303
    assert _post(client, "/retries/action", key=retries[2], action="delete").status_code == 303
    assert web_app.admin.retries().total == 0
    assert [job.jid for job in web_app.admin.queue_jobs("default").jobs] == [retries[1]]

    scheduled = _scheduled(web_app, 2)
    assert _post(client, "/scheduled/action", key=scheduled[0], action="retry").status_code == 303
    assert _post(client, "/scheduled/action", key=scheduled[1], action="delete").status_code == 303
    assert web_app.admin.scheduled().total == 0
    assert web_app.admin.queue_jobs("default").jobs[-1].jid == scheduled[0]
    # kill is only for retries; an unknown action is refused
    assert _post(client, "/dead/action", key="x", action="kill").status_code == 400
    assert _post(client, "/scheduled/action", key="x", action="kill").status_code == 400
    assert _post(client, "/retries/action", key="x", action="explode").status_code == 400


def test_retry_delete_and_kill_many(client: TestClient, web_app: App) -> None:
    dead = _dead(web_app, 5)
    many = client.post("/dead/action", data={"csrf": csrf_of(client), "action": "retry",
                                             "key": dead[:2], "page": "1"},
                       follow_redirects=False)
    assert many.headers["location"] == "/dead?done=2+retried"
    assert [entry.key for entry in web_app.admin.dead().entries] == dead[2:]
    # "select all on this page": every key of the page (with or without ticked rows)
    everything = client.post("/dead/action", data={
        "csrf": csrf_of(client), "action": "delete", "all": "1", "page_key": dead[2:],
        "key": dead[2:3]}, follow_redirects=False)
    assert everything.headers["location"] == "/dead?done=3+deleted"
    assert web_app.admin.dead().total == 0
    nothing = _post(client, "/dead/action", action="delete")
    assert nothing.headers["location"] == "/dead?done=nothing+was+selected"

    web_app.admin.clear_queue("default")
    retries = _retries(web_app, 4)
    killed = client.post("/retries/action", data={"csrf": csrf_of(client), "action": "kill",
                                                  "key": retries[:3]}, follow_redirects=False)
    assert killed.headers["location"] == "/retries?done=3+killed"
    assert {entry.key for entry in web_app.admin.dead().entries} == set(retries[:3])
    assert [entry.key for entry in web_app.admin.retries().entries] == retries[3:]
    shown = client.get(killed.headers["location"]).text
    assert '<p class="flash" role="status">3 killed</p>' in shown


def test_every_post_needs_the_csrf_token(client: TestClient, web_app: App) -> None:
    dead = _dead(web_app, 1)
    jid = web_app.enqueue("hello", [1])
    routes = [("/queues/default/delete", {"jid": jid}), ("/queues/default/clear", {}),
              *((f"/{kind}/action", {"key": dead[0], "action": "delete"})
                for kind in ("scheduled", "retries", "dead"))]
    for url, fields in routes:
        assert client.post(url, data=fields).status_code == 403, url
        assert client.post(url, data={**fields, "csrf": "forged"}).status_code == 403, url
    assert web_app.admin.dead().total == 1
    assert web_app.admin.queue_jobs("default").total == 1


def test_read_only_hides_the_actions_and_refuses_them(web_app: App) -> None:
    dead = _dead(web_app, 1)
    _retries(web_app, 1)
    web_app.enqueue("hello", [1])
    with TestClient(create_app(web_app, read_only=True)) as client:
        for url in ("/queues", "/queues/default", "/retries", "/dead", f"/dead/entry/{dead[0]}"):
            page = client.get(url)
            assert page.status_code == 200, url
            assert 'method="post"' not in page.text, url
            assert 'type="checkbox" name="key"' not in page.text, url
        for url in ("/queues/default/clear", "/dead/action"):
            refused = client.post(url, data={"csrf": csrf_of(client), "key": dead[0],
                                             "action": "delete"})
            assert refused.status_code == 403
    assert web_app.admin.dead().total == 1
    assert web_app.admin.queue_jobs("default").total == 1


def test_job_data_is_shown_as_text(client: TestClient, web_app: App) -> None:
    dead = _dead(web_app, 1, SCRIPT)
    web_app.enqueue("hello", [SCRIPT], queue="q")
    for url, params in (("/dead", {}), (f"/dead/entry/{dead[0]}", {}), ("/queues/q", {}),
                        ("/dead", {"q": SCRIPT})):
        page = client.get(url, params=params)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, url
        assert SCRIPT not in page.text, url


def test_a_dead_set_of_10000_renders_page_1_of_400_fast(client: TestClient,
                                                         web_app: App) -> None:
    backend: Any = web_app.backend
    now = time.time()
    first = Payload(name="fail", jid="seed-00000", queue="default", args=[0], retry_count=1,
                    error_class="ValueError", error_message="boom", failed_at=now,
                    dead_reason="retries exhausted (1)")
    backend.kill("seed", Delivery("", "default"), first, now)  # the documented path, once
    # The rest as `kill` stores them: a kill trims the whole set each time (O(n)), so
    # 10,000 kills take seconds; the test fills the set as 10,000 kills would leave it.
    stored = encode(first)
    backend._sets["dead"].update(
        (f"seed-{i:05d}", (now - i, stored.replace("seed-00000", f"seed-{i:05d}")))
        for i in range(1, 10_000))
    assert web_app.admin.dead().total == 10_000
    client.get("/dead")  # warm (templates compiled)
    started = time.perf_counter()
    page = client.get("/dead")
    elapsed = time.perf_counter() - started
    print(f"\n/dead over 10,000 dead entries rendered in {elapsed * 1000:.1f} ms")
    assert page.status_code == 200
    assert "page 1 of 400 (10,000 in all)" in page.text
    assert len(_rows(page.text)) == 25
    started = time.perf_counter()
    last = client.get("/dead?page=400")
    print(f"/dead?page=400 rendered in {(time.perf_counter() - started) * 1000:.1f} ms")
    assert "page 400 of 400" in last.text
    assert _rows(last.text)[-1] == "seed-00000"


# -- in Chromium --------------------------------------------------------------------------


def test_bulk_retry_of_two_dead_entries_in_chromium(serve: Serve, page: Any,
                                                    web_app: App) -> None:
    keys = _dead(web_app, 3)
    base = serve(web_app, refresh_s=0.3)
    page.goto(base + "/dead")
    assert page.locator("h1").inner_text() == "Dead (3)"
    page.check(f'input[name=key][value="{keys[0]}"]')
    page.wait_for_timeout(700)  # refreshes would come now: a ticked box holds them off
    page.check(f'input[name=key][value="{keys[2]}"]')
    assert page.locator("input[name=key]:checked").count() == 2
    page.click("#bulk button[value=retry]")
    page.wait_for_url(re.compile(r"/dead\?done=2\+retried$"))
    assert page.locator("h1").inner_text() == "Dead (1)"
    assert page.locator(".flash").inner_text() == "2 retried"
    assert [entry.key for entry in web_app.admin.dead().entries] == [keys[1]]
    assert sorted(job.jid or "" for job in web_app.admin.queue_jobs("default").jobs) == sorted(
        [keys[0], keys[2]])
    # "select all on this page" ticks the rows too
    page.check("input[data-select-all]")
    assert page.locator("input[name=key]:checked").count() == 1


def test_an_entry_page_shows_the_backtrace_in_chromium(serve: Serve, page: Any,
                                                       web_app: App) -> None:
    keys = _dead(web_app, 1, SCRIPT)
    base = serve(web_app)
    page.goto(base + "/dead")
    page.click(f'tr[data-key="{keys[0]}"] a:has(code)')
    page.wait_for_url(re.compile(rf"/dead/entry/{keys[0]}\?page=1$"))
    backtrace = page.locator("pre.backtrace").inner_text()
    assert "raise ValueError" in backtrace
    assert "ValueError: failed with (0, '<script>" in backtrace
    assert SCRIPT in page.locator("pre.args").inner_text()  # as text, never run
    assert not page.evaluate(
        "[...document.scripts].some((script) => script.textContent.includes('alert'))")
