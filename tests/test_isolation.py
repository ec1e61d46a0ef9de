"""ProcessPool: jobs in child processes, killed on timeout or stop, replaced when they die."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sideline import ConfigurationError, SerializationError
from sideline.core.errors import JobStopped, JobTimeout
from sideline.runtime.isolation import IsolatedJobError, ProcessPool
from tests import isolation_jobs as jobs


@pytest.fixture
def pool() -> Iterator[ProcessPool]:
    pool = ProcessPool(1)
    yield pool
    pool.close()


def run(pool: ProcessPool, func: Callable[..., Any], *args: Any, timeout_s: float | None = None,
        stop: threading.Event | None = None, **kwargs: Any) -> Any:
    return pool.run(func, list(args), kwargs, timeout_s=timeout_s, stop=stop or threading.Event())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_result_comes_back(pool: ProcessPool) -> None:
    assert run(pool, jobs.double, 1, "a", n=2.5) == {"args": [2, "aa"], "kwargs": {"n": 5.0}}


def test_a_child_is_reused_for_the_next_job(pool: ProcessPool) -> None:
    first = run(pool, jobs.pid)
    assert first != os.getpid()
    assert run(pool, jobs.pid) == first


def test_an_exception_comes_back_with_class_message_and_traceback(pool: ProcessPool) -> None:
    with pytest.raises(IsolatedJobError) as caught:
        run(pool, jobs.fail, "bad input")
    error = caught.value
    assert (error.error_class, error.message) == ("ValueError", "bad input")
    assert str(error) == "ValueError: bad input"
    assert "Traceback" in error.backtrace
    assert "in fail" in error.backtrace
    assert "ValueError: bad input" in error.backtrace
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.error_class, copy.message, copy.backtrace) == (
        error.error_class, error.message, error.backtrace)
    assert run(pool, jobs.double, 4) == {"args": [8], "kwargs": {}}  # the child survived


def test_a_class_job_runs_perform_on_a_fresh_instance(pool: ProcessPool) -> None:
    assert run(pool, jobs.Multiplier, 2, plus=1) == 7


def test_a_declared_sideline_job_resolves_to_its_function(pool: ProcessPool) -> None:
    assert run(pool, jobs.declared, 41) == 42
    assert run(pool, jobs.declared.spec.func, 1) == 2


def test_a_timeout_kills_the_child(pool: ProcessPool) -> None:
    child = run(pool, jobs.pid)  # warm: the spawn cost is not part of the measure
    started = time.monotonic()
    with pytest.raises(JobTimeout, match=r"timeout of 0\.5 s and its process was killed"):
        run(pool, jobs.sleep, 30, timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 2.5
    assert not alive(child)
    replacement = run(pool, jobs.pid)
    assert replacement != child


def test_a_stop_kills_the_child_quickly(pool: ProcessPool) -> None:
    child = run(pool, jobs.pid)
    stop = threading.Event()
    stopped_at: list[float] = []

    def stop_soon() -> None:
        time.sleep(0.3)
        stopped_at.append(time.monotonic())
        stop.set()

    stopper = threading.Thread(target=stop_soon)
    stopper.start()
    with pytest.raises(JobStopped, match="stopped and its process was killed"):
        run(pool, jobs.sleep, 30, stop=stop)
    assert time.monotonic() - stopped_at[0] < 1.0
    stopper.join()
    assert not alive(child)


def test_a_stop_set_before_the_job_runs_nothing(pool: ProcessPool) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(JobStopped, match="before it started"):
        run(pool, jobs.pid, stop=stop)


def test_a_dying_child_is_reported_and_replaced(pool: ProcessPool) -> None:
    child = run(pool, jobs.pid)
    with pytest.raises(IsolatedJobError, match="exited with code 3") as caught:
        run(pool, jobs.die, 3)
    assert caught.value.error_class == "ProcessDied"
    assert caught.value.backtrace == ""
    assert not alive(child)
    assert run(pool, jobs.double, 1) == {"args": [2], "kwargs": {}}


def test_a_child_killed_while_idle_is_replaced(pool: ProcessPool) -> None:
    child = run(pool, jobs.pid)
    os.kill(child, signal.SIGKILL)
    time.sleep(0.3)  # let it die: a kill racing the next request is reported as ProcessDied
    assert run(pool, jobs.pid) != child


def test_a_result_json_cannot_carry_is_a_serialization_error(pool: ProcessPool) -> None:
    with pytest.raises(SerializationError, match=r"tests\.isolation_jobs\.unserializable.*set"):
        run(pool, jobs.unserializable)
    assert run(pool, jobs.double, 1) == {"args": [2], "kwargs": {}}


def test_arguments_json_cannot_carry_are_refused_before_any_child_starts() -> None:
    pool = ProcessPool(1)
    try:
        with pytest.raises(SerializationError, match="arguments of job"):
            run(pool, jobs.double, {1})
        with pytest.raises(SerializationError):
            run(pool, jobs.double, float("nan"))
    finally:
        pool.close()


def test_jobs_a_child_cannot_import_by_name_are_refused() -> None:
    def local() -> None:
        pass

    def in_main() -> None:
        pass

    in_main.__module__ = "__main__"
    in_main.__qualname__ = "in_main"
    pool = ProcessPool(1)
    try:
        with pytest.raises(ConfigurationError, match="declare it in an importable module"):
            run(pool, in_main)
        with pytest.raises(ConfigurationError, match="at module level"):
            run(pool, local)
    finally:
        pool.close()


def test_two_children_run_two_jobs_at_once() -> None:
    pool = ProcessPool(2)
    try:
        def in_threads(seconds: float) -> list[Any]:
            results: list[Any] = []
            threads = [threading.Thread(target=lambda: results.append(run(pool, jobs.sleep, seconds)))
                       for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return results

        assert in_threads(0.2) == [0.2, 0.2]  # warm: both children start
        started = time.monotonic()
        assert in_threads(0.5) == [0.5, 0.5]
        assert time.monotonic() - started < 0.9
    finally:
        pool.close()


def test_a_third_caller_waits_for_a_free_child() -> None:
    pool = ProcessPool(1)
    try:
        results: list[Any] = []
        threads = [threading.Thread(target=lambda: results.append(run(pool, jobs.pid)))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 3
        assert len(set(results)) == 1  # one child served all three, one after the other
    finally:
        pool.close()


def test_close_leaves_no_child_alive_and_refuses_more_work() -> None:
    pool = ProcessPool(2)
    pids: list[int] = []
    threads = [threading.Thread(target=lambda: pids.append(run(pool, jobs.pid_after, 0.2)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(pids)) == 2
    pool.close()
    assert not any(alive(pid) for pid in pids)
    pool.close()  # idempotent
    with pytest.raises(ConfigurationError, match="closed"):
        run(pool, jobs.pid)


def test_close_while_a_job_runs_kills_it() -> None:
    pool = ProcessPool(1)
    child = run(pool, jobs.pid)
    errors: list[BaseException] = []

    def long_job() -> None:
        try:
            run(pool, jobs.sleep, 30)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=long_job)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    pool.close()
    thread.join(timeout=5)
    assert time.monotonic() - started < 1.0
    assert len(errors) == 1
    assert isinstance(errors[0], JobStopped)
    assert not alive(child)
