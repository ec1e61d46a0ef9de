"""The dashboard page (counters, processed/failed over time, queues, the server) and the
busy page (workers alive and dead, with quiet and stop; the jobs running now, with their
progress and a Stop for each)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sideline.web._app import checked_form, dashboard, redirect, render
from sideline.web.pages.jobs import NOTES

__all__ = ["ROUTES"]


async def home(request: Request) -> Response:
    admin = dashboard(request).app.admin
    days_text = request.query_params.get("days", "30")
    days = int(days_text) if days_text.isdigit() else 30
    return render(request, "dashboard.html", {
        "stats": admin.stats(), "minutes": list(reversed(admin.history_minutes(60))),
        "days": list(reversed(admin.history(max(1, min(days, 180))))),
        "queues": admin.queues(), "server": admin.server_info(), "section": "dashboard"})


async def busy(request: Request) -> Response:
    admin = dashboard(request).app.admin
    running = admin.busy()
    infos = {info.jid: info for info in admin.jobs([job.jid for job in running])} \
        if running else {}
    return render(request, "busy.html", {
        "workers": admin.workers(), "jobs": running, "infos": infos,
        "note": NOTES.get(request.query_params.get("note", "")), "section": "busy"})


async def signal_worker(request: Request) -> Response:
    form = await checked_form(request)
    admin = dashboard(request).app.admin
    worker_id = str(form.get("worker", ""))
    if form.get("action") == "stop":
        admin.stop(worker_id)
    else:
        admin.quiet(worker_id)
    return redirect(request, "busy")


ROUTES = [
    Route("/", home, name="home"),
    Route("/busy", busy, name="busy"),
    Route("/busy/signal", signal_worker, methods=["POST"], name="signal_worker"),
]
