"""The Limits page (`/limits`): the fleet-wide limit keys in use (docs/limits.md) with
their limit and what holds them now (`app.admin.limits`), and a concurrency key's page
(`/limits/<key>`): the first parked jobs of the key, the next to be released first
(`app.admin.parked`). Read-only: no actions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sideline.core.admin import LimitView, QueuedJob, queued_job
from sideline.web._app import dashboard, render
from sideline.web.pages.sets import LIST_FULL_CHARS  # registers the sideline_key convertor

__all__ = ["PARKED_PAGE", "ROUTES", "limit_text"]

PARKED_PAGE = 50
"""How many parked jobs a key's page shows (from the next to be released)."""


def limit_text(view: LimitView) -> str:
    """A key's limit for people: "2 at once" or "100 per 60 s"."""
    if view.per_s is None:
        return f"{view.max} at once"
    window = f"{view.per_s:.0f}" if view.per_s.is_integer() else f"{view.per_s:g}"
    return f"{view.max} per {window} s"


async def limits(request: Request) -> Response:
    found = dashboard(request).app.admin.limits()
    return render(request, "limits.html", {
        "limits": [(view, limit_text(view)) for view in found], "section": "limits"})


async def limit(request: Request) -> Response:
    """A key's page: its counts and first parked jobs; 404 for a key not in use now."""
    admin = dashboard(request).app.admin
    key = request.path_params["key"]
    view = next((found for found in admin.limits() if found.key == key), None)
    parked: list[QueuedJob] = [queued_job(raw) for raw in admin.parked(key, 0, PARKED_PAGE)]
    return render(request, "limit.html", {
        "key": key, "view": view, "limit": None if view is None else limit_text(view),
        "parked": parked, "per_page": PARKED_PAGE, "list_full_chars": LIST_FULL_CHARS,
        "section": "limits"}, status_code=200 if view is not None else 404)


ROUTES = [
    Route("/limits", limits, name="limits"),
    Route("/limits/{key:sideline_key}", limit, name="limit"),
]
