"""The workflows page (recent runs, filtered by status) and a run's page (its graph as
server-side SVG, its nodes, cancel, retry of a dead node)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sideline.core.errors import RunExpired
from sideline.core.run import NodeStatus, RunStatus
from sideline.runtime.admin import Admin
from sideline.runtime.workflows import RunInfo
from sideline.web import graph
from sideline.web._app import checked_form, dashboard, local_url, render

__all__ = ["ROUTES"]

PER_PAGE = 25
LABEL_CHARS = 26
"""A node's job name is cut to this in its box (the hover title has it whole)."""
FINISHED_REFRESH_S = 60.0
"""A finished run's page refreshes this seldom at most (a retry elsewhere may revive it)."""
_DEAD_KEYS = 20
"""Dead-set keys tried for a step: its jid, then "<jid>~2" ... (see core.ports.dead_key)."""

NOTES = {
    "cancelled": "The run was cancelled: nodes that had not started never will.",
    "not-cancelled": "The run had already ended: nothing was cancelled.",
    "retried": "The dead node is queued again; its run goes on from there.",
    "not-retried": "That node is not in the dead set (retried already, or dropped): "
                   "nothing was retried.",
}
"""What a redirect after an action tells (by code, so no request text is echoed)."""


def _page(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        return 1


def cancellable(run: RunInfo) -> bool:
    """A run not compacted that has not succeeded or been cancelled (a failed run can be:
    its dead nodes then stay dead)."""
    return not run.compacted and run.status in (RunStatus.RUNNING, RunStatus.FAILED)


async def workflows(request: Request) -> Response:
    status = request.query_params.get("status") or None
    if status is not None and status not in {s.value for s in RunStatus}:
        raise HTTPException(400, f"status must be one of {', '.join(s.value for s in RunStatus)}")
    page = _page(request)
    runs = dashboard(request).app.admin.runs(status, page, PER_PAGE)
    return render(request, "workflows.html", {
        "runs": runs, "status": status, "statuses": [s.value for s in RunStatus],
        "page": page, "per_page": PER_PAGE, "section": "workflows"})


async def workflow(request: Request) -> Response:
    board = dashboard(request)
    run_id = request.path_params["run_id"]
    try:
        run = board.app.admin.run(run_id)
    except RunExpired:
        return render(request, "workflow.html", {
            "run": None, "run_id": run_id, "section": "workflows"}, status_code=404)
    drawing = None
    if not run.compacted:
        drawing = graph.layout({node.id: node.successors for node in run.nodes})
    note = NOTES.get(request.query_params.get("note", ""))
    refresh_s = board.refresh_s if not run.finished else max(board.refresh_s, FINISHED_REFRESH_S)
    return render(request, "workflow.html", {
        "run": run, "run_id": run_id, "drawing": drawing, "nodes": {n.id: n for n in run.nodes},
        "now": board.app.clock.now(), "note": note, "cancellable": cancellable(run),
        "label_chars": LABEL_CHARS, "section": "workflows"}, refresh_s=refresh_s)


def _back(request: Request, run_id: str, note: str) -> RedirectResponse:
    url = request.url_for("workflow", run_id=run_id).include_query_params(note=note)
    return RedirectResponse(local_url(url), status_code=303)


async def cancel(request: Request) -> Response:
    await checked_form(request)
    run_id = request.path_params["run_id"]
    done = dashboard(request).app.cancel(run_id)
    return _back(request, run_id, "cancelled" if done else "not-cancelled")


def dead_key(admin: Admin, jid: str) -> str | None:
    """The dead-set key of job `jid` (its jid, or "<jid>~2"... when it died more than once
    without being retried), None if it is not in the dead set."""
    for n in range(1, _DEAD_KEYS + 1):
        key = jid if n == 1 else f"{jid}~{n}"
        if admin.find("dead", key) is not None:
            return key
    return None


async def retry(request: Request) -> Response:
    form = await checked_form(request)
    app = dashboard(request).app
    run_id = request.path_params["run_id"]
    try:
        node_id = int(str(form.get("node", "")))
    except ValueError:
        raise HTTPException(400, "node must be a node id") from None
    try:
        run = app.admin.run(run_id)
    except RunExpired:
        raise HTTPException(404, f"run {run_id} is unknown or expired") from None
    node = next((n for n in run.nodes if n.id == node_id), None)
    if node is None:
        raise HTTPException(404, f"run {run_id} has no node {node_id}")
    key = dead_key(app.admin, f"{run_id}.{node_id}") if node.status is NodeStatus.DEAD else None
    moved = key is not None and app.retry_dead(key)
    return _back(request, run_id, "retried" if moved else "not-retried")


ROUTES = [
    Route("/workflows", workflows, name="workflows"),
    Route("/workflows/{run_id}", workflow, name="workflow"),
    Route("/workflows/{run_id}/cancel", cancel, methods=["POST"], name="workflow_cancel"),
    Route("/workflows/{run_id}/retry", retry, methods=["POST"], name="workflow_retry"),
]
