"""The dashboard's ASGI application: routes, templates, the guard (auth, CSRF, read-only)."""

from __future__ import annotations

import hmac
import inspect
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import jinja2
from starlette.applications import Starlette
from starlette.datastructures import URL, FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from sideline.core.errors import ConfigurationError
from sideline.runtime.app import App

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["Auth", "Dashboard", "checked_form", "create_app", "dashboard", "local_url", "redirect",
           "render"]

Auth = Callable[[Request], "bool | Awaitable[bool]"]
"""Decides whether a request may see the dashboard (True) or gets 403."""

CSRF_COOKIE = "sideline_csrf"
CSRF_FIELD = "csrf"
FRAGMENT_HEADER = "x-sideline-fragment"
PREVIEW_CHARS = 120
"""Arguments longer than this (as JSON) are cut in lists; the entry's page shows them all."""


@attrs.frozen
class Dashboard:
    """What every page needs: the app, the settings, the templates."""

    app: App
    templates: Jinja2Templates
    read_only: bool = False
    refresh_s: float = 5.0
    """How often live parts refresh themselves (seconds)."""
    orphan_refresh_s: float = 30.0
    """How often the orphaned-jobs page refreshes itself (seconds)."""


def dashboard(request: Request) -> Dashboard:
    """The Dashboard of the application serving `request`."""
    found: Dashboard = request.app.state.dashboard
    return found


def render(request: Request, template: str, context: Mapping[str, Any], *,
           refresh_s: float | None = None, status_code: int = 200) -> Response:
    """Render a page; with the fragment header, only its live content (for the refresher)."""
    board = dashboard(request)
    names = {name for route in request.app.routes if (name := getattr(route, "name", None))}
    return board.templates.TemplateResponse(request, template, {
        "board": board, "fragment": request.headers.get(FRAGMENT_HEADER) == "1",
        "csrf": request.state.csrf, "read_only": board.read_only, "section": "",
        "section_names": names,
        "refresh_s": board.refresh_s if refresh_s is None else refresh_s, **context},
        status_code=status_code)


async def checked_form(request: Request) -> FormData:
    """The form of a POST whose CSRF token matches its cookie (403 otherwise, and 403
    for every POST of a read-only dashboard)."""
    if dashboard(request).read_only:
        raise HTTPException(403, "this dashboard is read-only")
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not (isinstance(sent, str) and cookie and hmac.compare_digest(sent, cookie)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def local_url(url: URL) -> str:
    """`url` without scheme and host: links and redirects never trust the Host header
    (and keep working behind a proxy that terminates TLS)."""
    return url.path + (f"?{url.query}" if url.query else "")


def redirect(request: Request, name: str, **params: Any) -> RedirectResponse:
    """303 to the page `name` (after a POST)."""
    return RedirectResponse(local_url(request.url_for(name, **params)), status_code=303)


@jinja2.pass_context
def _url_for(context: Mapping[str, Any], name: str, /, **params: Any) -> str:
    """Templates' url_for: the path of the route `name` (mount path included), no host."""
    request: Request = context["request"]
    return request.url_for(name, **params).path


class _Guard(BaseHTTPMiddleware):
    """Auth first; then the CSRF cookie (set on the first response that lacks it)."""

    def __init__(self, app: Any, auth: Auth | None) -> None:
        super().__init__(app)
        self.auth = auth

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.auth is not None:
            allowed = self.auth(request)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                return PlainTextResponse("not authorized to see this dashboard", 403)
        token = request.cookies.get(CSRF_COOKIE)
        fresh = not token
        request.state.csrf = secrets.token_urlsafe(32) if fresh else token
        response = await call_next(request)
        if fresh:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict",
                                path=request.scope.get("root_path") or "/")
        return response


# -- template filters ---------------------------------------------------------------------


def _ago(value: float | None) -> str:
    if value is None:
        return "—"
    seconds = time.time() - value
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f}{unit}"
            break
    else:
        text = f"{seconds:.0f}s"
    return f"in {text}" if future else f"{text} ago"


def _when(value: float | None) -> str:
    if value is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value)) + " UTC"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    text = value if isinstance(value, str) else _json(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _percent(fraction: float) -> str:
    """A progress fraction (0.0 to 1.0) as a whole percentage, "42%"."""
    return f"{100 * fraction:.0f}%"


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(loader=jinja2.PackageLoader("sideline.web", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters.update(ago=_ago, when=_when, json=_json, preview=_preview,
                               number=_number, percent=_percent)
    environment.globals["url_for"] = _url_for
    return Jinja2Templates(env=environment)


def create_app(app: App, auth: Auth | None = None, read_only: bool = False, *,
               refresh_s: float = 5.0, orphan_refresh_s: float = 30.0,
               metrics: bool | CollectorRegistry = False) -> Starlette:
    """The dashboard of `app` as an ASGI application.

    Args:
        auth: called with each request; a false answer (or awaitable of one) gets 403.
            Without it anyone who reaches the application sees it: `sideline web`
            refuses to listen on anything but a loopback address without `auth`.
        read_only: hide every action and refuse every POST with 403.
        refresh_s: how often live parts of a page refresh themselves.
        orphan_refresh_s: how often the orphaned-jobs page refreshes itself.
        metrics: serve Prometheus metrics at /metrics (behind `auth` like every page):
            True for prometheus_client's global registry, or the registry to serve; the
            app's queue, set and worker gauges are added (sideline.contrib.prometheus).

    Raises:
        ConfigurationError: metrics were asked for and prometheus_client is missing.
    """
    from sideline.web import pages  # noqa: PLC0415 (pages import this module)

    routes: list[BaseRoute] = [
        *pages.routes(),
        Mount("/static", StaticFiles(packages=[("sideline.web", "static")]), name="static"),
    ]
    if metrics is not False:
        routes.append(_metrics_route(app, None if metrics is True else metrics))
    web = Starlette(routes=routes, middleware=[Middleware(_Guard, auth=auth)])
    web.state.dashboard = Dashboard(app, _templates(), read_only, refresh_s, orphan_refresh_s)
    return web


def _metrics_route(app: App, registry: CollectorRegistry | None) -> BaseRoute:
    """/metrics: the Prometheus text of `registry` (default the global one) and `app`."""
    try:
        from sideline.contrib.prometheus import metrics_app  # noqa: PLC0415 (optional extra)
    except ImportError as exc:
        raise ConfigurationError("metrics=True needs prometheus_client: "
                                 "pip install 'sideline[prometheus]'") from exc
    served = metrics_app(app, registry)

    # an ASGI app as a Route (not a Mount): /metrics itself, without a redirect to /metrics/
    return Route("/metrics", _AsgiEndpoint(served), name="metrics")


@attrs.frozen
class _AsgiEndpoint:
    """An ASGI callable that Starlette's Route passes the raw scope (not a function)."""

    served: Callable[..., Awaitable[Any]]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.served(scope, receive, send)
