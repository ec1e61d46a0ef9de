"""A module no worker may ever import: a forged payload names `evil` in it.

Importing it leaves a marker file at $SIDELINE_IMPORT_MARKER (when set), so a test can
prove that looking up a job name never imports the module the name points into.
"""

from __future__ import annotations

import os
from pathlib import Path

_marker = os.environ.get("SIDELINE_IMPORT_MARKER")
if _marker:
    Path(_marker).write_text(f"imported by pid {os.getpid()}\n", encoding="utf-8")


def evil(*args: object) -> None:
    """Would do harm if a forged payload could reach it."""
    marker = os.environ.get("SIDELINE_IMPORT_MARKER")
    if marker:
        Path(marker).write_text(f"evil ran with {args!r}\n", encoding="utf-8")
