"""Async jobs: `async def` jobs run on the worker's event loop, many at once.

Run: python examples/async_jobs.py   (embedded in-memory backend, no Redis needed)

Fifty "downloads" that each wait 0.2 s finish together in well under a second on a worker
with only two threads: the threads fetch, the loop runs the coroutines. A hung download is
cancelled at its timeout, and a typed async step feeds the next step of a workflow through
run memory, as a thread job would.
"""

from __future__ import annotations

import asyncio
import time

import attrs

from sideline import App, Chain, JobFailed, Workflow

app = App(store_results=True)


@app.job(name="download")
async def download(url: str) -> int:
    await asyncio.sleep(0.2)  # stands in for an HTTP request
    return len(url)


@app.job(name="hangs", timeout=0.3, retry=0)
async def hangs(url: str) -> None:
    await asyncio.sleep(60)  # cancelled at 0.3 s


@attrs.frozen
class Page:
    url: str


@attrs.frozen
class Size:
    size: int


@app.job(name="fetch_page", input=Page, output=Size)
async def fetch_page(page: Page) -> Size:
    await asyncio.sleep(0.01)
    return Size(len(page.url) * 100)


@app.job(name="report", input=Size)
def report(size: Size) -> None:
    print(f"the page has {size.size} bytes")


def main() -> None:
    with app.worker(concurrency=2, async_concurrency=100):
        started = time.monotonic()
        handles = [download.enqueue(f"https://example.org/{n}") for n in range(50)]
        total = sum(h.result(10) for h in handles if h is not None)
        elapsed = time.monotonic() - started
        print(f"50 downloads of 0.2 s each on 2 threads: {elapsed:.2f} s (total {total} bytes)")
        assert elapsed < 2.0

        hung = hangs.enqueue("https://example.org/slow")
        assert hung is not None
        try:
            hung.result(10)
        except JobFailed as exc:
            print(f"the hung download: {exc.error_class}: {exc.error_message}")
            if exc.error_class != "JobTimeout":
                raise

        run_id = Workflow(Chain(fetch_page.s(url="https://example.org"), report.s()),
                          app=app).run()
        print("workflow:", app.wait(run_id, timeout_s=10).status)


if __name__ == "__main__":
    main()
