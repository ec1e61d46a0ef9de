"""The web dashboard: an ASGI application over the admin API (Starlette + Jinja2).

    from sideline.web import create_app
    asgi = create_app(app)                       # serve it: sideline web --app module:app
    Mount("/sideline", create_app(app, auth=staff_only))

Pages render on the server and work without JavaScript; the vendored script only
refreshes a page's live parts in place (with a pause switch). Every POST carries a CSRF
token; `read_only` hides and refuses every action; `auth(request)` decides who may see it.
"""

from sideline.web._app import Auth, create_app

__all__ = ["Auth", "create_app"]
