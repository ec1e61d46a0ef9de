"""Retry policy: Sidekiq backoff with injected jitter, overrides and exhaustion."""

from __future__ import annotations

from sideline.core.retry import backoff_s, next_retry_delay_s


def test_backoff_matches_sidekiq_formula_at_both_ends_of_the_jitter() -> None:
    assert backoff_s(0, 0.0) == 15.0
    assert backoff_s(0, 0.999) == 24.0  # 15 + int(0.999 * 10)
    assert backoff_s(3, 0.0) == 81 + 15
    assert backoff_s(3, 0.5) == 81 + 15 + 20


def test_exhausted_when_retry_count_reaches_the_maximum() -> None:
    error = ValueError("x")
    assert next_retry_delay_s(2, 3, error, 0.0) == backoff_s(2, 0.0)
    assert next_retry_delay_s(3, 3, error, 0.0) is None
    assert next_retry_delay_s(0, 0, error, 0.0) is None


def test_retry_in_override_and_its_fallback() -> None:
    seen: list[tuple[int, str]] = []

    def retry_in(count: int, exc: BaseException) -> float | None:
        seen.append((count, str(exc)))
        return None if count == 0 else 2.5

    assert next_retry_delay_s(0, 5, ValueError("a"), 0.0, retry_in) == 15.0
    assert next_retry_delay_s(1, 5, ValueError("b"), 0.0, retry_in) == 2.5
    assert seen == [(0, "a"), (1, "b")]
