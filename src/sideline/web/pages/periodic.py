"""The Periodic page: the stored periodic entries (docs/periodic.md) with their schedule,
time zone, missed-tick policy, paused state, next run and last fire; Pause, Resume and
Run now for each (`app.admin.pause_periodic`, `resume_periodic`, `run_periodic`)."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sideline.core.errors import SidelineError
from sideline.runtime.admin import Admin
from sideline.web._app import checked_form, dashboard, local_url, render

__all__ = ["NOTES", "ROUTES"]

log = logging.getLogger("sideline.web")

ACTIONS = ("pause", "resume", "run")

NOTES = {
    "paused": "The entry is paused: none of its ticks fires until it is resumed.",
    "resumed": "The entry is resumed: its ticks fire again from now on (those missed while "
               "it was paused do not).",
    "run": "The entry's job was pushed to its queue, once, outside its schedule (its ticks "
           "are unchanged).",
    "not-pushed": "The entry's job was not pushed: a client middleware dropped it, or an "
                  "identical unique_for job is pending.",
    "run-failed": "The entry's job could not be pushed (this dashboard's app may not declare "
                  "its job, or its arguments no longer fit it): see the dashboard's log.",
    "unknown": "No stored periodic entry has that name: nothing was done.",
}
"""What a redirect after an action tells (by code, so no request text is echoed)."""


async def periodic(request: Request) -> Response:
    app = dashboard(request).app
    entries = app.admin.periodic()
    stored = {entry.name for entry in entries}
    return render(request, "periodic.html", {
        "entries": entries,
        "unstored": sorted(name for name in app.periodic_entries if name not in stored),
        "note": NOTES.get(request.query_params.get("note", "")), "section": "periodic"})


def _act(admin: Admin, action: str, name: str) -> str:
    """Do `action` to entry `name`; the code of the note saying what happened."""
    if action == "pause":
        return "paused" if admin.pause_periodic(name) else "unknown"
    if action == "resume":
        return "resumed" if admin.resume_periodic(name) else "unknown"
    if name not in {entry.name for entry in admin.periodic()}:
        return "unknown"
    try:
        jid = admin.run_periodic(name)
    except SidelineError:
        log.exception("run now of periodic entry %r failed", name)
        return "run-failed"
    return "run" if jid is not None else "not-pushed"


async def act(request: Request) -> Response:
    """Pause, resume or run now (`action`) the entry `name`."""
    form = await checked_form(request)
    action = str(form.get("action", ""))
    name = str(form.get("name", ""))
    if action not in ACTIONS:
        raise HTTPException(400, "action must be pause, resume or run")
    if not name:
        raise HTTPException(400, "which entry? the form has no name")
    note = _act(dashboard(request).app.admin, action, name)
    url = request.url_for("periodic").include_query_params(note=note)
    return RedirectResponse(local_url(url), status_code=303)


ROUTES = [
    Route("/periodic", periodic, name="periodic"),
    Route("/periodic/act", act, methods=["POST"], name="periodic_act"),
]
