"""Results, job handles and progress.

Run: python examples/results.py   (embedded in-memory backend, no Redis needed)

`enqueue` returns a JobHandle: a str (the jid) that can also wait for the job's result
(`result()` blocks on a signal, it does not poll), read its state and its progress. A job
keeps its result only when declared with store_result=True (or the App stores results by
default); a job that died raises JobFailed from `result()`.
"""

from __future__ import annotations

import asyncio
import threading
import time

from sideline import App, Chain, Group, JobFailed, Workflow, current_job

app = App()
resume = threading.Event()


@app.job(name="thumbnail", store_result=True, result_ttl=3600)
def thumbnail(image_id: int) -> dict[str, object]:
    return {"image": image_id, "url": f"https://cdn.example.org/{image_id}.webp"}


@app.job(name="import_rows", store_result=True)
def import_rows(rows: int) -> int:
    for done in range(0, rows + 1, rows // 4):
        current_job().progress(done / rows, f"{done} of {rows} rows", meta={"rows": done})
        if done == rows // 2:
            resume.wait(10)  # hold half-way so the caller can watch the progress
    return rows


@app.job(name="charge", store_result=True, retry=0)
def charge(amount: int) -> None:
    raise ValueError(f"card declined for {amount}")


async def from_async_code() -> object:
    handle = await thumbnail.enqueue_async(7)
    assert handle is not None
    return await handle.result_async(timeout_s=10)


def main() -> None:
    with app.worker(concurrency=2):
        handle = thumbnail.enqueue(42)
        assert handle is not None
        print("jid:", handle.jid, "| result:", handle.result(timeout_s=10))

        rows = import_rows.enqueue(1000)
        assert rows is not None
        while (info := rows.info()).progress != 0.5:
            time.sleep(0.01)
        print(f"progress: {info.progress:.0%} {info.message!r} meta={info.meta} ({info.state})")
        resume.set()
        print("imported:", rows.result(10), "| state:", rows.status())

        failed = charge.enqueue(30)
        assert failed is not None
        try:
            failed.result(10)
        except JobFailed as exc:
            print(f"charge failed: {exc.error_class}: {exc.error_message}")

        print("from async code:", asyncio.run(from_async_code()))

        run_id = Workflow(Chain(thumbnail.s(1), Group(thumbnail.s(2), thumbnail.s(3))),
                          app=app).run()
        app.wait(run_id, timeout_s=10)
        outputs = app.status(run_id, results=True).outputs
        print("workflow step results:", {node: r.value["image"] for node, r in outputs.items()})


if __name__ == "__main__":
    main()
