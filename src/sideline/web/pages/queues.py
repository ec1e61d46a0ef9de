"""The Queues page (every queue, its size and latency) and a queue's page (its jobs from
the head, paged), with delete one job and clear the queue."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sideline.web._app import checked_form, dashboard, render
from sideline.web.pages.sets import LIST_FULL_CHARS, PER_PAGE, back_to, page_number

__all__ = ["ROUTES"]


async def queues(request: Request) -> Response:
    return render(request, "queues.html", {
        "queues": dashboard(request).app.admin.queues(),
        "done": request.query_params.get("done"), "section": "queues"})


async def queue(request: Request) -> Response:
    admin = dashboard(request).app.admin
    name = request.path_params["name"]
    page = page_number(request)
    found = admin.queue_jobs(name, page, PER_PAGE)
    last = max(1, -(-found.total // PER_PAGE))
    if page > last:  # past the end (the queue shrank): show its last page
        found = admin.queue_jobs(name, last, PER_PAGE)
    return render(request, "queue.html", {
        "queue": found, "done": request.query_params.get("done"),
        "list_full_chars": LIST_FULL_CHARS, "section": "queues"})


async def delete_job(request: Request) -> Response:
    form = await checked_form(request)
    name = request.path_params["name"]
    jid = str(form.get("jid", ""))
    deleted = bool(jid) and dashboard(request).app.admin.delete_job(name, jid)
    done = f"deleted job {jid}" if deleted else f"job {jid} was no longer in the queue"
    return back_to(request, "queue", {"name": name}, page=form.get("page"), done=done)


async def clear_queue(request: Request) -> Response:
    await checked_form(request)
    name = request.path_params["name"]
    count = dashboard(request).app.admin.clear_queue(name)
    return back_to(request, "queues", done=f"cleared {count} jobs from {name}")


ROUTES = [
    Route("/queues", queues, name="queues"),
    Route("/queues/{name}", queue, name="queue"),
    Route("/queues/{name}/delete", delete_job, methods=["POST"], name="queue_delete"),
    Route("/queues/{name}/clear", clear_queue, methods=["POST"], name="queue_clear"),
]
