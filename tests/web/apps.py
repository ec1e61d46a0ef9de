"""An app for `sideline web --app tests.web.apps:app` (the memory backend, one job)."""

from __future__ import annotations

from sideline import App

app = App()


@app.job(name="hello")
def hello(name: str) -> str:
    """Greets."""
    return f"hello {name}"
