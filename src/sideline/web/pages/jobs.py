"""A job's page (`/jobs/<jid>`: its stored state, progress, message, meta, worker, start,
retry count, and its result value or error) and the Stop action, from the Busy page or the
job's page (`app.admin.stop_job`)."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sideline.core.results import JobInfo, JobState
from sideline.runtime.admin import Admin
from sideline.web._app import PREVIEW_CHARS, checked_form, dashboard, local_url, render
from sideline.web.pages import sets  # noqa: F401 (registers the sideline_key convertor)

__all__ = ["NOTES", "ROUTES", "stop_requested"]

ENDED = (JobState.SUCCEEDED, JobState.FAILED)
ENDED_REFRESH_S = 60.0
"""The page of a job that ended refreshes this seldom at most."""

NOTES = {
    "stop-requested": "Stop requested: the worker running the job stops it within about a "
                      "second, and it goes to the dead set (not retried). A job that is not "
                      "running now is stopped if it starts within a day.",
    "already-ended": "The job had already ended: nothing was stopped.",
}
"""What a redirect after Stop tells (by code, so no request text is echoed)."""


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def stop_requested(admin: Admin, jid: str) -> bool:
    """Ask for job `jid` to be stopped, unless its stored state says it has ended (a stop
    request is kept a day: it would stop a later job given the same jid)."""
    if admin.job(jid).state in ENDED:
        return False
    admin.stop_job(jid)
    return True


async def job(request: Request) -> Response:
    board = dashboard(request)
    admin = board.app.admin
    jid = request.path_params["jid"]
    info = admin.job(jid)
    running = next((busy for busy in admin.busy() if busy.jid == jid), None)
    result = info.result
    value = _pretty(result.value) if result is not None and \
        result.state is JobState.SUCCEEDED else None
    ended = info.state in ENDED
    return render(request, "job.html", {
        "jid": jid, "info": info, "busy": running, "stored": info != JobInfo(jid),
        "meta": _pretty(info.meta) if info.meta else None, "value": value,
        "stoppable": running is not None or info.state is JobState.RUNNING,
        "note": NOTES.get(request.query_params.get("note", "")),
        "long_chars": PREVIEW_CHARS, "section": "busy"},
        refresh_s=max(board.refresh_s, ENDED_REFRESH_S) if ended else None)


async def stop(request: Request) -> Response:
    form = await checked_form(request)
    jid = str(form.get("jid", ""))
    if not jid:
        raise HTTPException(400, "which job? the form has no jid")
    note = "stop-requested" if stop_requested(dashboard(request).app.admin, jid) \
        else "already-ended"
    back = request.url_for("job", jid=jid) if form.get("back") == "job" else \
        request.url_for("busy")
    return RedirectResponse(local_url(back.include_query_params(note=note)), status_code=303)


ROUTES = [
    Route("/jobs/stop", stop, methods=["POST"], name="job_stop"),
    Route("/jobs/{jid:sideline_key}", job, name="job"),
]
