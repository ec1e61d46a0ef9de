#!/usr/bin/env python
"""Take the dashboard screenshots of docs/web.md (docs/images/*.png) in Debian's Chromium.

    python scripts/screenshots.py

An app on the memory backend is filled with a little of everything (queued jobs, a
retry, dead jobs, a workflow run with a dead step, a batch), served on a free loopback
port, and each page is captured at 1280 px wide.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from sideline import App, Chain, Group, Workflow
from sideline.web import create_app

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"


def filled_app() -> App:
    app = App()

    @app.job(name="resize")
    def resize(image: str, width: int) -> None:
        """Pretends to resize an image."""

    @app.job(name="charge", retry=1)
    def charge(order: int) -> None:
        raise ValueError(f"card declined for order {order}")

    @app.job(name="notify")
    def notify(*args: object) -> None:
        """Pretends to send a message."""

    for n in range(6):
        resize.enqueue(f"photos/{n}.jpg", 640)
    for order in (1041, 1042, 1043):
        charge.enqueue(order)
    Workflow(Chain(Group(resize.s("a.jpg", 320), charge.s(7)), notify.s("done")), app=app).run()
    batch = app.batch("Upload images").on("success", notify.s("album ready"))
    with batch.jobs():
        for n in range(4):
            resize.enqueue(f"album/{n}.jpg", 1024)
    app.drain(run_scheduled=False)
    app.drain()
    for n in range(3):
        resize.enqueue(f"later/{n}.jpg", 640)
    charge.enqueue(1044)
    app.drain(run_scheduled=False)
    return app


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("Chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    app = filled_app()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(app), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    run_id = app.admin.runs()[0].run_id
    bid = app.admin.batches()[0].bid
    pages = {"dashboard": "/", "dead": "/dead", "retries": "/retries",
             "workflow": f"/workflows/{run_id}", "batch": f"/batches/{bid}",
             "queues": "/queues"}
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        for name, path in pages.items():
            page.goto(base + path)
            page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=True)
            print(f"docs/images/{name}.png")
        browser.close()
    server.should_exit = True
    thread.join(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
