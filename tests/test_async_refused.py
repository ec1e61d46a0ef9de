"""`async def` jobs are refused when declared: sideline would call them, never await the
coroutine, and count the job as succeeded."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import pytest

from sideline import App, ConfigurationError, MemoryBackend

REFUSED = "sideline does not run coroutines yet"


async def fetch_page(url: str) -> None:
    """An async def job body."""


async def stream_pages(url: str) -> AsyncIterator[str]:
    """An async generator: calling it runs nothing either."""
    yield url


class AsyncPerform:
    async def perform(self, url: str) -> None:
        """An async perform()."""


class InheritedAsyncPerform(AsyncPerform):
    pass


class AsyncCallable:
    async def __call__(self, url: str) -> None:
        """An async __call__()."""


def plain(url: str) -> None:
    """A plain job: still fine."""


class PlainPerform:
    def perform(self, url: str) -> None:
        """A plain perform(): still fine."""


@pytest.fixture
def app() -> App:
    return App(MemoryBackend())


def test_an_async_def_function_is_refused(app: App) -> None:
    with pytest.raises(ConfigurationError, match=(
            r"job 'pages.fetch' is an async def function; sideline does not run coroutines "
            r"yet .*declare a plain def")):
        app.job(name="pages.fetch")(fetch_page)
    assert "pages.fetch" not in app.registry


@pytest.mark.parametrize(("target", "kind"), [
    (stream_pages, "an async def function"),
    (functools.partial(fetch_page, "https://example.org"), "an async def function"),
    (AsyncPerform, "a class whose perform\\(\\) is async def"),
    (InheritedAsyncPerform, "a class whose perform\\(\\) is async def"),
    (AsyncCallable(), "a callable object whose __call__\\(\\) is async def"),
])
def test_every_form_of_async_job_is_refused(app: App, target: object, kind: str) -> None:
    with pytest.raises(ConfigurationError, match=f"job 'async.job' is {kind}; {REFUSED}"):
        app.job(name="async.job")(target)  # type: ignore[arg-type]


def test_the_bare_decorator_refuses_too(app: App) -> None:
    with pytest.raises(ConfigurationError, match=REFUSED):
        app.job(fetch_page)


def test_plain_jobs_are_still_accepted_and_run(app: App) -> None:
    assert app.job(name="plain")(plain).spec.name == "plain"
    assert app.job(name="perform")(PlainPerform).spec.name == "perform"
    assert app.perform(app.registry.get("plain"), ["u"], {}) is None
