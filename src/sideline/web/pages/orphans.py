"""The orphaned-jobs page: jobs held by dead workers before recovery moves them (retry or
delete one, many or all), the instances and their heartbeats, the recovery log."""

from __future__ import annotations

import hashlib

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sideline.runtime.orphans import Orphan
from sideline.web._app import checked_form, dashboard, local_url, render

__all__ = ["ROUTES", "orphan_key"]

RECOVERY_LOG_LIMIT = 100
ACTIONS = ("retry", "delete")


def orphan_key(orphan: Orphan) -> str:
    """A short stable name of an orphan for forms: its worker and its text (a job's jid
    alone may be held twice, and unreadable text has none)."""
    text = "\0".join((orphan.worker_id, orphan.delivery.queue, orphan.delivery.raw))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


async def orphans(request: Request) -> Response:
    board = dashboard(request)
    admin = board.app.admin
    found = admin.orphans()
    held: dict[str, int] = {}
    for orphan in found:
        held[orphan.worker_id] = held.get(orphan.worker_id, 0) + 1
    done = request.query_params.get("done", "")
    count = request.query_params.get("count", "")
    note = None
    if done in ACTIONS and count.isdigit():
        verb = "moved back to their queues" if done == "retry" else "deleted"
        note = f"{int(count)} job{'s' if int(count) != 1 else ''} {verb}."
    return render(request, "orphans.html", {
        "orphans": [(orphan_key(orphan), orphan) for orphan in found], "held": held,
        "workers": admin.workers(), "log": admin.recovery_log(RECOVERY_LOG_LIMIT),
        "now": board.app.clock.now(), "note": note, "section": "orphans"},
        refresh_s=board.orphan_refresh_s)


async def act(request: Request) -> Response:
    """Retry or delete the orphans named by `key` fields (or `all`); `action` says which,
    as "retry" / "delete", or "retry:<key>" / "delete:<key>" for one row."""
    form = await checked_form(request)
    admin = dashboard(request).app.admin
    action, _, one = str(form.get("action", "")).partition(":")
    if action not in ACTIONS:
        raise HTTPException(400, "action must be retry or delete")
    selected: list[Orphan] | None = None
    if not form.get("all"):
        keys = {one} if one else {str(key) for key in form.getlist("key")}
        selected = [orphan for orphan in admin.orphans() if orphan_key(orphan) in keys]
    if selected == []:
        count = 0  # nothing chosen, or recovery moved them already
    elif action == "retry":
        count = admin.retry_orphans(selected)
    else:
        count = admin.delete_orphans(selected)
    url = request.url_for("orphans").include_query_params(done=action, count=count)
    return RedirectResponse(local_url(url), status_code=303)


ROUTES = [
    Route("/orphans", orphans, name="orphans"),
    Route("/orphans/act", act, methods=["POST"], name="orphans_act"),
]
