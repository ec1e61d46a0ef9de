"""Apps that `sideline worker --app tests.redis.apps.<module>:app` subprocesses load.

Each module defines `build_app(namespace)` and `__getattr__ = lazy_app(build_app, globals())`:
its `app` is built on first use, from SIDELINE_NAMESPACE, so importing a module (as the
tests do, for `build_app`) opens nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_app"]


def lazy_app(build: Callable[[str], Any], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` that builds `app` with `build` on first use and keeps it in
    the module's `namespace` (its globals)."""

    def __getattr__(name: str) -> Any:  # noqa: N807 (a module's __getattr__)
        if name == "app":
            built = build(os.environ.get("SIDELINE_NAMESPACE") or "sideline-tests")
            namespace["app"] = built
            return built
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")

    return __getattr__
