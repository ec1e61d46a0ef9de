"""Reading SIDELINE_* environment variables (adapters and runtime share these helpers)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from sideline.core.errors import ConfigurationError

__all__ = ["env_number", "env_text"]


def env_text(variable: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """Environment variable `variable`, or `default` when unset or empty."""
    return (os.environ if environ is None else environ).get(variable, "") or default


def env_number(variable: str, default: float, *, integer: bool = False,
               environ: Mapping[str, str] | None = None) -> float:
    """A number from environment variable `variable`, or `default` when unset or empty.

    Raises:
        ConfigurationError: the variable is set to something that is not a number.
    """
    text = (os.environ if environ is None else environ).get(variable, "")
    if text == "":
        return default
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigurationError(f"{variable}={text!r} is not {kind}") from None
