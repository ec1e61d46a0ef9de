"""The dashboard's pages: each module of this package lists its routes in `ROUTES`."""

from __future__ import annotations

import importlib
import pkgutil

from starlette.routing import BaseRoute

__all__ = ["routes"]


def routes() -> list[BaseRoute]:
    """The routes of every page module, in module name order (overview first)."""
    found: list[BaseRoute] = []
    names = sorted(info.name for info in pkgutil.iter_modules(__path__))
    for name in sorted(names, key=lambda n: n != "overview"):
        module = importlib.import_module(f"{__name__}.{name}")
        found.extend(module.ROUTES)
    return found
