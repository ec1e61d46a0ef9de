"""The Limits page (`/limits`): the limit keys in use with their kind, limit and what holds
them (`app.admin.limits`), and a concurrency key's page (`/limits/<key>`, the key
percent-encoded) listing its parked jobs (`app.admin.parked`); read-only, everything
escaped. Starlette's test client on the memory backend, the state built by fetching as a
worker would (`app.backend.fetch`): a concurrency key's first job takes its one slot, the
next fetch parks the rest of that key's jobs and hands out the next job of another key."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from sideline import App, Concurrency, Rate
from sideline.adapters.memory import MemoryBackend
from sideline.core.admin import LimitView
from sideline.core.payload import decode
from sideline.web import create_app
from sideline.web.pages.limits import limit_text
from tests.conftest import FakeClock

HOSTILE = "<script>alert('x')</script>"
HOSTILE_KEY = f"{HOSTILE}/a?b#c%d e"
"""A limit key with markup and every character a URL path treats specially."""
LONG = "x" * 300
UNDECODABLE = json.dumps({"args": "<b>not a list</b>", "jid": "not-a-payload",
                          "name": "crm.sync", "queue": "default",
                          "limit_key": "customer:42", "limit_max": 1.0})
"""Parked text whose limit the backend reads (a limit_max of 1.0 counts as 1) but that
`decode` refuses (args not a list, limit_max not an int)."""


@pytest.fixture
def limits_app() -> App:
    """`customer:42` (one at once): one job running, three parked (one undecodable);
    `HOSTILE_KEY` (one at once): one running, one parked; `api:acme` (5 per 60 s): two
    started."""
    clock = FakeClock(1_767_225_600.0)
    app = App(MemoryBackend(clock=clock), clock=clock)  # fetches read the same clock

    @app.job(name="crm.sync", limit=Concurrency(key="customer:{0}", max=1))
    def sync_customer(customer_id: int, *extra: Any) -> None:
        """Does nothing."""

    @app.job(name=f"job{HOSTILE}", limit=Concurrency(key="{0}"))
    def hostile(key: str, *extra: Any) -> None:
        """Does nothing."""

    @app.job(name="api.call", limit=Rate(key="api:{0}", limit=5, per_s=60))
    def call_api(account: str) -> None:
        """Does nothing."""

    sync_customer.enqueue(42)
    sync_customer.enqueue(42, {"note": LONG})
    sync_customer.enqueue(42, "short")
    app.backend.push_raw("default", UNDECODABLE)
    hostile.enqueue(HOSTILE_KEY, HOSTILE)
    hostile.enqueue(HOSTILE_KEY, {"html": "<img src=x onerror=alert(1)>", "long": LONG})
    call_api.enqueue("acme")
    call_api.enqueue("acme")
    fetched = []
    while (delivery := app.backend.fetch("w1", ["default"], 0)) is not None:
        fetched.append(decode(delivery.raw).name)
    # sync #1 takes the key's slot; the next fetch parks sync #2, #3 and the undecodable
    # text and hands out hostile #1; the one after parks hostile #2
    assert fetched == ["crm.sync", f"job{HOSTILE}", "api.call", "api.call"]
    return app


@pytest.fixture
def client(limits_app: App) -> Iterator[TestClient]:
    with TestClient(create_app(limits_app)) as test_client:
        test_client.get("/")  # takes the CSRF cookie
        yield test_client


def _row(html: str, attribute: str, value: str) -> str:
    start = html.index(f'<tr {attribute}="{value}">')
    return html[start:html.index("</tr>", start)]


def _cells(row: str) -> dict[str, str]:
    """A limits row's cells by class (the first class word), their text without tags."""
    return {match[0]: re.sub(r"<[^>]+>", "", match[1]).strip()
            for match in re.findall(r'<td class="(?:num )?(\w+)">(.*?)</td>', row, re.S)}


