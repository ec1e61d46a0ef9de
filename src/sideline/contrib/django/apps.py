"""The Django application config of `sideline.contrib.django`."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]  # Django ships no types

__all__ = ["SidelineConfig"]


class SidelineConfig(AppConfig):  # type: ignore[misc]  # AppConfig is untyped (Any)
    """Registers the `sideline_worker` management command; the App itself is imported
    lazily, on first use, so a project that only enqueues never imports a worker."""

    name = "sideline.contrib.django"
    label = "sideline"
    verbose_name = "Sideline"
