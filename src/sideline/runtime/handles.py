"""JobHandle: what `job.enqueue(...)` returns, to follow a job and get its result."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from sideline.core.errors import ConfigurationError
from sideline.core.results import JobInfo, JobState, ResultRecord

if TYPE_CHECKING:
    from sideline.core.ports import ResultStore

__all__ = ["JobHandle"]


class JobHandle(str):
    """The jid of a pushed job — a `str`, so code that kept jids keeps working — with ways
    to follow the job: `status()`, `info()` (state and progress) and `result()`.

    `result()` needs a job declared with `store_result=True` (or an App created with
    `store_results=True`): it blocks on the signal the job's settle gives, without
    polling, and raises `JobFailed` when the job died.
    """

    results: ResultStore
    stores_result: bool | None

    def __new__(cls, jid: str, results: ResultStore, *, stores_result: bool | None = None
                ) -> JobHandle:
        handle = super().__new__(cls, jid)
        handle.results = results
        handle.stores_result = stores_result
        return handle

    @property
    def jid(self) -> str:
        """The job's id (the handle itself, as a plain str)."""
        return str.__str__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (self.jid,))  # a handle pickles (and copies) as its plain jid

    def info(self) -> JobInfo:
        """The job's stored state, progress, message, meta and result (if any)."""
        found = self.results.get_results([self.jid])[0]
        return JobInfo.of(self.jid, self.results.job_info(self.jid), found)

    def status(self) -> JobState:
        """pending, running, retrying, succeeded or failed (see JobState)."""
        return self.info().state

    def result(self, timeout_s: float = 30.0) -> Any:
        """Block until the job has ended for good (at most `timeout_s`); return its value.

        Raises:
            JobFailed: the job died (its error class and message are on the exception).
            TimeoutError: it did not end in time (it may still be queued, retrying or
                running).
            ConfigurationError: the job does not store its result.
        """
        return self._record(self._wait(timeout_s)).value_or_raise(self.jid)

    async def result_async(self, timeout_s: float = 30.0) -> Any:
        """`result()` for async code: the wait runs on a thread, the loop stays free."""
        return await asyncio.to_thread(self.result, timeout_s)

    def _wait(self, timeout_s: float) -> str | None:
        if self.stores_result is False:
            raise ConfigurationError(
                f"job {self.jid} does not store its result: declare its job with "
                "store_result=True (or create the App with store_results=True)")
        found = self.results.get_results([self.jid])[0]
        if found is not None:
            return found
        deadline = time.monotonic() + timeout_s
        return self.results.wait_result(self.jid, max(0.0, deadline - time.monotonic()))

    def _record(self, text: str | None) -> ResultRecord:
        if text is None:
            raise TimeoutError(f"job {self.jid} has no result yet ({self.status()})")
        return ResultRecord.decode(text)
