"""The sideline App that tests/contrib/django_settings.py names in SIDELINE["APP"]."""

from __future__ import annotations

from sideline import App

app = App()


@app.job
def welcome(user_id: int) -> None:
    """Stands in for a job that must see the committed user."""
