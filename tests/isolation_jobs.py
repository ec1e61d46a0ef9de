"""Module-level jobs for tests/test_isolation.py: a spawned child imports them by name."""

from __future__ import annotations

import os
import time
from typing import Any

from sideline import App

app = App()


def double(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Its arguments, each doubled."""
    return {"args": [arg * 2 for arg in args], "kwargs": {key: value * 2 for key, value in kwargs.items()}}


def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def sleep(seconds: float) -> float:
    """Sleep, then return the seconds slept."""
    time.sleep(seconds)
    return seconds


def pid() -> int:
    """The process id of the process running the job."""
    return os.getpid()


def pid_after(seconds: float) -> int:
    """Sleep, then return the process id: concurrent calls hold distinct children."""
    time.sleep(seconds)
    return os.getpid()


def unserializable() -> set[int]:
    """A value JSON cannot carry."""
    return {1, 2}


def die(code: int) -> None:
    """End the process at once, with no reply."""
    os._exit(code)


class Multiplier:
    """A class job: `perform` runs on a fresh instance."""

    def __init__(self) -> None:
        self.factor = 3

    def perform(self, value: int, *, plus: int = 0) -> int:
        return value * self.factor + plus


@app.job
def declared(x: int) -> int:
    """A sideline job: the module attribute is a Job wrapper, not this function."""
    return x + 1
