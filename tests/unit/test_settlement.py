"""decide(): the settlement of a job that ran, from plain data (and Hypothesis)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sideline.core.errors import SchemaError
from sideline.core.jobs import JobOptions
from sideline.core.payload import Payload
from sideline.core.retry import backoff_s
from sideline.core.settlement import (
    Action,
    ErrorRecord,
    NodeEvent,
    Outcome,
    bury,
    decide,
    stat_buckets,
)

PLAIN = Payload(name="job", jid="j1", queue="default", retry=3)
STEP = Payload(name="job", jid="r.2", queue="default", retry=3, run_id="r", node_id=2)


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_success_acks_and_advances_a_step() -> None:
    plain = decide(Outcome(value=1), PLAIN, JobOptions(), 100.0, 0.0)
    assert (plain.action, plain.node, plain.processed, plain.failed) == (Action.ACK, None, 1, 0)
    step = decide(Outcome(), STEP, JobOptions(), 100.0, 0.0)
    assert (step.action, step.node) == (Action.ACK, NodeEvent.SUCCEEDED)


def test_a_step_that_opened_batches_waits_for_them_only_when_it_succeeded() -> None:
    opened = ("b1", "b2")
    step = decide(Outcome(opened_batches=opened), STEP, JobOptions(), 100.0, 0.0)
    assert (step.node, step.await_batches) == (NodeEvent.SUCCEEDED, opened)
    plain = decide(Outcome(opened_batches=opened), PLAIN, JobOptions(), 100.0, 0.0)
    assert plain.await_batches == ()  # not a step: nothing holds it
    failed = decide(Outcome(error=raised(ValueError("x")), opened_batches=opened), STEP,
                    JobOptions(), 100.0, 0.0)
    assert failed.await_batches == ()  # a failed step waits for nothing (it is retried)


def test_success_releases_the_uniqueness_lock_it_holds() -> None:
    unique = Payload(name="job", jid="j", queue="q", unique_key="u", unique_token="t")
    assert decide(Outcome(), unique, JobOptions(), 1.0, 0.0).release_unique
    assert not decide(Outcome(), PLAIN, JobOptions(), 1.0, 0.0).release_unique


def test_a_failure_is_retried_with_sidekiq_backoff_and_the_error_kept() -> None:
    settlement = decide(Outcome(error=raised(ValueError("boom"))), PLAIN, JobOptions(), 100.0,
                        0.5)
    assert settlement.action is Action.RETRY
    assert settlement.retry_at == 100.0 + backoff_s(0, 0.5)
    assert (settlement.payload.retry_count, settlement.payload.error_class,
            settlement.payload.error_message, settlement.payload.failed_at) == (
        1, "ValueError", "boom", 100.0)
    assert settlement.error is not None
    assert settlement.error.backtrace[-1] == "ValueError: boom"
    assert settlement.payload.error_backtrace == list(settlement.error.backtrace)
    assert (settlement.processed, settlement.failed, settlement.node) == (1, 1, None)


def test_retry_in_overrides_the_backoff() -> None:
    options = JobOptions(retry_in=lambda count, error: 7.0)
    settlement = decide(Outcome(error=raised(ValueError())), PLAIN, options, 10.0, 0.9)
    assert settlement.retry_at == 17.0


def test_exhausted_retries_bury_with_a_reason_and_fail_the_step() -> None:
    last = Payload(name="job", jid="r.2", queue="default", retry=3, retry_count=3, run_id="r",
                   node_id=2)
    settlement = decide(Outcome(error=raised(RuntimeError("still"))), last, JobOptions(), 5.0,
                        0.0)
    assert settlement.action is Action.BURY
    assert settlement.reason == "retries exhausted (3) after RuntimeError: still"
    assert settlement.payload.dead_reason == settlement.reason
    assert (settlement.node, settlement.exhausted, settlement.keep_dead) == (
        NodeEvent.FAILED, True, True)


def test_retry_disabled_says_so_and_dead_false_drops_the_job() -> None:
    once = Payload(name="job", jid="j", queue="q", retry=0, dead=False)
    settlement = decide(Outcome(error=raised(KeyError("k"))), once, JobOptions(), 5.0, 0.0)
    assert settlement.reason == "failed (retry disabled) with KeyError: 'k'"
    assert not settlement.keep_dead


def test_schema_errors_go_straight_to_the_dead_set_unless_retried_on_purpose() -> None:
    error = raised(SchemaError("bad input", ["x: missing"]))
    assert decide(Outcome(error=error), PLAIN, JobOptions(), 1.0, 0.0).action is Action.BURY
    retried = decide(Outcome(error=error), PLAIN, JobOptions(retry_schema_errors=True), 1.0,
                     0.0)
    assert retried.action is Action.RETRY


@pytest.mark.parametrize("error", [asyncio.CancelledError(), GeneratorExit(),
                                   KeyboardInterrupt(), SystemExit(3)])
def test_base_exceptions_are_failures_like_any_other(error: BaseException) -> None:
    settlement = decide(Outcome(error=raised(error)), PLAIN, JobOptions(), 1.0, 0.0)
    assert settlement.action is Action.RETRY
    assert settlement.payload.error_class == type(error).__name__


def test_a_timeout_and_a_stop_are_failures_with_their_own_class() -> None:
    timed_out = decide(Outcome(timed_out=True), PLAIN, JobOptions(), 1.0, 0.0)
    stopped = decide(Outcome(stopped=True), PLAIN, JobOptions(), 1.0, 0.0)
    assert (timed_out.action, timed_out.payload.error_class) == (Action.RETRY, "JobTimeout")
    assert (stopped.action, stopped.payload.error_class) == (Action.RETRY, "JobStopped")


def test_bury_without_running_touches_the_run_only_when_asked() -> None:
    forged = bury(STEP, raised(LookupError("no node")), "workflow step rejected", 9.0,
                  workflow=False)
    assert (forged.action, forged.node, forged.reason) == (Action.BURY, None,
                                                           "workflow step rejected")
    poison = bury(STEP, raised(RuntimeError("pill")), "poison pill", 9.0)
    assert poison.node is NodeEvent.FAILED
    assert poison.payload.failed_at == 9.0


def test_error_records_keep_the_innermost_lines() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("bottom")
        deep(n - 1)

    record = ErrorRecord.of(raised_from(lambda: deep(50)), lines=5)
    assert len(record.backtrace) == 5
    assert record.backtrace[-1] == "ValueError: bottom"


def raised_from(call: object) -> BaseException:
    try:
        call()  # type: ignore[operator]
    except BaseException as caught:
        return caught
    raise AssertionError("did not raise")


def test_stat_buckets_are_utc_minutes_and_days() -> None:
    assert stat_buckets(1_795_999_999.0) == ("2026-11-30T00:53", "2026-11-30")


@given(retry=st.integers(0, 30), count=st.integers(0, 40), draw=st.floats(0, 0.999),
       now=st.floats(0, 2e9), step=st.booleans())
def test_every_failure_is_retried_or_buried_never_lost(retry: int, count: int, draw: float,
                                                       now: float, step: bool) -> None:
    payload = Payload(name="job", jid="j", queue="q", retry=retry, retry_count=count,
                      run_id="r" if step else None, node_id=0 if step else None)
    settlement = decide(Outcome(error=raised(ValueError("x"))), payload, JobOptions(), now, draw)
    assert settlement.failed == 1
    if count < retry:
        assert settlement.action is Action.RETRY
        assert settlement.retry_at is not None
        assert settlement.retry_at >= now + 15
        assert settlement.payload.retry_count == count + 1
        assert settlement.node is None  # a retrying step keeps its run waiting
    else:
        assert settlement.action is Action.BURY
        assert settlement.reason
        assert settlement.node is (NodeEvent.FAILED if step else None)
