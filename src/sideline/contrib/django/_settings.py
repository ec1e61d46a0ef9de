"""The App named by `settings.SIDELINE["APP"]`, imported once."""

from __future__ import annotations

import threading

from django.conf import settings  # type: ignore[import-untyped]  # Django ships no types

from sideline.core.errors import ConfigurationError
from sideline.runtime.app import App, import_app

__all__ = ["get_app"]

_lock = threading.Lock()
_loaded: dict[str, App] = {}


def get_app() -> App:
    """The sideline App of this Django project, from `settings.SIDELINE = {"APP":
    "package.module:attribute"}`.

    Raises:
        ConfigurationError: the setting is missing or malformed, or does not name an App.
    """
    config = getattr(settings, "SIDELINE", None)
    target = config.get("APP") if isinstance(config, dict) else None
    if not isinstance(target, str) or ":" not in target:
        raise ConfigurationError(
            'settings.SIDELINE must be a dict with "APP": "package.module:app"; '
            f"got {config!r}")
    with _lock:
        if target not in _loaded:
            _loaded[target] = _load_app(target)
        return _loaded[target]


def _load_app(target: str) -> App:
    """Import 'package.module:attribute' and return the App found there (Django settings
    already put the project on sys.path)."""
    return import_app(target, "SIDELINE['APP']")
