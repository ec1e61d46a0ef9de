"""decide(): the settlement of a job that ran, from plain data (and Hypothesis)."""

from __future__ import annotations

import asyncio

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sideline.core.errors import JobStopped, RemoteJobError, SchemaError
from sideline.core.jobs import JobOptions
from sideline.core.payload import Payload
from sideline.core.results import JobState, ResultRecord
from sideline.core.retry import backoff_s
from sideline.core.settlement import (
    Action,
    ErrorRecord,
    NodeEvent,
    Outcome,
    Settlement,
    bury,
    check_acks,
    decide,
    is_plain_ack,
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


def test_a_timeout_is_a_failure_under_the_retry_policy() -> None:
    timed_out = decide(Outcome(timed_out=True), PLAIN, JobOptions(), 1.0, 0.0)
    assert (timed_out.action, timed_out.payload.error_class) == (Action.RETRY, "JobTimeout")
    last = decide(Outcome(timed_out=True), attrs.evolve(PLAIN, retry_count=3), JobOptions(),
                  1.0, 0.0)
    assert (last.action, last.exhausted) == (Action.BURY, True)


def test_a_job_stopped_by_hand_is_buried_at_once_and_fails_its_step() -> None:
    stopped = decide(Outcome(error=JobStopped("stopped by request"), stopped=True), STEP,
                     JobOptions(), 1.0, 0.0)
    assert (stopped.action, stopped.reason, stopped.node, stopped.exhausted) == (
        Action.BURY, "stopped: stopped by request", NodeEvent.FAILED, False)
    assert stopped.payload.error_class == "JobStopped"


def test_a_step_stopped_because_its_run_was_cancelled_is_acked_without_a_node_event() -> None:
    settled = decide(Outcome(error=JobStopped("its workflow run was cancelled"), stopped=True,
                             run_cancelled=True), STEP, JobOptions(), 1.0, 0.0)
    assert (settled.action, settled.node, settled.failed) == (Action.ACK, None, 0)


def test_a_job_that_stores_results_records_its_value_error_or_retry() -> None:
    options = JobOptions(store_result=True, result_ttl_s=60)
    acked = decide(Outcome(value={"n": 1}), PLAIN, options, 5.0, 0.0)
    assert (acked.tracked, acked.result_ttl_s) == (True, 60)
    assert acked.result is not None
    assert ResultRecord.decode(acked.result) == ResultRecord(JobState.SUCCEEDED, {"n": 1},
                                                             finished_at=5.0)
    retried = decide(Outcome(error=raised(ValueError("x"))), PLAIN, options, 5.0, 0.0)
    assert (retried.action, retried.tracked, retried.result) == (Action.RETRY, True, None)
    dead = decide(Outcome(error=raised(ValueError("x"))), attrs.evolve(PLAIN, retry=0),
                  options, 5.0, 0.0)
    assert dead.result is not None
    record = ResultRecord.decode(dead.result)
    assert (record.state, record.error_class, record.error_message) == (
        JobState.FAILED, "ValueError", "x")
    cancelled = decide(Outcome(error=JobStopped("its workflow run was cancelled"),
                               stopped=True, run_cancelled=True), STEP, options, 5.0, 0.0)
    assert cancelled.result is not None
    assert ResultRecord.decode(cancelled.result).error_class == "JobStopped"
    plain = decide(Outcome(value=1), PLAIN, JobOptions(), 5.0, 0.0)
    assert (plain.tracked, plain.result) == (False, None)


def test_a_remote_error_is_recorded_as_the_remote_class() -> None:
    record = ErrorRecord.of(RemoteJobError("KeyError", "'k'", "Traceback\n  line\nKeyError: 'k'"))
    assert (record.error_class, record.message, record.backtrace[-1]) == (
        "KeyError", "'k'", "KeyError: 'k'")


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


def test_a_plain_job_that_succeeded_is_a_plain_ack() -> None:
    settlement = decide(Outcome(value=None), PLAIN, JobOptions(), 100.0, 0.5)
    assert is_plain_ack(settlement)
    check_acks([(None, settlement)], 1)


@pytest.mark.parametrize("fields", [{"run_id": "r", "node_id": 2}, {"batch_id": "b"},
                                    {"unique_key": "u", "unique_token": "t"},
                                    {"limit_key": "k", "limit_max": 2}])
def test_a_succeeded_job_of_a_run_batch_lock_or_limit_is_not(fields: dict[str, object]) -> None:
    payload = attrs.evolve(PLAIN, **fields)
    assert not is_plain_ack(decide(Outcome(value=None), payload, JobOptions(), 100.0, 0.5))


def test_a_failure_a_stored_result_or_an_uncounted_ack_is_not() -> None:
    assert not is_plain_ack(decide(Outcome(error=ValueError("x")), PLAIN, JobOptions(),
                                   100.0, 0.5))
    assert not is_plain_ack(decide(Outcome(error=ValueError("x")),
                                   attrs.evolve(PLAIN, retry=0), JobOptions(), 100.0, 0.5))
    assert not is_plain_ack(Settlement(Action.ACK, PLAIN, tracked=True, result="{}"))
    assert not is_plain_ack(Settlement(Action.ACK, PLAIN, processed=0))
    assert not is_plain_ack(Settlement(Action.ACK, PLAIN, failed=1))


def test_check_acks_refuses_other_settlements_and_more_jobs_than_acks() -> None:
    ack = Settlement(Action.ACK, PLAIN)
    with pytest.raises(ValueError, match="plain acks only"):
        check_acks([(None, ack), (None, Settlement(Action.RETRY, PLAIN, failed=1))], 0)
    with pytest.raises(ValueError, match="one per ack"):
        check_acks([(None, ack)], 2)
    check_acks([], 0)
