"""`sideline web`: serves the dashboard; refuses a non-loopback address without auth."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sideline.cli import is_loopback, main

ROOT = Path(__file__).resolve().parents[2]


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.2.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "example.org"))


def test_a_public_address_without_auth_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--host", "0.0.0.0", "--app", "tests.web.apps:app"]) == 2
    error = capsys.readouterr().err
    assert "refusing to serve the dashboard on 0.0.0.0" in error
    assert "--auth" in error


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_command_serves_the_dashboard() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sideline.cli", "web", "--app", "tests.web.apps:app",
         "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    body = reply.read().decode()
                break
            except OSError:
                assert process.poll() is None, "sideline web exited"
                assert time.monotonic() < deadline, "the dashboard did not answer in 20 s"
                time.sleep(0.1)
        assert "<h1>Dashboard</h1>" in body
    finally:
        process.terminate()
        process.wait(10)
