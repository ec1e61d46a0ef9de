"""The Scheduled, Retries and Dead pages (one template, three routes), an entry's page,
and their actions: retry now, delete, and kill (retries only), for one entry or many.

Every page is one window of the admin API (`set_page`): a set of 10,000 entries costs
what a set of 25 does. A search (`?q=`) is the admin API's: it keeps the entries of the
page's window whose key, jid or job name contains the text.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import attrs
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sideline.core.admin import SetPage
from sideline.web._app import checked_form, dashboard, local_url, render

__all__ = ["PER_PAGE", "ROUTES", "SETS", "SetKind"]

PER_PAGE = 25
LIST_FULL_CHARS = 65_536
"""A list shows an entry's arguments whole (on demand) up to this many characters; the
entry's page shows them all."""


@attrs.frozen
class SetKind:
    """One of the three pages: its URL segment (and route name), the admin API's kind,
    and its words."""

    slug: str
    kind: str
    title: str
    when: str
    """What an entry's time is: when it is due, retried, or when it died."""
    retry_label: str
    actions: tuple[str, ...]


SETS = {kind.slug: kind for kind in (
    SetKind("scheduled", "scheduled", "Scheduled", "Due", "Enqueue now", ("retry", "delete")),
    SetKind("retries", "retry", "Retries", "Next retry", "Retry now", ("retry", "delete", "kill")),
    SetKind("dead", "dead", "Dead", "Died", "Retry now", ("retry", "delete")),
)}
_DONE = {"retry": "retried", "delete": "deleted", "kill": "killed"}


class _SlugConvertor(Convertor[str]):
    """`/{kind:sideline_set}/...` matches only the three sets' segments, so these routes
    never shadow another page's."""

    regex = "|".join(SETS)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        if value not in SETS:
            raise ValueError(f"not a set page: {value!r}")
        return value


class _KeyConvertor(Convertor[str]):
    """A set key in a path: any text, percent-encoded in URLs (a key is a jid, which a
    caller may have chosen)."""

    regex = ".+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return quote(str(value), safe="~")


register_url_convertor("sideline_set", _SlugConvertor())
register_url_convertor("sideline_key", _KeyConvertor())


def page_number(request: Request) -> int:
    """`?page=` as a page number (1 when absent or not a positive number)."""
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        return 1


def back_to(request: Request, name: str, path: dict[str, Any] | None = None,
            **query: Any) -> RedirectResponse:
    """303 to page `name` with the query parameters that are set (after a POST)."""
    url = request.url_for(name, **(path or {}))
    kept = {key: value for key, value in query.items()
            if value not in (None, "") and not (key == "page" and str(value) == "1")}
    return RedirectResponse(local_url(url.include_query_params(**kept) if kept else url), 303)


def _kind_of(request: Request) -> SetKind:
    slug = request.path_params["kind"]
    found = SETS.get(slug)
    if found is None:  # pragma: no cover (the routes only match the three slugs)
        raise HTTPException(404, f"no such set: {slug}")
    return found


def _window(request: Request, kind: SetKind, page: int, search: str | None) -> SetPage:
    admin = dashboard(request).app.admin
    found = admin.set_page(kind.kind, page, PER_PAGE, search)
    last = max(1, -(-found.total // PER_PAGE))
    if page > last:  # past the end (the set shrank): show its last page
        found = admin.set_page(kind.kind, last, PER_PAGE, search)
    return found


def _lister(kind: SetKind) -> Callable[[Request], Awaitable[Response]]:
    async def listed(request: Request) -> Response:
        return await set_list(request, kind)

    return listed


async def set_list(request: Request, kind: SetKind) -> Response:
    """One page of a set, with the search and the done message of the last action."""
    search = request.query_params.get("q", "").strip() or None
    found = _window(request, kind, page_number(request), search)
    return render(request, "set.html", {
        "kind": kind, "window": found, "q": search or "", "done": request.query_params.get("done"),
        "list_full_chars": LIST_FULL_CHARS, "section": kind.slug})


async def entry(request: Request) -> Response:
    kind = _kind_of(request)
    key = request.path_params["key"]
    found = dashboard(request).app.admin.find(kind.kind, key)
    context: dict[str, Any] = {
        "kind": kind, "key": key, "entry": found, "section": kind.slug,
        "page": page_number(request), "q": request.query_params.get("q", "")}
    if found is None:
        return render(request, "entry.html", context, status_code=404)
    payload = found.payload
    context.update(
        args=json.dumps(payload.args, indent=2, ensure_ascii=False, sort_keys=True),
        kwargs=json.dumps(payload.kwargs, indent=2, ensure_ascii=False, sort_keys=True))
    return render(request, "entry.html", context)


def _keys(form: FormData) -> list[str]:
    """The selected keys: the ticked rows, or every key of the page with "all" ticked."""
    chosen = [str(key) for key in form.getlist("key")]
    if form.get("all"):
        chosen += [str(key) for key in form.getlist("page_key")]
    return list(dict.fromkeys(key for key in chosen if key))


async def act(request: Request) -> Response:
    form = await checked_form(request)
    kind = _kind_of(request)
    action = str(form.get("action", ""))
    if action not in kind.actions:
        raise HTTPException(400, f"{kind.title}: no action {action!r}")
    keys = _keys(form)
    admin = dashboard(request).app.admin
    if not keys:
        done = "nothing was selected"
    else:
        if action == "retry":
            count = admin.retry_now(kind.kind, keys)
        elif action == "kill":
            count = admin.kill(keys)
        else:
            count = admin.delete(kind.kind, keys)
        done = f"{count} {_DONE[action]}"
        if count < len(keys):
            done += f" ({len(keys) - count} no longer there)"
    return back_to(request, kind.slug, page=form.get("page"), q=form.get("q"), done=done)


ROUTES = [
    *(Route(f"/{kind.slug}", _lister(kind), name=kind.slug) for kind in SETS.values()),
    Route("/{kind:sideline_set}/entry/{key:sideline_key}", entry, name="entry"),
    Route("/{kind:sideline_set}/action", act, methods=["POST"], name="set_action"),
]
