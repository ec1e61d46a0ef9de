"""Retry policy: when a failed job runs again, or that it is done trying."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["DEFAULT_MAX_RETRIES", "RetryIn", "backoff_s", "next_retry_delay_s"]

DEFAULT_MAX_RETRIES = 25

RetryIn = Callable[[int, BaseException], float | None]
"""A per-job override: (retry_count, error) -> delay in seconds, or None for the default."""


def backoff_s(retry_count: int, draw: float) -> float:
    """Sidekiq's exponential backoff with jitter: count**4 + 15 + rand(10 * (count + 1)).

    Args:
        retry_count: retries already made (0 for the first failure).
        draw: a uniform float in [0, 1) from an injected random source.
    """
    return float(retry_count**4 + 15 + int(draw * 10 * (retry_count + 1)))


def next_retry_delay_s(
    retry_count: int,
    max_retries: int,
    error: BaseException,
    draw: float,
    retry_in: RetryIn | None = None,
) -> float | None:
    """Return the delay before the next attempt, or None when retries are exhausted."""
    if retry_count >= max_retries:
        return None
    if retry_in is not None:
        custom = retry_in(retry_count, error)
        if custom is not None:
            return max(0.0, float(custom))
    return backoff_s(retry_count, draw)