def _escaped(text: str) -> str:
    """`text` as Jinja2's autoescape writes it."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;"))


def test_lists_each_key_with_its_limit_and_counts(client: TestClient, limits_app: App) -> None:
    assert limits_app.admin.limits() == [  # by key
        LimitView(HOSTILE_KEY, "concurrency", 1, None, running=1, parked=1),
        LimitView("api:acme", "rate", 5, 60.0, started=2),
        LimitView("customer:42", "concurrency", 1, None, running=1, parked=3)]
    assert '<a href="/limits">Limits</a>' in client.get("/").text
    page = client.get("/limits")
    assert page.status_code == 200
    assert '<a href="/limits" aria-current="page">Limits</a>' in page.text

    customer = _row(page.text, "data-key", "customer:42")
    assert _cells(customer) == {"key": "customer:42", "kind": "concurrency", "limit": "1 at once",
                                "running": "1", "parked": "3", "started": "—"}
    assert '<a href="/limits/customer%3A42"><code>customer:42</code></a>' in customer

    rate = _row(page.text, "data-key", "api:acme")
    assert _cells(rate) == {"key": "api:acme", "kind": "rate", "limit": "5 per 60 s",
                            "running": "—", "parked": "—", "started": "2"}
    assert "<a " not in rate  # a rate key parks nothing: no page to link to

    fragment = client.get("/limits", headers={"x-sideline-fragment": "1"}).text
    assert fragment.lstrip().startswith("<h1>Limits</h1>")  # the live part alone
    assert "<html" not in fragment
    assert _cells(_row(fragment, "data-key", "customer:42"))["parked"] == "3"


def test_a_key_s_page_lists_its_parked_jobs(client: TestClient, limits_app: App) -> None:
    parked = limits_app.admin.parked("customer:42")
    assert len(parked) == 3
    assert parked[2] == UNDECODABLE
    first, second = decode(parked[0]), decode(parked[1])
    page = client.get("/limits/customer%3A42")
    assert page.status_code == 200
    text = page.text
    assert '<h1 class="limit-key">Limit key <code>customer:42</code></h1>' in text
    for field, value in (("kind", "concurrency"), ("limit", "1 at once"), ("running", "1"),
                         ("parked", "3")):
        assert f'<dd data-field="{field}">{value}</dd>' in text
    assert "Every parked job, the next to be released" in text

    # in the order they are released: the oldest first, the undecodable text last
    assert text.index(first.jid) < text.index(second.jid) < text.index("not a payload")
    row = _row(text, "data-jid", first.jid)
    assert f'<a href="/jobs/{first.jid}"><code>{first.jid}</code></a>' in row
    assert "<td>crm.sync</td>" in row
    assert '<code class="args">[42, {&#34;note&#34;: &#34;xxx' in row  # cut...
    assert "<details" in row
    assert f"<pre>[42, {{&#34;note&#34;: &#34;{LONG}&#34;}}]</pre>" in row  # ...and whole
    assert "<td>default</td>" in row
    assert 'title="2026-01-01 00:00:00 UTC"' in row  # enqueued_at
    row = _row(text, "data-jid", second.jid)
    assert '<code class="args">[42, &#34;short&#34;]</code>' in row
    assert "<details" not in row

    bad = text[text.index('<tr class="dead">'):]
    bad = bad[:bad.index("</tr>")]
    assert "&lt;b&gt;not a list&lt;/b&gt;" in bad
    assert "<b>" not in bad
    assert "payload field" in bad  # why decode refused it

    fragment = client.get("/limits/customer%3A42", headers={"x-sideline-fragment": "1"}).text
    assert "<html" not in fragment
    assert f'<tr data-jid="{first.jid}">' in fragment


def test_the_page_shows_the_first_50_parked_jobs(web_app: App) -> None:
    @web_app.job(name="one", limit=Concurrency(key="one"))
    def one(number: int) -> None:
        """Does nothing."""

    for number in range(53):
        one.enqueue(number)
    assert web_app.backend.fetch("w1", ["default"], 0) is not None
    assert web_app.backend.fetch("w1", ["default"], 0) is None  # parks the other 52
    with TestClient(create_app(web_app)) as client:
        text = client.get("/limits/one").text
    assert "The first 50 of 52 parked jobs" in text
    assert text.count("<tr data-jid=") == 50
    assert '<code class="args">[1]</code>' in text
    assert '<code class="args">[50]</code>' in text
    assert '<code class="args">[51]</code>' not in text


def test_every_field_is_escaped(client: TestClient, limits_app: App) -> None:
    encoded = quote(HOSTILE_KEY, safe="~")
    for page in (client.get("/limits").text,
                 client.get("/limits", headers={"x-sideline-fragment": "1"}).text):
        assert "<script>alert" not in page
        row = _row(page, "data-key", _escaped(HOSTILE_KEY))
        assert f'<a href="/limits/{encoded}"><code>{_escaped(HOSTILE_KEY)}</code></a>' in row

    key_page = client.get(f"/limits/{encoded}")
    assert key_page.status_code == 200
    text = key_page.text
    assert "<script>alert" not in text
    assert "<img" not in text
    assert f"<title>Limit {_escaped(HOSTILE_KEY)} · sideline</title>" in text
    assert f"Limit key <code>{_escaped(HOSTILE_KEY)}</code>" in text
    [raw] = limits_app.admin.parked(HOSTILE_KEY)
    row = _row(text, "data-jid", decode(raw).jid)
    assert f"<td>job{_escaped(HOSTILE)}</td>" in row
    assert "&lt;img src=x onerror=alert(1)&gt;" in row


def test_a_key_not_in_use_gets_404_and_a_key_with_nothing_parked_an_empty_list(
        client: TestClient) -> None:
    for path in ("/limits/nope", f"/limits/{quote(HOSTILE, safe='~')}"):
        missing = client.get(path)
        assert missing.status_code == 404
        assert "This key is not in use now" in missing.text
        assert "No job of this key is parked." in missing.text
        assert "<script>alert" not in missing.text
    rate = client.get("/limits/api%3Aacme")  # in use, but a rate key parks nothing
    assert rate.status_code == 200
    assert '<dd data-field="started">2</dd>' in rate.text
    assert "No job of this key is parked." in rate.text


def test_a_key_leaves_the_page_once_nothing_holds_it(web_app: App) -> None:
    @web_app.job(name="one", limit=Concurrency(key="k:{0}", max=2))
    def one(number: int) -> None:
        """Does nothing."""

    one.enqueue(1)
    delivery = web_app.backend.fetch("w1", ["default"], 0)
    assert delivery is not None
    with TestClient(create_app(web_app)) as client:
        row = _row(client.get("/limits").text, "data-key", "k:1")
        assert _cells(row)["running"] == "1"
        assert "<a " not in row  # nothing parked: no link
        assert client.get("/limits/k%3A1").status_code == 200
        web_app.backend.ack("w1", delivery)
        page = client.get("/limits").text
        assert "No limit key is in use" in page
        assert "<table" not in page
        assert client.get("/limits/k%3A1").status_code == 404


def test_read_only_shows_the_same_and_there_is_nothing_to_post(limits_app: App) -> None:
    with TestClient(create_app(limits_app, read_only=True)) as client:
        for path in ("/limits", "/limits/customer%3A42"):
            page = client.get(path).text
            assert "<form" not in page
            assert "read-only" in page
        assert _cells(_row(client.get("/limits").text, "data-key", "customer:42"))[
            "parked"] == "3"
        assert client.post("/limits").status_code == 405


def test_limit_text() -> None:
    assert limit_text(LimitView("k", "concurrency", 2, None)) == "2 at once"
    assert limit_text(LimitView("k", "rate", 100, 60.0)) == "100 per 60 s"
    assert limit_text(LimitView("k", "rate", 3, 0.5)) == "3 per 0.5 s"
