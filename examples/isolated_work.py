"""The job code of examples/timeouts.py that runs in a child process (isolation="process").

A process-isolated job must live in an importable module: the child process imports it
by name. Run as a script, this file does nothing.
"""

from __future__ import annotations

import time


def crunch(seconds: float) -> str:
    """Blocking work that never checks for a stop (a C extension, a stuck driver...)."""
    time.sleep(seconds)
    return f"crunched for {seconds} s"
