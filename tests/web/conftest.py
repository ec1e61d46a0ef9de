"""Fixtures of the dashboard tests.

- `web_app`: an App on the memory backend, with a few jobs declared (`hello`, `fail`).
- `client`: a Starlette TestClient over `create_app(web_app)` (CSRF cookie already set).
- `serve`: serves `create_app(app, **options)` with uvicorn on a free 127.0.0.1 port in a
  thread; returns its base URL. Stopped afterwards.
- `page`: a Playwright page in Debian's Chromium (`shutil.which("chromium")`, headless).
  Without Chromium or Playwright it skips, and fails under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from sideline import App
from sideline.web import create_app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def web_app() -> App:
    app = App()

    @app.job(name="hello")
    def hello(*args: Any) -> None:
        """Does nothing."""

    @app.job(name="fail", retry=1)
    def fail(*args: Any) -> None:
        raise ValueError(f"failed with {args!r}")

    return app


@pytest.fixture
def client(web_app: App) -> Iterator[TestClient]:
    with TestClient(create_app(web_app)) as test_client:
        test_client.get("/")  # takes the CSRF cookie
        yield test_client


def csrf_of(test_client: TestClient) -> str:
    """The CSRF token a TestClient holds (its cookie)."""
    token = test_client.cookies.get("sideline_csrf")
    assert token, "no CSRF cookie: GET a page first"
    return token


Serve = Callable[..., str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: App, **options: Any) -> str:
        port = _free_port()
        config = uvicorn.Config(create_app(app, **options), host="127.0.0.1", port=port,
                                log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise AssertionError("the dashboard did not start within 10 s")
            time.sleep(0.01)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(10)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()
