"""The batches page (newest first) and a batch's page (every field, its failures, its
family, its callbacks, the workflow step it holds; invalidate)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sideline.web._app import checked_form, dashboard, local_url, render

__all__ = ["ROUTES"]

PER_PAGE = 50

NOTES = {
    "invalidated": "The batch is invalidated: its jobs see current_job().batch.valid false "
                   "(its callbacks still fire).",
    "gone": "The batch is unknown or expired: nothing was invalidated.",
}


def _page(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        return 1


async def batches(request: Request) -> Response:
    page = _page(request)
    found = dashboard(request).app.admin.batches(page, PER_PAGE)
    return render(request, "batches.html", {
        "batches": found, "page": page, "per_page": PER_PAGE, "section": "batches"})


async def batch(request: Request) -> Response:
    board = dashboard(request)
    bid = request.path_params["bid"]
    status = board.app.admin.batch(bid)
    return render(request, "batch.html", {
        "batch": status, "bid": bid, "note": NOTES.get(request.query_params.get("note", "")),
        "section": "batches"}, status_code=200 if status is not None else 404)


async def invalidate(request: Request) -> Response:
    await checked_form(request)
    bid = request.path_params["bid"]
    done = dashboard(request).app.admin.invalidate_batch(bid)
    url = request.url_for("batch", bid=bid).include_query_params(
        note="invalidated" if done else "gone")
    return RedirectResponse(local_url(url), status_code=303)


ROUTES = [
    Route("/batches", batches, name="batches"),
    Route("/batches/{bid}", batch, name="batch"),
    Route("/batches/{bid}/invalidate", invalidate, methods=["POST"], name="batch_invalidate"),
]
