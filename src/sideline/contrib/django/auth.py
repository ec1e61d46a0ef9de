"""Let only Django staff see the dashboard, and serve it beside a Django ASGI app.

    # myproject/asgi.py
    django_app = get_asgi_application()     # sets Django up first
    from sideline.contrib.django import get_app
    from sideline.contrib.django.auth import staff_auth, with_dashboard
    from sideline.web import create_app

    application = with_dashboard(django_app, create_app(get_app(), auth=staff_auth))
"""

from __future__ import annotations

from importlib import import_module

from asgiref.sync import sync_to_async
from django.conf import settings  # type: ignore[import-untyped]  # Django ships no types
from django.contrib.auth import get_user  # type: ignore[import-untyped]
from django.db import close_old_connections  # type: ignore[import-untyped]
from django.http import HttpRequest  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["is_staff_session", "staff_auth", "with_dashboard"]


async def staff_auth(request: Request) -> bool:
    """`auth` for `create_app`: True when the request's Django session cookie belongs to
    an active staff user. A refused request gets the dashboard's 403, not a redirect."""
    session_key = request.cookies.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return False
    return await sync_to_async(is_staff_session)(session_key)


def is_staff_session(session_key: str) -> bool:
    """Whether the Django session `session_key` is logged in as an active staff user.

    Read through the project's SESSION_ENGINE and `get_user`, as Django's
    AuthenticationMiddleware does (a session from before a password change is refused);
    the session is never saved. Connections are closed before and after, as around a
    Django request.
    """
    close_old_connections()
    try:
        request = HttpRequest()
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = get_user(request)
        return bool(user.is_active and user.is_staff)
    finally:
        close_old_connections()


def with_dashboard(django_app: ASGIApp, dashboard: ASGIApp, prefix: str = "/sideline") -> ASGIApp:
    """An ASGI app sending HTTP requests under `prefix` to `dashboard`, all else to
    `django_app` (Django's URL configuration cannot mount an ASGI application)."""
    prefix = "/" + prefix.strip("/")

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        mount = scope.get("root_path", "") + prefix
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == mount or path.startswith(mount + "/")):
            # "path" stays whole; "root_path" tells the dashboard where it is mounted
            await dashboard({**scope, "root_path": mount}, receive, send)
        else:
            await django_app(scope, receive, send)

    return application

